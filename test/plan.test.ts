// The planner pinned to docs/METHOD.md on hand-computed cases, plus property tests over random analyses and
// plans for the real models.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { readAnalysis, achievedRatio, analyzeToFile, checkPlan, loadModel, plan, readPlan, tokenizerFor, validatePlan, type PruningPlan } from '../lib';
import { dfsSearch, greedySearch, type Candidate } from '../lib/plan/search';
import { kmeans1d } from '../lib/plan/kmeans';
import { splitBudget } from '../lib/plan/planner';
import { waterFillRatios } from '../lib/plan/block-ratios';
import { runCli } from './helpers/cli';
import { dataFile, STORIES_GGUF, tempDir, TINY_HF } from './helpers/data';
import { syntheticAnalysis } from './helpers/synthetic-analysis';

const scratch = tempDir();
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

describe('Algorithm 1: block ratios', () => {
  it('p_l = c·(TE_l/mean)^-1 with Σ p_l N_l = p Σ N_l (hand-computed)', () => {
    // TE = [1, 2, 4]: w = mean/TE = [7/3, 7/6, 7/12]; c·(49/12)·100 = 90 → c = 10.8/49
    const r = waterFillRatios([1, 2, 4], [100, 100, 100], 0.3, 1, 0.9);
    const c = 10.8 / 49;
    expect(r[0]).toBeCloseTo((c * 7) / 3, 9);
    expect(r[1]).toBeCloseTo((c * 7) / 6, 9);
    expect(r[2]).toBeCloseTo((c * 7) / 12, 9);
  });

  it('clips at maxBlockRatio and hands the excess to the others (water-filling)', () => {
    // p_0 clipped at 0.4 → 50 left for blocks 1, 2: c·(7/6 + 7/12)·100 = 50 → c = 2/7
    const r = waterFillRatios([1, 2, 4], [100, 100, 100], 0.3, 1, 0.4);
    expect(r[0]).toBeCloseTo(0.4, 9);
    expect(r[1]).toBeCloseTo(1 / 3, 9);
    expect(r[2]).toBeCloseTo(1 / 6, 9);
    expect(r[0] * 100 + r[1] * 100 + r[2] * 100).toBeCloseTo(90, 6);
  });

  it('splits a block budget ∝ 1/TE between attention and MLP, with overflow', () => {
    expect(splitBudget(90, 100, 100, 1, 2)).toEqual([60, 30]);
    expect(splitBudget(90, 50, 100, 1, 2)).toEqual([50, 40]); // attention capped, overflow to the MLP
    expect(splitBudget(90, 0, 100, 1, 2)).toEqual([0, 90]);
  });
});

describe('K-means', () => {
  it('groups given entropies deterministically, clusters numbered by ascending centroid', () => {
    const v = [5.1, 1, 9, 1.2, 5, 1.1];
    const r = kmeans1d(v, 3);
    expect(r.assignment).toEqual([1, 0, 2, 0, 1, 0]);
    expect(r.centroids[0]).toBeCloseTo(1.1, 12);
    expect(r.centroids[1]).toBeCloseTo(5.05, 12);
    expect(r.centroids[2]).toBeCloseTo(9, 12);
    expect(kmeans1d(v, 3)).toEqual(r);
  });
});

describe('DFS compensation', () => {
  const cands: Candidate[] = [
    { kind: 'block', block: 0, params: 6, importance: 1 },
    { kind: 'attn', block: 1, params: 5, importance: 2 },
    { kind: 'mlp', block: 2, params: 5, importance: 3 },
  ];
  it('reaches the exact remaining ratio where greedy does not', () => {
    const dfs = dfsSearch(cands, 10, 10.5);
    expect(dfs.inWindow).toBe(true);
    expect(dfs.removed).toBe(10);
    expect(dfs.chosen.map((c) => `${c.kind}${c.block}`).sort()).toEqual(['attn1', 'mlp2']);
    const greedy = greedySearch(cands, 10, 10.5);
    expect(greedy.inWindow).toBe(false);
    expect(greedy.removed).toBe(6); // grabbed the block first and could not backtrack
  });

  it('never removes a block together with one of its own layers, and minimises importance', () => {
    const c: Candidate[] = [
      { kind: 'block', block: 0, params: 10, importance: 5 },
      { kind: 'attn', block: 0, params: 4, importance: 1 },
      { kind: 'mlp', block: 0, params: 6, importance: 1 },
      { kind: 'mlp', block: 1, params: 6, importance: 3 },
    ];
    const r = dfsSearch(c, 10, 10);
    expect(r.chosen.map((x) => `${x.kind}${x.block}`).sort()).toEqual(['attn0', 'mlp0']); // cost 2 < block's 5
    const r2 = dfsSearch(c, 14, 16);
    expect(r2.chosen.some((x) => x.kind === 'block') && r2.chosen.some((x) => x.block === 0 && x.kind !== 'block')).toBe(false);
  });

  // A wall-clock bound means nothing under Stryker's instrumentation (this search then takes ~16 s): skipped
  // there (stryker.config.mjs); the search's results are pinned by the tests around it.
  it.skipIf(process.env.STRYKER_MUTATOR_WORKER !== undefined)('finishes in well under a second for 80 blocks', () => {
    let s = 3;
    const rnd = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296);
    const c: Candidate[] = [];
    for (let b = 0; b < 80; b++) {
      const a = 4096 * 4096 * 4 * (0.5 + rnd());
      const m = 3 * 4096 * 11008 * (0.5 + rnd());
      c.push({ kind: 'block', block: b, params: a + m, importance: 5 + rnd() * 5 }, { kind: 'attn', block: b, params: a, importance: rnd() * 3 }, { kind: 'mlp', block: b, params: m, importance: 2 + rnd() * 4 });
    }
    const total = c.filter((x) => x.kind === 'block').reduce((t, x) => t + x.params, 0);
    const t0 = performance.now();
    const r = dfsSearch(c, 0.13 * total, 0.135 * total);
    const ms = performance.now() - t0;
    expect(r.inWindow).toBe(true);
    expect(ms).toBeLessThan(1000);
  });
});

describe('plans', () => {
  it('GQA consistency: every kept KV group keeps the same number of query heads', () => {
    const a = syntheticAnalysis({ seed: 5, blocks: 6, dim: 256, headDim: 32, nHead: 8, nKvHead: 2, ffn: 512 });
    for (const ratio of [0.2, 0.35, 0.5]) {
      const p = plan(a, { ratio });
      for (const b of p.blocks) {
        const per = b.attention.keptKvHeads.map((g) => b.attention.keptHeads.filter((h) => Math.floor(h / 4) === g).length);
        expect(new Set(per).size).toBeLessThanOrEqual(1);
      }
    }
  });

  it('the validator catches impossible hand edits, naming the field', () => {
    const a = syntheticAnalysis({ seed: 6, blocks: 3, dim: 64, headDim: 8, nHead: 8, nKvHead: 4, ffn: 100 });
    const good = plan(a, { ratio: 0.3 });
    const edit = (f: (p: PruningPlan) => void) => {
      const p = JSON.parse(JSON.stringify(good)) as PruningPlan;
      f(p);
      return () => validatePlan(p, 'edited.json');
    };
    const full = (p: PruningPlan, l: number) => {
      p.blocks[l].attention = { removed: false, keptKvHeads: [0, 1, 2, 3], keptHeads: [0, 1, 2, 3, 4, 5, 6, 7] };
      p.blocks[l].removed = false;
    };
    expect(edit((p) => { full(p, 1); p.blocks[1].attention.keptKvHeads = [0, 1, 3]; })).toThrow(/blocks\[1\]\.attention\.keptHeads: query head 4 is kept but its KV group 2 was removed/);
    expect(edit((p) => { full(p, 1); p.blocks[1].attention.keptHeads = [0, 1, 2, 4, 6]; })).toThrow(/different numbers of query heads/);
    expect(edit((p) => { p.blocks[2].mlp = { removed: false, keptChannels: [0, 5, 100] }; p.blocks[2].removed = false; })).toThrow(/blocks\[2\]\.mlp\.keptChannels: channel 100 out of range/);
    expect(edit((p) => { p.blocks[0].mlp.keptChannels = [3, 3]; })).toThrow(/strictly ascending/);
    expect(edit((p) => { p.target.ratio = 1.5; })).toThrow(/\/target\/ratio/);
    expect(edit((p) => { p.blocks.pop(); })).toThrow(/blocks: has 2 entries/);
  });

  it('property: random analyses → every plan validates, lands within tolerance, and is monotone in the target', () => {
    for (let seed = 1; seed <= 12; seed++) {
      const a = syntheticAnalysis({ seed, blocks: 4 + (seed % 9), dim: 128, headDim: 16, nHead: 8, nKvHead: seed % 2 ? 8 : 2, ffn: 344 });
      let last = 0;
      for (const ratio of [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]) {
        const p = plan(a, { ratio });
        checkPlan(p);
        const acc = achievedRatio(p).ratio;
        expect(Math.abs(acc - ratio), `seed ${seed} ratio ${ratio}: ${p.notes.join('; ')}`).toBeLessThanOrEqual(0.005 + 1e-9);
        expect(acc).toBeGreaterThanOrEqual(last);
        last = acc;
      }
    }
  });

  it('ablations and baselines all produce valid plans', () => {
    const a = syntheticAnalysis({ seed: 9, blocks: 8, dim: 128, headDim: 16, nHead: 8, nKvHead: 4, ffn: 512 });
    const variants = [
      { method: 'uniform' as const },
      { method: 'block-drop' as const },
      { method: 'layer-drop' as const },
      { search: 'greedy' as const },
      { ratios: 'uniform' as const },
      { compensation: false },
      { granularity: 'width-only' as const },
      { granularity: 'depth-only' as const },
      { importance: 'activation' as const },
      { align: 32 },
      { alignHeads: 4 },
      { uniformShape: true, align: 8 },
    ];
    for (const v of variants) {
      const p = plan(a, { ratio: 0.3, ...v });
      checkPlan(p);
      expect(p.achieved.ratio, JSON.stringify(v)).toBeGreaterThan(0.1);
      if (v.align) for (const b of p.blocks) if (!b.mlp.removed) expect(b.mlp.keptChannels.length % v.align).toBe(0);
      if (v.alignHeads) for (const b of p.blocks) expect(b.attention.keptHeads.length % v.alignHeads).toBe(0);
      if (v.uniformShape) expect(new Set(p.blocks.map((b) => b.mlp.keptChannels.length)).size).toBe(1);
      if (v.method === 'block-drop') expect(p.blocks.every((b) => b.removed || (!b.attention.removed && !b.mlp.removed))).toBe(true);
      if (v.granularity === 'width-only') expect(p.blocks.every((b) => !b.removed)).toBe(true);
    }
  });

  it('real models: plans at 30/40/50 % for stories260K and TinyStories-656K, via the CLI', async () => {
    for (const [name, rel] of [['stories260K', STORIES_GGUF], ['tinystories-656K', TINY_HF]] as const) {
      const model = await loadModel(dataFile(rel));
      const analysisFile = path.join(scratch, `${name}.json`);
      await analyzeToFile(model, analysisFile, { calib: dataFile('text/wikitext-2-raw/wiki.valid.raw'), tokenizer: tokenizerFor(model), samples: 32, seqLen: 256, seed: 0 });
      for (const ratio of ['0.3', '0.4', '0.5']) {
        const out = path.join(scratch, `${name}-${ratio}.plan.json`);
        const r = runCli(['plan', analysisFile, '--ratio', ratio, '-o', out]);
        expect(r.code, r.stderr).toBe(0);
        console.log(`${name} @ ${ratio}\n${r.stdout}`);
        const p = readPlan(out);
        expect(Math.abs(p.achieved.ratio - Number(ratio))).toBeLessThanOrEqual(0.005 + 1e-9);
      }
      // the weight-magnitude ablation reads the model's weights
      const pw = plan(readAnalysis(analysisFile).analysis, { ratio: 0.3, importance: 'weight', weights: model.handle.unitWeightMagnitudes() });
      checkPlan(pw);
      expect(Math.abs(pw.achieved.ratio - 0.3)).toBeLessThanOrEqual(0.005 + 1e-9);
    }
  });
});
