// The planner's parts pinned to values worked out by hand on small synthetic inputs, for the branches the
// other planner tests reach only through tolerances and properties (found by mutation testing,
// docs/MUTATION.md). No model needed.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { attentionParams, blockParams, countedParams, mlpParams, wholeModelParams } from '../lib/plan/accounting';
import { allocateByMarginalCost } from '../lib/plan/allocation';
import { waterFillRatios } from '../lib/plan/block-ratios';
import { defaultK, kmeans1d } from '../lib/plan/kmeans';
import { achievedRatio, checkPlan, compensationBiases, prunedShapes, readPlan, validatePlan, writePlan, type BlockPlan, type PruningPlan } from '../lib/plan/plan';
import { defaultEstimator, measuredDamageModel, plan, splitBudget, type PlannerInput, type PlanOptions } from '../lib/plan/planner';
import { VERSION } from '../lib/version';
import { dfsSearch, greedySearch, type Candidate } from '../lib/plan/search';

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'entroprune-plan-values-'));
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

describe('accounting', () => {
  // dim 4, headDim 2: q and o of 2 heads 2·4·2·2 = 32, k and v of 1 KV head 2·4·1·2 = 16; MLP of 3 channels 3·4·3 = 36
  const full = { nHead: 2, nKvHead: 1, ffn: 3 };
  it('block parameters: attention + MLP + the biases compensation adds', () => {
    expect(attentionParams(4, 2, 2, 1)).toBe(48);
    expect(mlpParams(4, 3)).toBe(36);
    expect(blockParams(4, 2, full)).toBe(84);
    expect(blockParams(4, 2, { ...full, attnOutBias: true })).toBe(88);
    expect(blockParams(4, 2, { ...full, ffnDownBias: true })).toBe(88);
    expect(blockParams(4, 2, { ...full, attnOutBias: true, ffnDownBias: true })).toBe(92);
    expect(countedParams(4, 2, [full, { nHead: 0, nKvHead: 0, ffn: 3 }, { nHead: 2, nKvHead: 1, ffn: 0 }])).toBe(84 + 36 + 48);
  });

  it('whole model: a norm per present sublayer, the final norm, the embedding and an untied head', () => {
    const layers = [full, { nHead: 2, nKvHead: 1, ffn: 0 }, { nHead: 0, nKvHead: 0, ffn: 3 }];
    // counted 84 + 48 + 36 = 168; norms 4+4, 4, 4 = 16; final norm 4; embedding 10·4 = 40 (and a head of 40)
    expect(wholeModelParams(4, 2, 10, false, layers)).toBe(168 + 16 + 4 + 80);
    expect(wholeModelParams(4, 2, 10, true, layers)).toBe(168 + 16 + 4 + 40);
  });
});

describe('block ratios (water-filling) at the edges', () => {
  it('no blocks, and blocks without weights', () => {
    expect(waterFillRatios([], [], 0.3)).toEqual([]);
    expect(waterFillRatios([1, 2], [0, 0], 0.3)).toEqual([0, 0]);
  });

  it('refuses a target above the cap, and accepts one equal to it', () => {
    expect(() => waterFillRatios([1, 2, 4], [100, 100, 100], 0.95, 1, 0.9)).toThrow(/target ratio 0.95 exceeds maxBlockRatio 0.9/);
    const r = waterFillRatios([1, 2], [100, 100], 0.5, 1, 0.5);
    expect(r[0]).toBeCloseTo(0.5, 9);
    expect(r[1]).toBeCloseTo(0.5, 9);
  });

  it('finds c above 1 when the target needs it (the bracket grows)', () => {
    // TE [10, 30]: s = [0.5, 1.5], w = [2, 2/3]; target 0.85 of 200: block 0 at the cap 0.9, block 1 at 0.8 (c = 1.2)
    const r = waterFillRatios([10, 30], [100, 100], 0.85, 1, 0.9);
    expect(r[0]).toBeCloseTo(0.9, 9);
    expect(r[1]).toBeCloseTo(0.8, 9);
  });

  it('a block with TE ≤ 0 gets the largest weight: s floored at 1e-3 of the smallest positive s (at most 1)', () => {
    // TE [0, 3, 3]: mean 2, s = [0, 1.5, 1.5], floor 1e-3·min(1.5, 1) = 1e-3: w = [1000, 2/3, 2/3]
    const tiny = 0.001; // 0.3 of 300 weights: nothing is clipped, p_l = c·w_l
    const r = waterFillRatios([0, 3, 3], [100, 100, 100], tiny);
    const c = (tiny * 300) / (100 * (1000 + 4 / 3));
    expect(r[0]).toBeCloseTo(c * 1000, 12);
    expect(r[1]).toBeCloseTo((c * 2) / 3, 12);
    expect(r[2]).toBeCloseTo(r[1], 15);
    // TE [0, 1, 5]: mean 2, s = [0, 0.5, 2.5], floor 1e-3·0.5: w = [2000, 2, 0.4]
    const r2 = waterFillRatios([0, 1, 5], [100, 100, 100], tiny);
    const c2 = (tiny * 300) / (100 * (2000 + 2 + 0.4));
    expect(r2[0]).toBeCloseTo(c2 * 2000, 12);
    expect(r2[1]).toBeCloseTo(c2 * 2, 12);
    expect(r2[2]).toBeCloseTo(c2 * 0.4, 12);
  });
});

describe('K-means at the edges', () => {
  it('no points, and more clusters than distinct values', () => {
    expect(kmeans1d([], 3)).toEqual({ assignment: [], centroids: [], iterations: 0 });
    expect(kmeans1d([2, 2, 5], 4)).toEqual({ assignment: [0, 0, 1], centroids: [2, 5], iterations: 1 });
  });

  it('iterates until nothing moves, ties to the lower centroid, and stops at maxIterations', () => {
    // quantile starts: sorted[floor(0.25·5)] = 1, sorted[floor(0.75·5)] = 3. Pass 1: 2 is as near 1 as 3 → lower:
    // [0,0,0,1,1], centroids [1, 6.5]. Pass 2: 3 goes to 1 → [0,0,0,0,1], centroids [1.5, 10]. Pass 3: nothing moves.
    expect(kmeans1d([0, 1, 2, 3, 10], 2)).toEqual({ assignment: [0, 0, 0, 0, 1], centroids: [1.5, 10], iterations: 2 });
    expect(kmeans1d([0, 1, 2, 3, 10], 2, 1)).toEqual({ assignment: [0, 0, 0, 1, 1], centroids: [1, 6.5], iterations: 1 });
  });

  it('default K by ratio: 3 below 0.35, 4 below 0.45, else 6', () => {
    expect([0.1, 0.3, 0.349, 0.35, 0.4, 0.449, 0.45, 0.5, 0.7].map(defaultK)).toEqual([3, 3, 3, 4, 4, 4, 6, 6, 6]);
  });
});

describe('DFS and greedy search: values', () => {
  const names = (r: { chosen: Candidate[] }) => r.chosen.map((c) => `${c.kind}${c.block}`);
  // Four candidates where no set lands in [9, 9.5]: sums 6, 4, 7, 10 and their compatible unions.
  const a: Candidate = { kind: 'attn', block: 0, params: 6, importance: 1 };
  const b: Candidate = { kind: 'mlp', block: 1, params: 4, importance: 2 };
  const c: Candidate = { kind: 'mlp', block: 2, params: 7, importance: 0.5 };
  const d: Candidate = { kind: 'attn', block: 3, params: 10, importance: 5 };

  it('nothing to remove: the empty set, in the window, no search', () => {
    expect(dfsSearch([a, b], 0, 5)).toEqual({ chosen: [], removed: 0, cost: 0, nodes: 0, inWindow: true, truncated: false });
  });

  it('the window is closed at its upper end, and a block never goes with its own layer', () => {
    // need 10 = windowHi: block 0 + its attention (cost 1.1) is forbidden, block 0 + attention of block 1 (cost 3) is not
    const cands: Candidate[] = [
      { kind: 'attn', block: 1, params: 4, importance: 2 },
      { kind: 'block', block: 0, params: 6, importance: 1 },
      { kind: 'attn', block: 0, params: 4, importance: 0.1 },
    ];
    const r = dfsSearch(cands, 10, 10);
    expect(names(r)).toEqual(['block0', 'attn1']);
    expect(r).toMatchObject({ removed: 10, cost: 3, inWindow: true, truncated: false });
    // greedy takes the cheapest first (attention of block 0), then must skip block 0 for it, and falls short
    const g = greedySearch(cands, 10, 10);
    expect(names(g)).toEqual(['attn0', 'attn1']);
    expect(g.removed).toBe(8);
    expect(g.cost).toBeCloseTo(2.1, 12);
    expect(g).toMatchObject({ nodes: 3, inWindow: false, truncated: false });
  });

  it('equal importance: the larger candidate first; equal cost: the first set found stays', () => {
    const small: Candidate = { kind: 'attn', block: 0, params: 5, importance: 2 };
    const large: Candidate = { kind: 'mlp', block: 1, params: 8, importance: 2 };
    const r = dfsSearch([small, large], 5, 10);
    expect(names(r)).toEqual(['mlp1']);
    expect(r.removed).toBe(8);
    expect(names(greedySearch([small, large], 5, 10))).toEqual(['mlp1']);
  });

  it('costs count negative importances as 0; candidates without parameters are not candidates', () => {
    const neg: Candidate = { kind: 'attn', block: 0, params: 5, importance: -2 };
    const pos: Candidate = { kind: 'mlp', block: 1, params: 5, importance: 1 };
    const none: Candidate = { kind: 'attn', block: 2, params: 0, importance: -5 };
    const r = dfsSearch([pos, none, neg], 5, 5);
    expect(names(r)).toEqual(['attn0']);
    expect(r.cost).toBe(0);
    const g = greedySearch([pos, none, neg], 5, 5);
    expect(names(g)).toEqual(['attn0']);
    expect(g).toMatchObject({ removed: 5, cost: 0, nodes: 2, inWindow: true });
    // greedy stops once the need is met and reports its cost: 1 + 0 (the negative one) for two units
    const g2 = greedySearch([pos, neg, { kind: 'mlp', block: 3, params: 5, importance: 3 }], 10, 20);
    expect(names(g2)).toEqual(['attn0', 'mlp1']);
    expect(g2).toMatchObject({ removed: 10, cost: 1, inWindow: true });
  });

  it('no set fits the window: the smallest overshoot (default), or the largest removal below it', () => {
    const over = dfsSearch([a, b, c, d], 9, 9.5);
    expect(names(over)).toEqual(['attn0', 'mlp1']); // 10: over by 1 at cost 3; attention of block 3 alone: over by 1 at cost 5
    expect(over).toMatchObject({ removed: 10, cost: 3, inWindow: false, truncated: false });
    const under = dfsSearch([a, b, c, d], 9, 9.5, undefined, 'undershoot');
    expect(names(under)).toEqual(['mlp2']); // 7 is the largest sum ≤ 9.5
    expect(under).toMatchObject({ removed: 7, cost: 0.5, inWindow: false, truncated: false });
    // of two removals of the same size below the window, the less important one
    const c2: Candidate = { kind: 'attn', block: 4, params: 7, importance: 0.2 };
    expect(names(dfsSearch([a, b, c, d, c2], 9, 9.5, undefined, 'undershoot'))).toEqual(['attn4']);
    // nothing reaches the need at all: the overshoot search finds no set
    expect(dfsSearch([a, b], 100, 200)).toMatchObject({ chosen: [], removed: 0, cost: 0, inWindow: false });
  });

  it('the node limit: reported when a pass hits it, not when the search fits it exactly', () => {
    const full = dfsSearch([a, b, c, d], 9, 20);
    expect(names(full)).toEqual(['mlp2', 'attn0']); // 13 at cost 1.5, the cheapest set in [9, 20]
    expect(full).toMatchObject({ removed: 13, cost: 1.5, inWindow: true, truncated: false });
    expect(dfsSearch([a, b, c, d], 9, 20, full.nodes)).toEqual(full);
    expect(dfsSearch([a, b, c, d], 9, 9.5, 0)).toEqual({ chosen: [], removed: 0, cost: 0, nodes: 2, inWindow: false, truncated: true });
    // need 100 is out of reach: the first pass stops at its root (1 node), the undershoot pass then needs 14
    const under = dfsSearch([a, b, c, d], 100, 9.5, undefined, 'undershoot');
    expect(under).toMatchObject({ removed: 7, nodes: 15, truncated: false });
    expect(dfsSearch([a, b, c, d], 100, 9.5, 14, 'undershoot')).toEqual(under);
    expect(dfsSearch([a, b, c, d], 100, 9.5, 13, 'undershoot').truncated).toBe(true);
    // the overshoot pass: the first pass takes 14 nodes, the overshoot pass 18; a limit of 15 to 17 stops only
    // the latter, which is reported too (it was not, before the mutation run)
    expect(dfsSearch([a, b, c, d], 9, 9.5).nodes).toBe(32);
    expect(dfsSearch([a, b, c, d], 9, 9.5, 18).truncated).toBe(false);
    expect(dfsSearch([a, b, c, d], 9, 9.5, 17).truncated).toBe(true);
    expect(dfsSearch([a, b, c, d], 9, 9.5, 15).truncated).toBe(true);
    // the overshoot pass's last allowed node still counts: one candidate of 10 for a need of 5 (window to 6):
    // the first pass visits 2 nodes and fits nothing; the overshoot pass finds the candidate at its node 2
    const ten: Candidate = { kind: 'mlp', block: 0, params: 10, importance: 1 };
    expect(dfsSearch([ten], 5, 6, 2)).toEqual({ chosen: [ten], removed: 10, cost: 1, nodes: 5, inWindow: false, truncated: true });
    expect(dfsSearch([ten], 5, 6, 1).chosen).toEqual([]);
  });

  it('ties: of two sets with the same overshoot, or the same size below the window, the less important one', () => {
    // need 9, window to 9.5, nothing inside it. Overshoot by 1: {attn0 6, mlp1 4} at cost 2.5 (found first, its
    // candidates being the less important ones) or {attn2 10} at cost 2: the latter. (Before the mutation run a
    // set that tied the best overshoot was never visited, so the first one found stayed.)
    const x: Candidate = { kind: 'attn', block: 0, params: 6, importance: 1 };
    const w: Candidate = { kind: 'mlp', block: 1, params: 4, importance: 1.5 };
    const v: Candidate = { kind: 'attn', block: 2, params: 10, importance: 2 };
    expect(names(dfsSearch([x, w, v], 9, 9.5))).toEqual(['attn2']);
    expect(dfsSearch([x, w, v], 9, 9.5)).toMatchObject({ removed: 10, cost: 2, inWindow: false });
    // the first found stays when it is the cheaper one
    expect(names(dfsSearch([x, w, { ...v, importance: 3 }], 9, 9.5))).toEqual(['attn0', 'mlp1']);
    // below the window (to 7.5): {attn0 6, mlp1 1} at cost 2.5, found first, or {attn2 7} at cost 2
    const w1 = { ...w, params: 1 };
    const v7 = { ...v, params: 7 };
    expect(names(dfsSearch([x, w1, v7], 9, 7.5, undefined, 'undershoot'))).toEqual(['attn2']);
    expect(names(dfsSearch([x, w1, { ...v7, importance: 3 }], 9, 7.5, undefined, 'undershoot'))).toEqual(['attn0', 'mlp1']);
  });

  it('the fallbacks never take a block with one of its own layers', () => {
    const block0: Candidate = { kind: 'block', block: 0, params: 6, importance: 0.1 };
    const attn0: Candidate = { kind: 'attn', block: 0, params: 2, importance: 0.2 };
    const mlp1: Candidate = { kind: 'mlp', block: 1, params: 7, importance: 1 };
    // nothing in [8.2, 8.5]; below it block 0 with its attention (8) would be the largest: 7 instead
    expect(names(dfsSearch([block0, attn0, mlp1], 8.2, 8.5, undefined, 'undershoot'))).toEqual(['mlp1']);
    // above it, with the MLP of block 1 at 11: block 0 with its attention (10) would overshoot least
    const mlp11 = { ...mlp1, params: 11 };
    expect(names(dfsSearch([block0, { ...attn0, params: 4 }, mlp11], 9, 9.5))).toEqual(['mlp1']);
  });

  it('a node limit that cuts the first pass is reported even when a set in the window was found', () => {
    const r = dfsSearch([a, b, c, d], 9, 20, 3);
    expect(r.inWindow).toBe(true);
    expect(r.truncated).toBe(true);
  });

  it('greedy stops at the need, and says when it misses the window', () => {
    const five: Candidate[] = [
      { kind: 'attn', block: 0, params: 5, importance: 1 },
      { kind: 'attn', block: 1, params: 5, importance: 2 },
    ];
    expect(greedySearch(five, 5, 20)).toMatchObject({ removed: 5, cost: 1, inWindow: true });
    expect(greedySearch(five, 12, 20)).toMatchObject({ removed: 10, cost: 3, inWindow: false });
    expect(greedySearch(five, 10, 10)).toMatchObject({ removed: 10, cost: 3, inWindow: true }); // the window's upper end is in it
  });
});

describe('marginal-cost allocation: values', () => {
  // dim 4, headDim 2: an MLP channel costs 12; an MHA head (KV group of one) 32; a GQA group of two query heads 48
  const mlpOnly = [{ nHead: 0, nKvHead: 0, ffn: 4 }];

  it('unusable variances (negative, NaN, infinite) count as 0; all-zero variances share equally', () => {
    const a = allocateByMarginalCost(mlpOnly, 4, 2, { attn: [0], mlp: [1] }, { heads: [[]], channels: [[-1, NaN, 2, 2]] }, 24);
    expect(a.keptChannels[0]).toEqual([2, 3]);
    expect(a.predictedDamage).toBe(0);
    const inf = allocateByMarginalCost(mlpOnly, 4, 2, { attn: [0], mlp: [1] }, { heads: [[]], channels: [[Infinity, 1, 3, 4]] }, 12);
    expect(inf.keptChannels[0]).toEqual([1, 2, 3]);
    expect(inf.predictedDamage).toBe(0);
    const zero = allocateByMarginalCost(mlpOnly, 4, 2, { attn: [0], mlp: [3] }, { heads: [[]], channels: [[0, 0, 0, 0]] }, 24);
    expect(zero.keptChannels[0]).toEqual([2, 3]); // equal shares: by index
    expect(zero.predictedDamage).toBeCloseTo(1.5, 12); // 3 · 2/4
  });

  it('the budget may be passed by up to half a channel, never more', () => {
    // 30 = 2.5 channels: the third channel ends at 36 = 30 + 6, still allowed
    expect(allocateByMarginalCost(mlpOnly, 4, 2, { attn: [0], mlp: [1] }, { heads: [[]], channels: [[1, 2, 3, 4]] }, 30).keptChannels[0]).toEqual([3]);
    expect(allocateByMarginalCost(mlpOnly, 4, 2, { attn: [0], mlp: [1] }, { heads: [[]], channels: [[1, 2, 3, 4]] }, 29).keptChannels[0]).toEqual([2, 3]);
  });

  it('equal rates: the earlier block, and the lower index, go first', () => {
    const two = [
      { nHead: 0, nKvHead: 0, ffn: 3 },
      { nHead: 0, nKvHead: 0, ffn: 3 },
    ];
    const a = allocateByMarginalCost(two, 4, 2, { attn: [0, 0], mlp: [1, 1] }, { heads: [[], []], channels: [[1, 1, 1], [1, 1, 1]] }, 12);
    expect(a.keptChannels).toEqual([[1, 2], [0, 1, 2]]);
  });

  it('GQA: a group\'s variance is the sum of its own query heads', () => {
    const gqa = [{ nHead: 4, nKvHead: 2, ffn: 0 }];
    // heads [0, 5 | 1, 1]: group 0 holds 5, group 1 holds 2 → group 1 goes
    const a = allocateByMarginalCost(gqa, 4, 2, { attn: [1], mlp: [0] }, { heads: [[0, 5, 1, 1]], channels: [[]] }, 48);
    expect(a.keptKv[0]).toEqual([0]);
    expect(a.keptHeads[0]).toEqual([0, 1]);
    expect(a.predictedDamage).toBeCloseTo(2 / 7, 12);
    const b = allocateByMarginalCost(gqa, 4, 2, { attn: [1], mlp: [0] }, { heads: [[1, 1, 0, 5]], channels: [[]] }, 48);
    expect(b.keptKv[0]).toEqual([1]);
    expect(b.keptHeads[0]).toEqual([2, 3]);
  });

  it('curvature γ: the damage of a removed share F is S·F^γ, per sublayer when given per sublayer', () => {
    const one = [{ nHead: 2, nKvHead: 2, ffn: 4 }];
    const units = { heads: [[1, 1]], channels: [[1, 1, 1, 1]] };
    // two channels of equal share: F = 0.5 → 2 · 0.5² = 0.5 (S = 2, γ = 2)
    const a = allocateByMarginalCost(one, 4, 2, { attn: [100], mlp: [2] }, units, 24, 2);
    expect(a.keptChannels[0]).toEqual([2, 3]);
    expect(a.predictedDamage).toBeCloseTo(0.5, 12);
    const b = allocateByMarginalCost(one, 4, 2, { attn: [100], mlp: [2] }, units, 24, { attn: [1], mlp: [3] });
    expect(b.predictedDamage).toBeCloseTo(2 * 0.5 ** 3, 12);
    // a sublayer missing from the per-sublayer γ: 1
    const c = allocateByMarginalCost(one, 4, 2, { attn: [100], mlp: [2] }, units, 24, { attn: [], mlp: [] });
    expect(c.predictedDamage).toBeCloseTo(1, 12);
  });
});

// A plan written by hand: dim 8, headDim 2, blocks of 4 query heads in 2 KV groups and 4 MLP channels
// (attention 2·8·4·2 + 2·8·2·2 = 192, MLP 3·8·4 = 96: 288 per block).
const all = (n: number) => [...Array(n).keys()];
function handPlan(n = 3, layer = { nHead: 4, nKvHead: 2, ffn: 4 }): PruningPlan {
  const layers = Array.from({ length: n }, () => ({ ...layer }));
  return {
    format: 'entroprune.plan',
    version: 1,
    createdBy: 'test',
    model: { identity: '0'.repeat(64), dim: 8, headDim: 2, vocab: 16, tiedOutput: false, layers },
    target: { ratio: 0.3, counting: 'block-linear' },
    achieved: { ratio: 0, keptParams: 0, originalParams: 0, wholeModelRatio: 0 },
    method: {} as PruningPlan['method'],
    notes: [],
    blocks: layers.map((s, index) => ({
      index,
      removed: false,
      attention: { removed: false, keptKvHeads: all(s.nKvHead), keptHeads: all(s.nHead) },
      mlp: { removed: false, keptChannels: all(s.ffn) },
      compensate: true,
    })),
  };
}
const removeAttention = (b: BlockPlan) => {
  b.attention = { removed: true, keptKvHeads: [], keptHeads: [] };
  b.removed = b.mlp.removed;
};
const removeMlp = (b: BlockPlan) => {
  b.mlp = { removed: true, keptChannels: [] };
  b.removed = b.attention.removed;
};

describe('plan validation: every impossible edit, with its message', () => {
  const cases: [string, (p: PruningPlan) => void, string][] = [
    ['index', (p) => { p.blocks[1].index = 0; }, 'blocks[1].index: is 0, expected 1'],
    ['too many KV heads', (p) => { p.blocks[0].attention.keptKvHeads = [0, 1, 2]; }, 'blocks[0].attention.keptKvHeads: keeps 3 KV heads of a layer that has 2'],
    ['too many query heads', (p) => { p.blocks[0].attention.keptHeads = [0, 1, 2, 3, 4]; }, 'blocks[0].attention.keptHeads: keeps 5 query heads of a layer that has 4'],
    ['too many channels', (p) => { p.blocks[2].mlp.keptChannels = [0, 1, 2, 3, 4]; }, 'blocks[2].mlp.keptChannels: keeps 5 channels of a layer that has 4'],
    ['K-means groups of KV heads', (p) => { p.blocks[0].groups = { kvHeads: [0, 1, 0] }; }, 'blocks[0].groups.kvHeads: has 3 entries for 2 KV heads'],
    ['K-means groups of channels', (p) => { p.blocks[0].groups = { channels: [0, 1, 0] }; }, 'blocks[0].groups.channels: has 3 entries for 4 channels'],
    ['KV heads out of order', (p) => { p.blocks[0].attention.keptKvHeads = [1, 0]; }, 'blocks[0].attention.keptKvHeads: must be strictly ascending (no duplicates)'],
    ['query heads out of order', (p) => { p.blocks[0].attention.keptHeads = [1, 0, 2, 3]; }, 'blocks[0].attention.keptHeads: must be strictly ascending (no duplicates)'],
    ['KV head out of range', (p) => { p.blocks[0].attention.keptKvHeads = [0, 2]; }, 'blocks[0].attention.keptKvHeads: KV head 2 out of range (the layer has 2)'],
    ['query head out of range', (p) => { p.blocks[0].attention.keptHeads = [0, 1, 2, 4]; }, 'blocks[0].attention.keptHeads: query head 4 out of range (the layer has 4)'],
    ['query head of a removed group', (p) => { p.blocks[0].attention = { removed: false, keptKvHeads: [0], keptHeads: [0, 2] }; }, 'blocks[0].attention.keptHeads: query head 2 is kept but its KV group 1 was removed'],
    ['KV group without query heads', (p) => { p.blocks[0].attention.keptHeads = [0, 1]; }, 'blocks[0].attention.keptKvHeads: KV group 1 is kept without any of its query heads'],
    ['uneven groups', (p) => { p.blocks[0].attention.keptHeads = [0, 1, 2]; }, 'blocks[0].attention.keptHeads: kept KV groups keep different numbers of query heads (2, 1); runtimes need n_head to be a multiple of n_head_kv'],
    ['attention.removed with heads', (p) => { p.blocks[0].attention.removed = true; }, 'blocks[0].attention.removed: is true but 4 query heads are kept'],
    ['attention kept without heads', (p) => { p.blocks[0].attention = { removed: false, keptKvHeads: [], keptHeads: [] }; }, 'blocks[0].attention.removed: is false but 0 query heads are kept'],
    ['channels out of order', (p) => { p.blocks[0].mlp.keptChannels = [1, 0]; }, 'blocks[0].mlp.keptChannels: must be strictly ascending (no duplicates)'],
    ['channel out of range', (p) => { p.blocks[0].mlp.keptChannels = [0, 4]; }, 'blocks[0].mlp.keptChannels: channel 4 out of range (the layer has 4)'],
    ['mlp.removed with channels', (p) => { p.blocks[0].mlp.removed = true; }, 'blocks[0].mlp.removed: is true but 4 channels are kept'],
    ['block removed with parts kept', (p) => { p.blocks[0].removed = true; }, 'blocks[0].removed: is true but attention.removed=false, mlp.removed=false'],
    ['block kept with both parts removed', (p) => { removeAttention(p.blocks[0]); removeMlp(p.blocks[0]); p.blocks[0].removed = false; }, 'blocks[0].removed: is false but attention.removed=true, mlp.removed=true'],
    ['blocks', (p) => { p.blocks.push({ ...p.blocks[2], index: 3 }); }, 'blocks: has 4 entries for a model of 3 blocks'],
  ];
  it.each(cases)('%s', (_, edit, message) => {
    const p = handPlan();
    checkPlan(p); // the unedited plan is valid
    edit(p);
    expect(() => checkPlan(p)).toThrow(`plan: ${message}`);
    expect(() => checkPlan(p, 'edited.json')).toThrow(`edited.json: ${message}`);
    try {
      checkPlan(p, 'edited.json');
    } catch (e) {
      expect(e).toMatchObject({ name: 'EntropruneError', code: 'EP_FORMAT', file: 'edited.json', message: `edited.json: ${message}` });
    }
  });

  it('valid edits pass: fewer heads per group, equal in every kept group; whole parts removed', () => {
    const p = handPlan();
    p.blocks[0].attention.keptHeads = [1, 3];
    p.blocks[1].attention = { removed: false, keptKvHeads: [1], keptHeads: [2, 3] };
    removeMlp(p.blocks[1]);
    removeAttention(p.blocks[2]);
    removeMlp(p.blocks[2]);
    p.blocks[2].groups = { kvHeads: [0, 1], channels: [0, 0, 1, 1] };
    expect(() => checkPlan(p)).not.toThrow();
  });

  it('the JSON shape first: the path of the first schema error, (root) at the top; a file\'s errors name it', () => {
    expect(() => validatePlan(42)).toThrow('plan: (root): must be object');
    expect(() => validatePlan({})).toThrow("plan: (root): must have required property 'format'");
    const p = handPlan();
    expect(validatePlan(JSON.parse(JSON.stringify(p)))).toEqual(p);
    const bad = path.join(scratch, 'bad.plan.json');
    fs.writeFileSync(bad, '{not json');
    expect(() => readPlan(bad)).toThrow(new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: cannot read plan JSON: `));
  });
});

describe('compensation biases and the achieved ratio', () => {
  const none = { attnOut: false, ffnDown: false };
  it('nothing removed, or compensation off: only the model\'s own biases', () => {
    expect(compensationBiases(handPlan())).toEqual([none, none, none]);
    const p = handPlan();
    p.model.layers[1].attnOutBias = true;
    p.model.layers[2].ffnDownBias = true;
    p.blocks[0].mlp.keptChannels = [0];
    for (const b of p.blocks) b.compensate = false;
    expect(compensationBiases(p)).toEqual([none, { attnOut: true, ffnDown: false }, { attnOut: false, ffnDown: true }]);
  });

  it('removed units: into their own sublayer\'s output bias; a removed MLP into the attention output bias', () => {
    const p = handPlan();
    p.blocks[0].attention = { removed: false, keptKvHeads: [0, 1], keptHeads: [0, 2] };
    p.blocks[1].mlp.keptChannels = [1, 2, 3];
    removeMlp(p.blocks[2]);
    expect(compensationBiases(p)).toEqual([{ attnOut: true, ffnDown: false }, { attnOut: false, ffnDown: true }, { attnOut: true, ffnDown: false }]);
  });

  it('a removed attention layer or block: into the nearest earlier block\'s MLP (or attention) output bias', () => {
    const p = handPlan(4);
    removeAttention(p.blocks[1]); // → block 0's ffn_down
    removeMlp(p.blocks[2]); // block 2 keeps attention only → its own attn_output
    removeAttention(p.blocks[3]);
    removeMlp(p.blocks[3]); // block 3 removed → block 2, which has no MLP → its attn_output
    expect(compensationBiases(p)).toEqual([{ attnOut: false, ffnDown: true }, none, { attnOut: true, ffnDown: false }, none]);
    // removed blocks are skipped on the way back; nothing before block 0 (the embeddings take it, no bias)
    const q = handPlan(3);
    for (const l of [0, 1]) {
      removeAttention(q.blocks[l]);
      removeMlp(q.blocks[l]);
    }
    removeAttention(q.blocks[2]);
    expect(compensationBiases(q)).toEqual([none, none, none]);
    const r = handPlan(3);
    removeAttention(r.blocks[1]);
    removeMlp(r.blocks[1]);
    removeAttention(r.blocks[2]);
    removeMlp(r.blocks[2]);
    expect(compensationBiases(r)).toEqual([{ attnOut: false, ffnDown: true }, none, none]);
  });

  it('sublayers the model does not have are not "removed" and fold nothing', () => {
    const p = handPlan(2);
    p.model.layers[1] = { nHead: 0, nKvHead: 0, ffn: 4 }; // attention-free block
    p.blocks[1].attention = { removed: true, keptKvHeads: [], keptHeads: [] };
    expect(compensationBiases(p)).toEqual([none, none]);
    const q = handPlan(2);
    q.model.layers[1] = { nHead: 4, nKvHead: 2, ffn: 0 }; // MLP-free block
    q.blocks[1].mlp = { removed: true, keptChannels: [] };
    expect(compensationBiases(q)).toEqual([none, none]);
    const e = handPlan(2);
    e.model.layers[1] = { nHead: 0, nKvHead: 0, ffn: 0 }; // an empty block
    e.blocks[1] = { index: 1, removed: true, attention: { removed: true, keptKvHeads: [], keptHeads: [] }, mlp: { removed: true, keptChannels: [] }, compensate: true };
    expect(compensationBiases(e)).toEqual([none, none]);
  });

  it('a removed block with only one kind of sublayer folds it too', () => {
    const p = handPlan(2);
    p.model.layers[1] = { nHead: 0, nKvHead: 0, ffn: 4 }; // attention-free, removed whole
    p.blocks[1] = { index: 1, removed: true, attention: { removed: true, keptKvHeads: [], keptHeads: [] }, mlp: { removed: true, keptChannels: [] }, compensate: true };
    expect(compensationBiases(p)).toEqual([{ attnOut: false, ffnDown: true }, none]);
    const q = handPlan(2);
    q.model.layers[1] = { nHead: 4, nKvHead: 2, ffn: 0 }; // MLP-free, removed whole
    q.blocks[1] = { index: 1, removed: true, attention: { removed: true, keptKvHeads: [], keptHeads: [] }, mlp: { removed: true, keptChannels: [] }, compensate: true };
    expect(compensationBiases(q)).toEqual([{ attnOut: false, ffnDown: true }, none]);
  });

  it('writePlan checks before it writes, and writes indented JSON with a final newline', () => {
    const file = path.join(scratch, 'w.plan.json');
    const p = handPlan(1);
    writePlan(file, p);
    expect(fs.readFileSync(file, 'utf8')).toBe(JSON.stringify(p, null, 1) + '\n');
    expect(readPlan(file)).toEqual(p);
    const bad = handPlan(1);
    bad.blocks[0].mlp.keptChannels = [3, 1];
    const other = path.join(scratch, 'bad-w.plan.json');
    expect(() => writePlan(other, bad)).toThrow(`${other}: blocks[0].mlp.keptChannels: must be strictly ascending (no duplicates)`);
    expect(fs.existsSync(other)).toBe(false);
  });

  it('pruned shapes and the achieved ratio count those biases', () => {
    const p = handPlan(2);
    removeMlp(p.blocks[1]);
    expect(prunedShapes(p)).toEqual([
      { nHead: 4, nKvHead: 2, ffn: 4, attnOutBias: false, ffnDownBias: false },
      { nHead: 4, nKvHead: 2, ffn: 0, attnOutBias: true, ffnDownBias: false },
    ]);
    // kept 288 + 192 + 8 (the bias) of 576
    expect(achievedRatio(p)).toEqual({ ratio: 1 - 488 / 576, kept: 488, original: 576 });
  });
});

// A hand-made analysis: dim 8, headDim 2, every block the same shape. A query head costs 2·8·2 = 32 (q and o),
// a KV head 32 (k and v), an MLP channel 3·8 = 24. Importances (entropies, energies, ...) given per block.
interface TinyBlock {
  te?: number;
  teAttn?: number;
  teMlp?: number;
  cosine?: number;
  teStream?: number;
  heads: number[];
  channels: number[];
  headEnergy?: number[];
  channelEnergy?: number[];
  headContribution?: number[];
  channelContribution?: number[];
}
function tiny(layer: { nHead: number; nKvHead: number; ffn: number }, blocks: TinyBlock[]): PlannerInput {
  const layers = blocks.map(() => ({ ...layer }));
  return {
    format: 'entroprune.analysis',
    version: 1,
    createdBy: 'test',
    model: { path: 'tiny', format: 'gguf', arch: 'llama', dim: 8, vocab: 16, headDim: 2, layers, identity: 'f'.repeat(64) },
    calibration: { file: 'x', kind: 'tokens', streamTokens: 1, samples: 1, seqLen: 2, seed: 0, tokens: 1, projected: false, jointDim: 1, maxDim: 1024, projDim: 512, ridge: 1e-6 },
    blocks: blocks.map((b, index) => ({
      index,
      te: b.te ?? 1,
      teAttn: b.teAttn ?? 1,
      teMlp: b.teMlp ?? 1,
      cosine: b.cosine ?? 0.9,
      maxRidgeEffect: 0,
      ...(b.teStream !== undefined ? { teStream: b.teStream, teStreamAttn: b.teStream, teStreamMlp: b.teStream } : {}),
      attention: layer.nHead
        ? { nHead: layer.nHead, nKvHead: layer.nKvHead, headEntropy: b.heads, headEnergy: b.headEnergy ?? b.heads, ...(b.headContribution ? { headContribution: b.headContribution } : {}) }
        : null,
      mlp: layer.ffn ? { width: layer.ffn, channelEntropy: b.channels, channelEnergy: b.channelEnergy ?? b.channels, ...(b.channelContribution ? { channelContribution: b.channelContribution } : {}) } : null,
    })),
  };
}
const kept = (p: PruningPlan) => p.blocks.map((b) => [b.attention.keptHeads, b.mlp.keptChannels]);

describe('planner options: every bad value refused with its range', () => {
  const a = tiny({ nHead: 2, nKvHead: 2, ffn: 4 }, [{ heads: [1, 2], channels: [1, 2, 3, 4] }]);
  const bad: [Partial<PlanOptions>, string][] = [
    [{ ratio: 0 }, 'ratio must lie in (0, 1) (got 0)'],
    [{ ratio: 1 }, 'ratio must lie in (0, 1) (got 1)'],
    [{ ratio: NaN }, 'ratio must lie in (0, 1) (got NaN)'],
    [{ maxBlockRatio: 1.01 }, 'maxBlockRatio must lie in [0, 1] (got 1.01)'],
    [{ maxBlockRatio: -0.1 }, 'maxBlockRatio must lie in [0, 1] (got -0.1)'],
    [{ maxBlockRatio: NaN }, 'maxBlockRatio must lie in [0, 1] (got NaN)'],
    [{ maxBlockRatio: 0.29 }, 'maxBlockRatio 0.29 is below the target ratio 0.3: no block could lose enough'],
    [{ temperature: 16.5 }, 'temperature must lie in [0, 16] (got 16.5) (β in w = s^−β; larger values overflow)'],
    [{ temperature: -1 }, 'temperature must lie in [0, 16] (got -1) (β in w = s^−β; larger values overflow)'],
    [{ tolerance: 0.51 }, 'tolerance must lie in [0, 0.5] (got 0.51)'],
    [{ tolerance: -0.01 }, 'tolerance must lie in [0, 0.5] (got -0.01)'],
    [{ k: 0 }, 'k must be an integer in [1, 64] (got 0)'],
    [{ k: 65 }, 'k must be an integer in [1, 64] (got 65)'],
    [{ k: 2.5 }, 'k must be an integer in [1, 64] (got 2.5)'],
    [{ alignHeads: 0 }, 'alignHeads must be a positive integer (got 0)'],
    [{ alignHeads: 1.5 }, 'alignHeads must be a positive integer (got 1.5)'],
    [{ align: 0 }, 'align must be a positive integer (got 0)'],
    [{ align: 2.5 }, 'align must be a positive integer (got 2.5)'],
    [{ curvature: 0.99 }, 'curvature must lie in [1, 16] or be "measured" (got 0.99)'],
    [{ curvature: 16.01 }, 'curvature must lie in [1, 16] or be "measured" (got 16.01)'],
    [{ curvature: NaN }, 'curvature must lie in [1, 16] or be "measured" (got NaN)'],
    [{ curvature: 'measured' }, 'curvature "measured" needs the measured estimator and an analysis with measured half cuts (re-run analyze)'],
    [{ estimator: 'measured' }, 'estimator "measured" needs an analysis with measured sensitivities (analyze without --no-sensitivity)'],
    [{ importance: 'weight' }, 'importance "weight" needs the model\'s weight magnitudes (pass the model)'],
    [{ importance: 'contribution' }, 'importance "contribution" needs an analysis with unit contributions (block 0 has none: re-run analyze)'],
  ];
  it.each(bad)('%o', (o, message) => {
    expect(() => plan(a, { ratio: 0.3, ...o })).toThrow(message);
    try {
      plan(a, { ratio: 0.3, ...o });
    } catch (e) {
      // the whole message, not only a part of it (a range without a hint adds nothing after the value)
      expect(e).toMatchObject({ name: 'EntropruneError', code: 'EP_INVALID_ARGUMENT', message });
    }
  });

  it('curvature "measured" needs the measured estimator even when the analysis has the half cuts', () => {
    const base = { windows: 1, seqLen: 2, seed: 0, compensated: true, baseNll: 1, block: [1], attn: [1], mlp: [1], agreement: {}, agreementWithLoss: {} };
    const measured = { ...a, sensitivity: { ...base, kl: { block: [2], attn: [1], mlp: [1] }, partial: { attnShare: [0.5], mlpShare: [0.5], kl: { attn: [0.5], mlp: [0.25] }, nll: { attn: [0], mlp: [0] } } } } as PlannerInput;
    expect(() => plan(measured, { ratio: 0.3, curvature: 'measured' })).not.toThrow();
    expect(() => plan(measured, { ratio: 0.3, curvature: 'measured', estimator: 'output-te' })).toThrow('curvature "measured" needs the measured estimator');
  });

  it('the ends of every range are accepted', () => {
    for (const o of [{ maxBlockRatio: 1 }, { maxBlockRatio: 0.3 }, { temperature: 0 }, { temperature: 16 }, { tolerance: 0 }, { tolerance: 0.5 }, { curvature: 1 }, { curvature: 16 }, { ratio: 0.001 }, { ratio: 0.999, maxBlockRatio: 1 }])
      expect(() => plan(a, { ratio: 0.3, ...o }), JSON.stringify(o)).not.toThrow();
    for (const k of [1, 64]) expect(plan(a, { ratio: 0.3, allocation: 'paper', k }).method.k).toBe(k);
  });

  it('contributions are needed only from the sublayers a block has', () => {
    const withMlpOnly = tiny({ nHead: 0, nKvHead: 0, ffn: 4 }, [{ heads: [], channels: [1, 2, 3, 4], channelContribution: [4, 3, 2, 1] }]);
    expect(() => plan(withMlpOnly, { ratio: 0.3, importance: 'contribution' })).not.toThrow();
    const attnOnly = tiny({ nHead: 2, nKvHead: 2, ffn: 0 }, [{ heads: [1, 2], channels: [], headContribution: [1, 2] }]);
    expect(() => plan(attnOnly, { ratio: 0.3, importance: 'contribution' })).not.toThrow();
    const missingMlp = tiny({ nHead: 2, nKvHead: 2, ffn: 4 }, [{ heads: [1, 2], channels: [1, 2, 3, 4], headContribution: [1, 2] }]);
    expect(() => plan(missingMlp, { ratio: 0.3, importance: 'contribution' })).toThrow(/block 0 has none/);
    const missingAttn = tiny({ nHead: 2, nKvHead: 2, ffn: 4 }, [{ heads: [1, 2], channels: [1, 2, 3, 4], channelContribution: [4, 3, 2, 1] }]);
    expect(() => plan(missingAttn, { ratio: 0.3, importance: 'contribution' })).toThrow(/block 0 has none/);
  });
});

describe('planner parts: values', () => {
  it('the attention/MLP split: a missing part takes nothing, TE ≤ 0 counts as tiny, overflow both ways', () => {
    expect(splitBudget(60, 0, 100, 1, 1)).toEqual([0, 60]);
    expect(splitBudget(200, 0, 100, 1, 1)).toEqual([0, 100]);
    expect(splitBudget(60, 100, 0, 1, 1)).toEqual([60, 0]);
    expect(splitBudget(150, 100, 0, 1, 1)).toEqual([100, 0]);
    const [ba, bm] = splitBudget(90, 100, 100, 0, 1); // 1/TE_attn = 1e9: nearly all to attention
    expect(ba).toBeCloseTo(90, 6);
    expect(bm).toBeCloseTo(0, 6);
    expect(splitBudget(90, 100, 20, 2, 1)).toEqual([70, 20]); // MLP share 60 capped at 20, 40 back to attention
    expect(splitBudget(150, 100, 20, 2, 1)).toEqual([100, 20]);
  });

  it('the default estimator: measured when present, stream TE when every block has it, else output TE', () => {
    const b = (teStream?: number): TinyBlock => ({ heads: [1, 2], channels: [1, 2, 3, 4], teStream });
    const layer = { nHead: 2, nKvHead: 2, ffn: 4 };
    expect(defaultEstimator(tiny(layer, [b(1), b(2)]))).toBe('stream-te');
    expect(defaultEstimator(tiny(layer, [b(1), b()]))).toBe('output-te');
    expect(defaultEstimator(tiny(layer, [b(), b()]))).toBe('output-te');
    expect(defaultEstimator({ ...tiny(layer, [b()]), sensitivity: {} as never })).toBe('measured');
  });

  it('the measured damage model where a point is missing or unusable: S (0 if unusable) with γ = 1', () => {
    const base = { windows: 1, seqLen: 2, seed: 0, compensated: true, baseNll: 1, block: [1], attn: [1], mlp: [1], agreement: {}, agreementWithLoss: {} };
    const a = {
      sensitivity: {
        ...base,
        kl: { block: [1], attn: [2, 2, 2, 0, -1, null], mlp: [2, 2, null, 2, 2, 2] },
        partial: { attnShare: [1, 0, 0.5, 0.5, 0.5, 0.5], mlpShare: [0.5, 0.5, 0.5, null, 0.5, 0.5], kl: { attn: [1, 1, 0, 0.5, 0.5, 0.5], mlp: [-0.5, 0.5, 0.5, 0.5, null, 0.5] }, nll: { attn: [], mlp: [] } },
      },
    } as unknown as Parameters<typeof measuredDamageModel>[0];
    const m = measuredDamageModel(a);
    // attention: F = 1, F = 0, half cut 0: S with γ 1; S = 0, S < 0, S null: 0
    expect(m.sens.attn).toEqual([2, 2, 2, 0, 0, 0]);
    expect(m.curvature.attn).toEqual([1, 1, 1, 1, 1, 1]);
    // MLP: half cut < 0: S, γ 1; 0.5 = 2·0.5^γ: γ = 2; S null: 0; share null, half cut null: S, γ 1
    expect(m.sens.mlp).toEqual([2, 2, 0, 2, 2, 2]);
    expect(m.curvature.mlp).toEqual([1, 2, 1, 1, 1, 2]);
  });
});

describe('baselines and the paper allocation on hand-made analyses', () => {
  // blocks of 2 heads (MHA) and 4 channels: attention 128, MLP 96, block 224
  const layer = { nHead: 2, nKvHead: 2, ffn: 4 };
  const flat = (o: Partial<TinyBlock>): TinyBlock => ({ heads: [1, 1], channels: [1, 1, 1, 1], ...o });

  it('block drop: highest cosine first (ties by index), each block taken while it brings the ratio closer', () => {
    const a = tiny(layer, [flat({ cosine: 0.5 }), flat({ cosine: 0.9 }), flat({ cosine: 0.7 }), flat({ cosine: 0.9 })]);
    const half = plan(a, { ratio: 0.5, method: 'block-drop', compensation: false });
    expect(half.blocks.map((b) => b.removed)).toEqual([false, true, false, true]);
    expect(half.blocks[0].mlp.keptChannels).toEqual([0, 1, 2, 3]); // no channel fill for whole-block baselines
    expect(half.notes).toEqual(['block-drop: removed blocks 1, 3']);
    expect(half.achieved).toMatchObject({ ratio: 0.5, keptParams: 448, originalParams: 896 });
    // whole model: 896 + norms 8·8 + final norm 8 + embedding and head 2·16·8 = 1224 before; 448 + 32 + 8 + 256 after
    expect(half.achieved.wholeModelRatio).toBeCloseTo(480 / 1224, 14);
    // 0.375: a second block lands as close (0.125) as stopping at one: taken
    expect(plan(a, { ratio: 0.375, method: 'block-drop' }).blocks.filter((b) => b.removed).length).toBe(2);
    const none = plan(a, { ratio: 0.1, method: 'block-drop' });
    expect(none.blocks.every((b) => !b.removed)).toBe(true);
    expect(none.notes).toEqual(['block-drop: removed blocks none', 'achieved ratio 0.00 % is more than 0.5 points from the target: block removal moves in steps of one block']);
  });

  it('layer drop: lowest attention TE first, attention layers only', () => {
    const a = tiny(layer, [flat({ teAttn: 3 }), flat({ teAttn: 1 }), flat({ teAttn: 2 }), flat({ teAttn: 1 })]);
    const p = plan(a, { ratio: 0.25, method: 'layer-drop', compensation: false });
    expect(p.blocks.map((b) => [b.removed, b.attention.removed, b.mlp.keptChannels.length])).toEqual([[false, false, 4], [false, true, 4], [false, false, 4], [false, true, 4]]);
    expect(p.achieved.ratio).toBeCloseTo(256 / 896, 12);
    // attention-free blocks have no attention layer to drop
    const free = tiny(layer, [flat({ teAttn: 3 }), flat({ teAttn: 0 }), flat({ teAttn: 2 }), flat({ teAttn: 1 })]);
    free.model.layers[1] = { nHead: 0, nKvHead: 0, ffn: 4 };
    free.blocks[1].attention = null;
    expect(plan(free, { ratio: 128 / 768, method: 'layer-drop', compensation: false }).notes).toEqual(['layer-drop: removed attention layers 3']);
    expect(p.notes).toEqual([
      'layer-drop: removed attention layers 1, 3',
      'achieved ratio 28.57 % is more than 0.5 points from the target: attention-layer removal moves in steps of one layer (and cannot exceed all attention layers)',
    ]);
  });

  it('uniform width: round(p·n) least important units of every block, then the fill from the lowest-TE block', () => {
    // 4 heads (MHA), 10 channels: attention 256, MLP 240, block 496. At 0.3: one head and 3 channels a block
    // (272 of 992); the fill takes one more channel (24) from block 1 (lower TE) to within half the tolerance.
    const mha = { nHead: 4, nKvHead: 4, ffn: 10 };
    const a = tiny(mha, [
      { te: 2, heads: [4, 1, 3, 2], channels: [10, 9, 8, 7, 6, 5, 4, 3, 2, 1], headEnergy: [1, 4, 3, 2] },
      { te: 1, heads: [1, 2, 3, 4], channels: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] },
    ]);
    const p = plan(a, { ratio: 0.3, method: 'uniform', compensation: false });
    expect(kept(p)).toEqual([[[0, 2, 3], [0, 1, 2, 3, 4, 5, 6]], [[1, 2, 3], [4, 5, 6, 7, 8, 9]]]);
    expect(p.blocks.map((b) => b.attention.keptKvHeads)).toEqual([[0, 2, 3], [1, 2, 3]]);
    expect(p.blocks.map((b) => b.plannedRatio)).toEqual([0.3, 0.3]);
    expect(p.notes).toEqual(['fill: 1 more MLP channels removed to reach the target']);
    expect(p.achieved.ratio).toBeCloseTo(296 / 992, 12);
    // the same by activation energy: block 0 then loses head 0
    expect(plan(a, { ratio: 0.3, method: 'uniform', importance: 'activation' }).blocks[0].attention.keptHeads).toEqual([1, 2, 3]);
  });

  it('one shape for every block: the same width, each block\'s most important channels', () => {
    // 2 heads, 10 channels: attention 128, MLP 240, block 368. At 0.3: 4.6 channels a block → keep round(5.4) = 5.
    const w = { nHead: 2, nKvHead: 2, ffn: 10 };
    const a = tiny(w, [
      { heads: [1, 2], channels: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] },
      { heads: [1, 2], channels: [10, 9, 8, 7, 6, 5, 4, 3, 2, 1] },
    ]);
    const p = plan(a, { ratio: 0.3, uniformShape: true });
    expect(kept(p)).toEqual([[[0, 1], [5, 6, 7, 8, 9]], [[0, 1], [0, 1, 2, 3, 4]]]);
    // 240 of 736 removed, 16 back as the two ffn_down biases compensation adds: 30.43 %, within the tolerance
    expect(p.notes).toEqual(['uniform shape: every block keeps 5 of 10 MLP channels and all heads']);
    expect(p.achieved.ratio).toBeCloseTo(224 / 736, 14);
    expect(plan(a, { ratio: 0.3, uniformShape: true, compensation: false }).notes).toEqual([
      'uniform shape: every block keeps 5 of 10 MLP channels and all heads',
      'achieved ratio 32.61 % is more than 0.5 points from the target: one shape for every block moves in steps of L·align channels',
    ]);
    expect(plan(a, { ratio: 0.3, uniformShape: true, align: 2 }).blocks[0].mlp.keptChannels).toEqual([4, 5, 6, 7, 8, 9]); // round(2.7)·2 = 6
    expect(plan(a, { ratio: 0.3, uniformShape: true, align: 4 }).blocks[1].mlp.keptChannels).toEqual([0, 1, 2, 3]); // round(1.35)·4 = 4
    expect(() => plan(a, { ratio: 0.01, uniformShape: true })).toThrow('--uniform cannot reach ratio 0.01 with MLP width 10 and align 1');
    expect(() => plan(a, { ratio: 0.3, uniformShape: true, align: 16 })).toThrow('--uniform cannot reach ratio 0.3 with MLP width 10 and align 16');
    const mixed = tiny(w, [{ heads: [1, 2], channels: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] }, { heads: [1, 2], channels: [1, 2, 3, 4, 5, 6, 7, 8] }]);
    mixed.model.layers[1].ffn = 8;
    expect(() => plan(mixed, { ratio: 0.3, uniformShape: true })).toThrow('--uniform needs a model whose blocks all have the same shape');
  });

  it('paper allocation (width): whole K-means clusters within each sublayer\'s budget, then the fill', () => {
    // one block, 2 heads (MHA) and 6 channels: attention 128, MLP 144, 272. At 0.5 the block's budget 136 splits
    // 68 / 68 (equal TE). Channel clusters {0, 0.1} {5, 5.1} {10, 10.1}: the first (48) fits, two would not.
    // Head groups {1} {3}: head 1 (64) fits. 112 removed; the fill takes channel 2 (24) to reach 136.
    const a = tiny({ nHead: 2, nKvHead: 2, ffn: 6 }, [{ heads: [3, 1], channels: [0, 0.1, 5, 5.1, 10, 10.1] }]);
    const p = plan(a, { ratio: 0.5, allocation: 'paper', granularity: 'width-only', k: 3, compensation: false });
    expect(kept(p)).toEqual([[[0], [3, 4, 5]]]);
    expect(p.blocks[0].groups).toEqual({ channels: [0, 0, 1, 1, 2, 2], kvHeads: [1, 0] });
    expect(p.blocks[0].plannedRatio).toBeCloseTo(0.5, 9);
    expect(p.notes).toEqual(['fill: 1 more MLP channels removed to reach the target']);
    expect(p.achieved.ratio).toBe(0.5);
  });

  it('paper allocation (width, GQA): the leftover budget trims the same number of heads from every kept group', () => {
    // 4 query heads in 2 groups, 6 channels: attention 192, MLP 144, 336. At 0.6: budget 201.6, split 3:1 by
    // 1/TE (TE 1 and 3): attention 151.2, MLP 50.4. The groups tie (3 and 3): one cluster of 192, too big; the
    // 151.2 left trims min(G−1, ⌊151.2 / (2·32)⌋) = 1 head from each group (its less important one).
    // Channels: cluster {0, 0.1} (48). 112 removed of 201.6; the fill then takes 3 channels (72), the most it
    // can without passing the target, and stops with one channel left.
    const a = tiny({ nHead: 4, nKvHead: 2, ffn: 6 }, [{ teAttn: 1, teMlp: 3, heads: [1, 2, 2, 1], channels: [0, 0.1, 5, 5.1, 10, 10.1] }]);
    const p = plan(a, { ratio: 0.6, allocation: 'paper', granularity: 'width-only', k: 3, compensation: false });
    expect(kept(p)).toEqual([[[1, 2], [5]]]);
    expect(p.blocks[0].attention.keptKvHeads).toEqual([0, 1]);
    expect(p.notes).toEqual([
      'fill: 3 more MLP channels removed to reach the target',
      'achieved ratio 54.76 % is more than 0.5 points from the target: the alignment and GQA constraints leave no finer step',
    ]);
  });

  // three blocks; width budgets too small for any whole cluster, so the search over layers does the work.
  // TE: blocks [5, 6, 7], attention [2, 1, 3], MLP [3, 4, 1.5].
  const deep = tiny(layer, [flat({ te: 5, teAttn: 2, teMlp: 3 }), flat({ te: 6, teAttn: 1, teMlp: 4 }), flat({ te: 7, teAttn: 3, teMlp: 1.5 })]);

  it('paper allocation (depth): DFS takes the least important layers that land in the window', () => {
    const p = plan(deep, { ratio: 1 / 3, allocation: 'paper', compensation: false });
    expect(p.blocks.map((b) => [b.attention.removed, b.mlp.removed])).toEqual([[false, false], [true, false], [false, true]]);
    expect(p.notes).toHaveLength(1);
    expect(p.notes[0]).toMatch(/^dfs: remaining 33\.33 % met by removing attn1, mlp2 \(\d+ nodes\)$/);
    expect(p.achieved.ratio).toBeCloseTo(1 / 3, 12);
    expect(p.blocks.every((b) => b.compensate === false)).toBe(true);
    // a whole block is a candidate too: block 0 at TE 0.5 is now the cheapest way to 224
    const blockFirst = tiny(layer, [flat({ te: 0.5, teAttn: 2, teMlp: 3 }), flat({ te: 6, teAttn: 1, teMlp: 4 }), flat({ te: 7, teAttn: 3, teMlp: 1.5 })]);
    const q = plan(blockFirst, { ratio: 1 / 3, allocation: 'paper', compensation: false });
    expect(q.blocks.map((b) => b.removed)).toEqual([true, false, false]);
    expect(q.notes[0]).toMatch(/^dfs: remaining 33\.33 % met by removing block0 \(\d+ nodes\)$/);
    // the greedy ablation runs greedy: the cheapest candidate first (block 0 again), its 9 candidates as nodes
    const g = plan(blockFirst, { ratio: 1 / 3, allocation: 'paper', search: 'greedy', compensation: false });
    expect(g.notes[0]).toBe('greedy: remaining 33.33 % met by removing block0 (9 nodes)');
  });

  it('no set of layers fits the window: below it for multi-granularity plans, the smallest overshoot for depth-only', () => {
    // 0.2 of 672 = 134.4, window up to 137.76: nothing fits. Below: one attention layer (128), the least important.
    const multi = plan(deep, { ratio: 0.2, allocation: 'paper', compensation: false });
    expect(multi.blocks.map((b) => b.attention.removed)).toEqual([false, true, false]);
    expect(multi.blocks.every((b) => !b.mlp.removed)).toBe(true);
    expect(multi.notes[0]).toMatch(/^dfs: remaining 20\.00 % met by removing attn1 \(\d+ nodes, no set fits the window: largest removal below it taken, the channel fill closes the gap\)$/);
    // above: two MLPs (192), the least important pair (1.5 + 3)
    const depth = plan(deep, { ratio: 0.2, allocation: 'paper', granularity: 'depth-only', compensation: false });
    expect(depth.blocks.map((b) => [b.attention.removed, b.mlp.removed])).toEqual([[false, true], [false, false], [false, true]]);
    expect(depth.notes).toHaveLength(2);
    expect(depth.notes[0]).toMatch(/^dfs: remaining 20\.00 % met by removing mlp2, mlp0 \(\d+ nodes, no set fits the window: smallest overshoot taken\)$/);
    expect(depth.notes[1]).toBe('achieved ratio 28.57 % is more than 0.5 points from the target: depth-only pruning moves in steps of whole layers');
    // the fallback can be chosen
    expect(plan(deep, { ratio: 0.2, allocation: 'paper', searchFallback: 'overshoot', compensation: false }).blocks.map((b) => b.mlp.removed)).toEqual([true, false, true]);
  });
});

describe('the marginal allocation through plan(): values', () => {
  const layer = { nHead: 2, nKvHead: 2, ffn: 4 }; // attention 128 (a head 64), MLP 96 (a channel 24), block 224
  const flat = (o: Partial<TinyBlock>): TinyBlock => ({ heads: [1, 1], channels: [1, 1, 1, 1], ...o });
  // output-TE sensitivities (no measured ones, no stream TE): block 0's MLP is cheap, block 1's dear
  const two = tiny(layer, [flat({ te: 1.5, teMlp: 0.1 }), flat({ te: 2.5, teMlp: 10 })]);

  it('across blocks: the cheapest damage per parameter first; the plan records what it planned and read', () => {
    // channel δ/c: block 0 0.1·¼/24, block 1 10·¼/24; a head 1·½/64. Target 112: block 0's four channels (96),
    // then a head (160) would pass 112 + 12, a channel of block 1 (120) does not.
    const p = plan(two, { ratio: 0.25, compensation: false });
    expect(kept(p)).toEqual([[[0, 1], []], [[0, 1], [1, 2, 3]]]);
    expect(p.blocks.map((b) => [b.removed, b.mlp.removed, b.compensate, b.te])).toEqual([[false, true, false, 1.5], [false, false, false, 2.5]]);
    expect(p.blocks[0].plannedRatio).toBeCloseTo(96 / 224, 14);
    expect(p.blocks[1].plannedRatio).toBeCloseTo(24 / 224, 14);
    expect(p.method).toMatchObject({ name: 'entropy', allocation: 'marginal', estimator: 'output-te', curvature: 1, importance: 'entropy', compensation: false, cutDamage: 'variance' });
    expect(p.notes).toEqual([
      'marginal allocation over all blocks (output-te sensitivities, variance cut damage): predicted damage 2.600', // 0.1·1 + 10·¼
      'achieved ratio 26.79 % is more than 0.5 points from the target: the alignment and GQA constraints leave no finer step',
    ]);
    expect(p).toMatchObject({ format: 'entroprune.plan', version: 1, createdBy: `entroprune ${VERSION}`, target: { ratio: 0.25, counting: 'block-linear' } });
    expect(p.model).toEqual({ identity: 'f'.repeat(64), dim: 8, headDim: 2, vocab: 16, tiedOutput: false, layers: [layer, layer] });
    expect(p.analysis).toBeUndefined();
    const o = plan(two, { ratio: 0.25, vocab: 32, tiedOutput: true, analysisFile: 'tiny.analysis.json' });
    expect(o.model).toMatchObject({ vocab: 32, tiedOutput: true });
    expect(o.analysis).toBe('tiny.analysis.json');
    expect(plan({ ...two, model: { ...two.model, tiedOutput: true } }, { ratio: 0.25 }).model.tiedOutput).toBe(true);
  });

  it('the uniform-ratio ablation: each block loses the ratio of its own weights, split inside it the same way', () => {
    // 56 a block, by damage per parameter inside it: block 0 two cheap channels (48; a third, 72, would pass
    // 56 + 12), block 1 a head (64: its channels cost 10·¼/24 a weight, a head 1·½/64)
    const p = plan(two, { ratio: 0.25, ratios: 'uniform', compensation: false });
    expect(kept(p)).toEqual([[[0, 1], [2, 3]], [[1], [0, 1, 2, 3]]]);
    expect(p.blocks[0].plannedRatio).toBeCloseTo(48 / 224, 14);
    expect(p.blocks[1].plannedRatio).toBeCloseTo(64 / 224, 14);
    expect(p.notes[0]).toBe('marginal allocation inside each block at the uniform ratio 0.25');
  });

  it('measured curvature: the damage model through the half cut (γ = 2 here)', () => {
    const base = { windows: 1, seqLen: 2, seed: 0, compensated: true, baseNll: 1, block: [1], attn: [1], mlp: [1], agreement: {}, agreementWithLoss: {} };
    const a = {
      ...tiny(layer, [flat({})]),
      sensitivity: { ...base, kl: { block: [200], attn: [100], mlp: [1] }, partial: { attnShare: [0.5], mlpShare: [0.5], kl: { attn: [50], mlp: [0.25] }, nll: { attn: [0], mlp: [0] } } },
    } as PlannerInput;
    // two of four equal channels: F = ½ → 1·½² = 0.25 (γ = 1 would predict 0.5)
    const m = plan(a, { ratio: 48 / 224, curvature: 'measured', compensation: false });
    expect(m.method).toMatchObject({ estimator: 'measured', curvature: 'measured' });
    expect(kept(m)).toEqual([[[0, 1], [2, 3]]]);
    expect(m.notes).toEqual(['marginal allocation over all blocks (measured sensitivities, variance cut damage): predicted damage 0.2500']);
    expect(plan(a, { ratio: 48 / 224, compensation: false }).notes).toEqual(['marginal allocation over all blocks (measured sensitivities, variance cut damage): predicted damage 0.5000']);
    // the uniform-ratio ablation reads the same per-sublayer γ
    expect(plan(a, { ratio: 48 / 224, curvature: 'measured', ratios: 'uniform', compensation: false }).blocks[0].mlp.keptChannels).toEqual([2, 3]);
  });

  it('the uniform-ratio ablation reads each block\'s own γ and its own head variances', () => {
    const base = { windows: 1, seqLen: 2, seed: 0, compensated: true, baseNll: 1, block: [1, 1], attn: [1, 1], mlp: [1, 1], agreement: {}, agreementWithLoss: {} };
    // block 0: attention γ 1 (S 1.1), MLP γ 2 (S 1); block 1: attention γ 2 (S 1), MLP γ 1 (S 0.3), head entropies 1 and 2
    const a = {
      ...tiny(layer, [flat({}), flat({ heads: [1, 2] })]),
      sensitivity: { ...base, kl: { block: [2, 2], attn: [1.1, 1], mlp: [1, 0.3] }, partial: { attnShare: [0.5, 0.5], mlpShare: [0.5, 0.5], kl: { attn: [0.55, 0.25], mlp: [0.25, 0.15] }, nll: { attn: [0, 0], mlp: [0, 0] } } },
    } as PlannerInput;
    // 64 a block. Block 0: channels at 1·(F² steps)/24 = 0.0026, 0.0078, 0.013 against a head at 1.1·½/64 = 0.0086:
    // two channels, the head would pass 64 + 12, a third channel does not. (γ 1: a channel 0.0104, the head first.)
    // Block 1: head 0 holds e/(e + e²) = 0.27 of the variance: 1·0.27²/64 = 0.0011 against a channel 0.3·¼/24 = 0.0031:
    // the head. (γ 1: 0.0042, the channels first; equal shares under γ 2: 0.0039, the channels first.)
    const p = plan(a, { ratio: 64 / 224, curvature: 'measured', ratios: 'uniform', compensation: false });
    expect(kept(p)).toEqual([[[0, 1], [3]], [[1], [0, 1, 2, 3]]]);
  });

  it('--align-heads: the kept head count rounded to a multiple, the most important groups kept', () => {
    // 4 heads (MHA), 4 channels: attention 256, MLP 96. One head (64) goes: head 1, the least entropy. Three heads
    // are not a multiple of 2: of 2 and 4 (both one away) the smaller, so the two most important of the kept heads.
    const mha = tiny({ nHead: 4, nKvHead: 4, ffn: 4 }, [flat({ teAttn: 0.1, teMlp: 10, heads: [4, 1, 3, 2] })]);
    const p = plan(mha, { ratio: 64 / 352, compensation: false });
    expect(p.blocks[0].attention.keptHeads).toEqual([0, 2, 3]);
    const q = plan(mha, { ratio: 64 / 352, alignHeads: 2, compensation: false });
    expect(q.blocks[0].attention).toEqual({ removed: false, keptKvHeads: [0, 2], keptHeads: [0, 2] });
    expect(q.blocks[0].mlp.keptChannels).toEqual([0, 1, 2, 3]);
    expect(q.notes[1]).toBe('achieved ratio 36.36 % is more than 0.5 points from the target: the alignment and GQA constraints leave no finer step');
  });
});

describe('alignment, GQA and the channel fill: values', () => {
  const flat = (o: Partial<TinyBlock>): TinyBlock => ({ heads: [1, 1], channels: [1, 1, 1, 1], ...o });

  it('--align-heads keeps the most important of the kept heads, returned in ascending order', () => {
    // head 1 goes (least entropy); of heads 0, 2, 3 (entropies 2, 3, 4) two stay: 3 and 2, written [2, 3]
    const mha = tiny({ nHead: 4, nKvHead: 4, ffn: 4 }, [flat({ teAttn: 0.1, teMlp: 10, heads: [2, 1, 3, 4] })]);
    const q = plan(mha, { ratio: 64 / 352, alignHeads: 2, compensation: false });
    expect(q.blocks[0].attention).toEqual({ removed: false, keptKvHeads: [2, 3], keptHeads: [2, 3] });
  });

  it('--align-heads under GQA: the (groups × heads per group) nearest the kept count, the smaller on a tie', () => {
    // 8 query heads in 4 groups of 2 (a group 96 = k,v 32 + two query heads 64), 4 channels: 384 + 96 = 480.
    // Group entropies 2.1, 10.1, 6.1, 8.1: the marginal allocation removes group 0 at 0.2, groups 0 and 2 at 0.4.
    const gqa = tiny({ nHead: 8, nKvHead: 4, ffn: 4 }, [flat({ teAttn: 0.1, teMlp: 10, heads: [1, 1.1, 5, 5.1, 3, 3.1, 4, 4.1] })]);
    const base = plan(gqa, { ratio: 0.2, compensation: false }).blocks[0].attention;
    expect(base.keptKvHeads).toEqual([1, 2, 3]);
    // 6 heads kept; multiples of 4 within reach: 2×2 = 4 and 4×1 = 4 (both 2 away, as is 4×2 = 8): 2 groups of 2,
    // the two most important kept groups (1 and 3)
    expect(plan(gqa, { ratio: 0.2, alignHeads: 4, compensation: false }).blocks[0].attention).toEqual({ removed: false, keptKvHeads: [1, 3], keptHeads: [2, 3, 6, 7] });
    // 6 is a multiple of 3 already; no multiple of 5 fits 4 groups of 2: both unchanged
    expect(plan(gqa, { ratio: 0.2, alignHeads: 3, compensation: false }).blocks[0].attention).toEqual(base);
    expect(plan(gqa, { ratio: 0.2, alignHeads: 5, compensation: false }).blocks[0].attention).toEqual(base);
    // 4 heads kept (groups 1 and 3): the nearest multiple of 3 is 3 = 3 groups × 1: group 2 comes back (the most
    // important of the others), each group keeping its more important head
    const r = plan(gqa, { ratio: 0.4, alignHeads: 3, compensation: false }).blocks[0].attention;
    expect(plan(gqa, { ratio: 0.4, compensation: false }).blocks[0].attention.keptKvHeads).toEqual([1, 3]);
    expect(r).toEqual({ removed: false, keptKvHeads: [1, 2, 3], keptHeads: [3, 5, 7] });
  });

  it('--align in the marginal allocation: kept widths rounded to the multiple, the most important channels kept', () => {
    // 8 channels (entropies 8..1), attention dear: three channels go (5 kept); align 4 → 4, align 2 → round(2.5)·2 = 6
    const a = tiny({ nHead: 2, nKvHead: 2, ffn: 8 }, [flat({ teAttn: 10, teMlp: 0.1, channels: [8, 7, 6, 5, 4, 3, 2, 1] })]);
    expect(plan(a, { ratio: 0.225, compensation: false }).blocks[0].mlp.keptChannels).toEqual([0, 1, 2, 3, 4]);
    const four = plan(a, { ratio: 0.225, align: 4, compensation: false });
    expect(four.blocks[0].mlp.keptChannels).toEqual([0, 1, 2, 3]);
    expect(four.notes[1]).toBe('achieved ratio 30.00 % is more than 0.5 points from the target: the alignment and GQA constraints leave no finer step');
    expect(plan(a, { ratio: 0.225, align: 2, compensation: false }).blocks[0].mlp.keptChannels).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('paper allocation (GQA, 3 heads a group): the leftover budget decides how many heads each kept group loses', () => {
    // 6 query heads in 2 groups (a group 128), 6 channels: 256 + 144 = 400. At 0.6: 240, split 180 / 60.
    // Group entropies 3 and 18: group 0 goes (128); 52 left trims ⌊52/32⌋ = 1 head from group 1 (head 3, the least).
    // Channels: cluster {0, 0.1} (48); the fill takes channel 2 (24): 232 of 400.
    const a = tiny({ nHead: 6, nKvHead: 2, ffn: 6 }, [{ teAttn: 1, teMlp: 3, heads: [1, 1, 1, 5, 6, 7], channels: [0, 0.1, 5, 5.1, 10, 10.1] }]);
    const p = plan(a, { ratio: 0.6, allocation: 'paper', granularity: 'width-only', k: 3, compensation: false });
    expect(p.blocks[0].attention).toEqual({ removed: false, keptKvHeads: [1], keptHeads: [4, 5] });
    expect(p.blocks[0].mlp.keptChannels).toEqual([3, 4, 5]);
    expect(p.blocks[0].groups).toEqual({ kvHeads: [0, 1], channels: [0, 0, 1, 1, 2, 2] });
    expect(p.notes).toEqual([
      'fill: 1 more MLP channels removed to reach the target',
      'achieved ratio 58.00 % is more than 0.5 points from the target: the alignment and GQA constraints leave no finer step',
    ]);
  });

  it('paper allocation: K-means groups are recorded only for the sublayers a block has; a cluster-emptied MLP stays empty under --align', () => {
    const a = tiny({ nHead: 2, nKvHead: 2, ffn: 4 }, [flat({ heads: [3, 1] }), flat({ channels: [1, 2, 3, 4] })]);
    a.model.layers[0] = { nHead: 2, nKvHead: 2, ffn: 0 };
    a.blocks[0].mlp = null;
    a.model.layers[1] = { nHead: 0, nKvHead: 0, ffn: 4 };
    a.blocks[1].attention = null;
    const p = plan(a, { ratio: 0.3, allocation: 'paper', granularity: 'width-only' });
    expect(Object.keys(p.blocks[0].groups!)).toEqual(['kvHeads']);
    expect(Object.keys(p.blocks[1].groups!)).toEqual(['channels']);
    // MLP only, dear attention: the whole MLP budget (0.9 of 224 capped at 96) takes both clusters; align 2 keeps it at 0
    const m = tiny({ nHead: 2, nKvHead: 2, ffn: 4 }, [flat({ teAttn: 100, teMlp: 0.01, channels: [0, 0, 5, 5] })]);
    expect(plan(m, { ratio: 0.45, allocation: 'paper', granularity: 'width-only', k: 2, align: 2, compensation: false }).blocks[0].mlp).toEqual({ removed: true, keptChannels: [] });
  });

  it('the uniform baseline: attention-free blocks keep nothing to cut, at least one KV group stays, groups ranked by their heads', () => {
    const a = tiny({ nHead: 2, nKvHead: 2, ffn: 4 }, [flat({}), flat({})]);
    a.model.layers[1] = { nHead: 0, nKvHead: 0, ffn: 4 };
    a.blocks[1].attention = null;
    const p = plan(a, { ratio: 0.3, method: 'uniform' });
    expect(p.blocks[1].attention).toEqual({ removed: true, keptKvHeads: [], keptHeads: [] });
    // 4 query heads in 2 groups, at 0.8: round(1.6) = 2 groups to drop, capped at 1; the group with the larger
    // entropy sum stays
    const g = tiny({ nHead: 4, nKvHead: 2, ffn: 4 }, [flat({ heads: [1, 1, 5, 5] }), flat({ heads: [5, 5, 1, 1] })]);
    const q = plan(g, { ratio: 0.8, method: 'uniform' });
    expect(q.blocks.map((b) => b.attention.keptHeads)).toEqual([[2, 3], [0, 1]]);
  });

  it('importance "weight": the given magnitudes rank the units', () => {
    const a = tiny({ nHead: 2, nKvHead: 2, ffn: 4 }, [flat({ heads: [1, 2], channels: [1, 2, 3, 4] })]);
    const p = plan(a, { ratio: 0.25, method: 'uniform', importance: 'weight', weights: { heads: [[5, 1]], channels: [[4, 3, 1, 2]] } });
    expect(kept(p)).toEqual([[[0], [0, 1, 3]]]);
  });

  it('the fill: least important channels first, again while a pass made progress, to within half the tolerance', () => {
    // one block, 2 heads and 12 channels (128 + 288 = 416), attention dear. At 0.4 (166.4) the paper allocation
    // removes the cluster {0, 0.1} (48). With tolerance 0.01 the fill takes ⌊118.4/24⌋ = 4 channels, then, as 22.4
    // is left and a channel overshoots by less than the tolerance (4.16), a fifth: the least important kept ones.
    const channels = [0, 0.1, 11, 10.9, 10.8, 10.7, 10.6, 10.5, 10.4, 10.3, 10.2, 10.1];
    const a = tiny({ nHead: 2, nKvHead: 2, ffn: 12 }, [{ teAttn: 100, teMlp: 1, heads: [3, 1], channels }]);
    const p = plan(a, { ratio: 0.4, allocation: 'paper', granularity: 'width-only', k: 2, tolerance: 0.01, compensation: false });
    expect(p.blocks[0].groups!.channels).toEqual([0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
    expect(p.blocks[0].attention.keptHeads).toEqual([0, 1]);
    expect(p.blocks[0].mlp.keptChannels).toEqual([2, 3, 4, 5, 6]);
    expect(p.notes).toEqual(['fill: 5 more MLP channels removed to reach the target']);
    // tolerance 0.2: it stops once within 41.6, after the first four
    const q = plan(a, { ratio: 0.4, allocation: 'paper', granularity: 'width-only', k: 2, tolerance: 0.2, compensation: false });
    expect(q.blocks[0].mlp.keptChannels).toEqual([2, 3, 4, 5, 6, 7]);
    expect(q.notes).toEqual(['fill: 4 more MLP channels removed to reach the target']);
  });
});

// Third round (docs/mutation-survivors.md): the survivors of the second Stryker run that a value can tell apart.
describe('block ratios: the cap and very small c', () => {
  it('a target equal to the cap ends, although Σ p_max·N_l rounds below p_max·ΣN_l here', () => {
    // 0.201·1142 + 0.201·1186 = 467.928 but 0.201·2328 = 467.92800000000005: the bracket used to double forever
    const r = waterFillRatios([1, 2], [1142, 1186], 0.201, 1, 0.201);
    expect(r[0]).toBe(0.201);
    expect(r[1]).toBeCloseTo(0.201, 15);
    // a target above the cap by no more than the allowance (1e-12 of the weights) is taken as the cap
    expect(waterFillRatios([1], [1], 0.5 + 1e-12, 1, 0.5)).toEqual([0.5]);
  });

  it('through plan(): the paper allocation at ratio = maxBlockRatio', () => {
    // three blocks of 2 heads and 11 channels (128 + 264 = 392): 0.3·392 three times is 352.79999999999995, 0.3·1176 352.8
    const flat11 = (te: number): TinyBlock => ({ te, heads: [1, 2], channels: [...Array(11).keys()] });
    const a = tiny({ nHead: 2, nKvHead: 2, ffn: 11 }, [flat11(1), flat11(2), flat11(3)]);
    const p = plan(a, { ratio: 0.3, maxBlockRatio: 0.3, allocation: 'paper', compensation: false });
    for (const b of p.blocks) expect(b.plannedRatio).toBeCloseTo(0.3, 14);
  });

  it('c far below 2^-200: a block weighted 1.5e61 (β = 16) still meets the target', () => {
    // mean TE 0.667: s = [1.5e-4, 1.5, 1.5], w = s^−16 = [1.5e61, 1.5e-3, 1.5e-3]. c ≈ 4e-62, below the 6e-61 that 200
    // halvings of [0, 1] reach (which planned 0.9 for block 0, 0.3 in all): block 0 takes 0.6, the others ~6e-65
    const r = waterFillRatios([1e-4, 1, 1], [100, 100, 100], 0.2, 16, 0.9);
    expect(r[0]).toBeCloseTo(0.6, 12);
    expect(r[1]).toBeLessThan(1e-60);
    expect(r[2]).toBe(r[1]);
    expect(r.reduce((s, x) => s + x * 100, 0)).toBeCloseTo(60, 10);
  });

  it('c is the smallest that meets the target: a block without weights gets c·w_l, not the cap', () => {
    // TE [1, 1, 4]: s = [0.5, 0.5, 2], w = [2, 2, 0.5]; target 0.5 = the cap: c = 0.25 (both sized blocks at 0.5)
    expect(waterFillRatios([1, 1, 4], [100, 100, 0], 0.5, 1, 0.5)).toEqual([0.5, 0.5, 0.125]);
  });
});

describe('block ratios without a positive mean TE', () => {
  it('every block gets the target: the scores s_l = TE_l / mean are undefined', () => {
    expect(waterFillRatios([0, 0], [100, 100], 0.3)).toEqual([0.3, 0.3]);
    expect(waterFillRatios([-1, -2, 1], [100, 100, 100], 0.3)).toEqual([0.3, 0.3, 0.3]);
    expect(waterFillRatios([1, -1], [100, 100], 0.3)).toEqual([0.3, 0.3]);
  });

  it('through plan(): an analysis with TE 0 everywhere no longer loses every unit', () => {
    // the NaN ratios it got made NaN budgets, which no cluster exceeded: the per-unit pass removed everything (100 %)
    const flat0 = (): TinyBlock => ({ te: 0, heads: [1, 2], channels: [1, 2, 3, 4] });
    const p = plan(tiny({ nHead: 2, nKvHead: 2, ffn: 4 }, [flat0(), flat0()]), { ratio: 0.3, allocation: 'paper', compensation: false });
    expect(p.blocks.map((b) => b.plannedRatio)).toEqual([0.3, 0.3]);
    expect(p.achieved.ratio).toBeCloseTo(128 / 448, 14); // the search takes one attention layer (128 of 134.4)
  });
});

describe('K-means: ties with negative values', () => {
  it('the centroids are numbered in ascending order from the start, so a tie goes to the lower one', () => {
    // sorted [-10, -3, -2, -1, 0], starts -3 and -1. Pass 1: -2 is as near -3 as -1 → -3: [-10, -3, -2 | -1, 0],
    // centroids -5, -0.5. Pass 2: -2 moves → [-10, -3 | -2, -1, 0], -6.5, -1. Pass 3: -3 moves. Pass 4: nothing.
    expect(kmeans1d([-10, -3, -2, -1, 0], 2)).toEqual({ assignment: [0, 1, 1, 1, 1], centroids: [-10, -1.5], iterations: 3 });
  });
});

describe('search: ties and the bounds, by value and by node count', () => {
  const names = (r: { chosen: Candidate[] }) => r.chosen.map((c) => `${c.kind}${c.block}`);
  const y: Candidate = { kind: 'attn', block: 0, params: 6, importance: 0.5 };
  const z: Candidate = { kind: 'mlp', block: 1, params: 4, importance: 0.5 };
  const x: Candidate = { kind: 'attn', block: 2, params: 10, importance: 1 };

  it('the same overshoot at the same cost, or the same size below the window at the same cost: the first found stays', () => {
    // {attn0, mlp1} and {attn2} both remove 10 at cost 1; the first is found first (its candidates sort first)
    expect(names(dfsSearch([x, y, z], 9, 9.5))).toEqual(['attn0', 'mlp1']);
    expect(names(dfsSearch([x, y, z], 11, 11.5, undefined, 'undershoot'))).toEqual(['attn0', 'mlp1']);
  });

  it('the undershoot pass stops a branch that cannot pass the best sum found', () => {
    // need 20 is out of reach (12 in all). Best below the window: all three (12). Without the bound the branches
    // without attn2 would be walked too.
    const one = (block: number, imp: number): Candidate => ({ kind: 'mlp', block, params: 1, importance: imp });
    const r = dfsSearch([x, one(3, 2), one(4, 3)], 20, 19.5, undefined, 'undershoot');
    expect(names(r)).toEqual(['attn2', 'mlp3', 'mlp4']);
    expect(r).toMatchObject({ removed: 12, nodes: 8, inWindow: false, truncated: false });
  });

  it('the overshoot pass stops a branch that cannot reach the need, also when all it has left would land on it exactly', () => {
    // need 11.5, window to 11.6: only all three (12) reach it; without attn2 the rest (2) cannot
    const one = (block: number, imp: number): Candidate => ({ kind: 'mlp', block, params: 1, importance: imp });
    const r = dfsSearch([x, one(3, 2), one(4, 3)], 11.5, 11.6);
    expect(names(r)).toEqual(['attn2', 'mlp3', 'mlp4']);
    expect(r).toMatchObject({ removed: 12, inWindow: false, nodes: 13 }); // 6 in the first pass, 7 in this one
    // block 0 (5) conflicts with its attention (3), so nothing reaches 12 = 5 + 3 + 4; at the root the remaining sum
    // equals the need (not below it), so both passes go in and walk 4 nodes each
    const blk: Candidate = { kind: 'block', block: 0, params: 5, importance: 1 };
    const att: Candidate = { kind: 'attn', block: 0, params: 3, importance: 2 };
    const mlp: Candidate = { kind: 'mlp', block: 1, params: 4, importance: 3 };
    expect(dfsSearch([blk, att, mlp], 12, 12.5)).toEqual({ chosen: [], removed: 0, cost: 0, nodes: 8, inWindow: false, truncated: false });
  });

  it('a node limit that cuts the undershoot pass: the node that would land on the window\'s upper end is counted', () => {
    // need 2 = windowHi, limit 1: the first pass stops at the child {mlp0} (2 nodes, then 1 for the other branch);
    // the undershoot pass the same: 3 + 3
    const one: Candidate = { kind: 'mlp', block: 0, params: 2, importance: 1 };
    expect(dfsSearch([one], 2, 2, 1, 'undershoot')).toEqual({ chosen: [], removed: 0, cost: 0, nodes: 6, inWindow: false, truncated: true });
  });

  it('greedy: an empty removal is not in a window that lies below zero', () => {
    expect(greedySearch([x], -10, -5)).toMatchObject({ chosen: [], removed: 0, inWindow: false });
  });
});

describe('planner: branches and notes, by value', () => {
  const layer = { nHead: 2, nKvHead: 2, ffn: 4 }; // attention 128 (a head 64), MLP 96 (a channel 24), block 224
  const flat = (o: Partial<TinyBlock>): TinyBlock => ({ heads: [1, 1], channels: [1, 1, 1, 1], ...o });
  const deep = tiny(layer, [flat({ te: 5, teAttn: 2, teMlp: 3 }), flat({ te: 6, teAttn: 1, teMlp: 4 }), flat({ te: 7, teAttn: 3, teMlp: 1.5 })]);
  // one block of 2 heads and 6 channels (attention 128, MLP 144: 272): head clusters {1} {3}, channel clusters by pairs
  const w = tiny({ nHead: 2, nKvHead: 2, ffn: 6 }, [{ heads: [3, 1], channels: [0, 0.1, 5, 5.1, 10, 10.1] }]);

  it('a sublayer whose share of the budget is 0 is not clustered (no K-means groups)', () => {
    // TE_attn 0 (1e-9) against TE_mlp 1e17: the MLP's share B·w_m / (w_a + w_m) rounds to 0
    const a = tiny(layer, [flat({ teAttn: 0, teMlp: 1e17, heads: [1, 2] })]);
    const p = plan(a, { ratio: 0.3, allocation: 'paper', granularity: 'width-only', compensation: false });
    expect(p.blocks[0].groups).toEqual({ kvHeads: [0, 1] });
    expect(kept(p)).toEqual([[[1], [0, 1, 2, 3]]]);
  });

  it('an attention layer whose share of the budget is 0 is not clustered either', () => {
    // TE_attn ∞: its weight 1/TE is 0, so the attention's share is exactly 0 and only the MLP forms groups
    const a = tiny(layer, [flat({ teAttn: Infinity, teMlp: 1, heads: [1, 2], channels: [1, 1, 5, 5] })]);
    const p = plan(a, { ratio: 0.3, allocation: 'paper', granularity: 'width-only', compensation: false });
    expect(p.blocks[0].groups).toEqual({ channels: [0, 0, 1, 1] });
    expect(p.blocks[0].attention.keptHeads).toEqual([0, 1]);
  });

  it('a split with a missing part hands the other exactly the budget', () => {
    // these weights make (B − b_a) + b_a differ from B in the last bit
    const B = 10.486600459779892;
    expect(splitBudget(B, 0, 1e6, 1.2414696376032521, 0.3801991978568021)).toEqual([0, B]);
    expect(splitBudget(B, 1e6, 0, 1.2414696376032521, 0.3801991978568021)).toEqual([B, 0]);
  });

  it('the marginal allocation is for multi-granularity plans: width-only takes the paper rules', () => {
    const two = tiny(layer, [flat({ te: 1.5, teMlp: 0.1 }), flat({ te: 2.5, teMlp: 10 })]);
    const p = plan(two, { ratio: 0.25, granularity: 'width-only', compensation: false });
    expect(p.blocks.map((b) => b.groups)).toEqual([{ kvHeads: [0, 0], channels: [0, 0, 0, 0] }, { kvHeads: [0, 0], channels: [0, 0, 0, 0] }]);
    expect(p.notes[0]).toBe('fill: 4 more MLP channels removed to reach the target');
  });

  it('the paper allocation with uniform ratios plans the target in every block', () => {
    expect(plan(deep, { ratio: 0.3, allocation: 'paper', ratios: 'uniform' }).blocks.map((b) => b.plannedRatio)).toEqual([0.3, 0.3, 0.3]);
    expect(plan(deep, { ratio: 0.3, allocation: 'paper' }).blocks[0].plannedRatio).toBeGreaterThan(0.35); // water-filled
  });

  it('depth-only: no per-unit pass (no K-means groups), the search alone', () => {
    // need 136 of 272, window to 137.36: the MLP (144) overshoots least
    const p = plan(w, { ratio: 0.5, allocation: 'paper', granularity: 'depth-only', k: 3, compensation: false });
    expect(kept(p)).toEqual([[[0, 1], []]]);
    expect(p.blocks[0].groups).toBeUndefined();
    expect(p.notes[0]).toBe('dfs: remaining 50.00 % met by removing mlp0 (8 nodes, no set fits the window: smallest overshoot taken)');
  });

  it('the search note: the share left after the per-unit pass, "nothing" when no set is taken, the node limit', () => {
    // per-unit pass: head 1 (64) and the channel cluster {0, 0.1} (48); 24 of 272 left (8.82 %), less than any layer
    const p = plan(w, { ratio: 0.5, allocation: 'paper', k: 3, compensation: false });
    expect(kept(p)).toEqual([[[0], [3, 4, 5]]]);
    expect(p.notes).toEqual([
      'dfs: remaining 8.82 % met by removing nothing (8 nodes, no set fits the window: largest removal below it taken, the channel fill closes the gap)',
      'fill: 1 more MLP channels removed to reach the target',
    ]);
    expect(plan(deep, { ratio: 1 / 3, allocation: 'paper', searchLimit: 3, compensation: false }).notes).toEqual(['dfs: remaining 33.33 % met by removing attn1, mlp2 (5 nodes, node limit reached)']);
  });

  it('no channel fill after a layer drop or a depth-only search, even when they stop below the target', () => {
    // layer drop at 0.2 of 896 (179.2): one layer (128) is nearer than two (256)
    const four = tiny(layer, [flat({ teAttn: 3 }), flat({ teAttn: 1 }), flat({ teAttn: 2 }), flat({ teAttn: 4 })]);
    const d = plan(four, { ratio: 0.2, method: 'layer-drop', compensation: false });
    expect(d.blocks.map((b) => b.mlp.keptChannels.length)).toEqual([4, 4, 4, 4]);
    expect(d.achieved.ratio).toBeCloseTo(128 / 896, 14);
    // depth-only with the undershoot fallback at 0.25 of 672 (168, window to 174.72): attention of block 1 (128);
    // a fill would take a channel (24 ≤ 40 + 6.72)
    const u = plan(deep, { ratio: 0.25, allocation: 'paper', granularity: 'depth-only', searchFallback: 'undershoot', tolerance: 0.01, compensation: false });
    expect(kept(u)).toEqual([[[0, 1], [0, 1, 2, 3]], [[], [0, 1, 2, 3]], [[0, 1], [0, 1, 2, 3]]]);
  });

  it('the tolerance note is for a miss larger than the tolerance, not one equal to it', () => {
    const a = tiny(layer, [flat({ cosine: 0.5 }), flat({ cosine: 0.9 }), flat({ cosine: 0.7 }), flat({ cosine: 0.9 })]);
    expect(plan(a, { ratio: 0.5, method: 'block-drop', tolerance: 0, compensation: false }).notes).toEqual(['block-drop: removed blocks 1, 3']);
  });

  it('the uniform baseline: a tie at the cut keeps the higher index, as the removal order says (no re-ranking)', () => {
    // one channel of four goes: channels 1 and 2 tie at the least entropy, 1 goes first
    const p = plan(tiny(layer, [flat({ channels: [2, 1, 1, 3] })]), { ratio: 0.25, method: 'uniform', compensation: false });
    expect(p.blocks[0].mlp.keptChannels).toEqual([0, 2, 3]);
  });

  it('--align keeps the most important channels whatever their order', () => {
    // entropies rise with the index: the allocation removes 0, 1, 2; align 4 keeps the top four, 4..7
    const asc = tiny({ nHead: 2, nKvHead: 2, ffn: 8 }, [flat({ teAttn: 10, teMlp: 0.1, channels: [1, 2, 3, 4, 5, 6, 7, 8] })]);
    expect(plan(asc, { ratio: 0.225, compensation: false }).blocks[0].mlp.keptChannels).toEqual([3, 4, 5, 6, 7]);
    expect(plan(asc, { ratio: 0.225, align: 4, compensation: false }).blocks[0].mlp.keptChannels).toEqual([4, 5, 6, 7]);
  });

  it('paper allocation, GQA: a group\'s entropy is the sum of its own heads', () => {
    // 3 heads a group: sums 18 and 3, so group 1 goes (128 of the attention's 180); 52 left trims one head of group 0
    const g = tiny({ nHead: 6, nKvHead: 2, ffn: 6 }, [{ teAttn: 1, teMlp: 3, heads: [5, 6, 7, 1, 1, 1], channels: [0, 0.1, 5, 5.1, 10, 10.1] }]);
    const p = plan(g, { ratio: 0.6, allocation: 'paper', granularity: 'width-only', k: 3, compensation: false });
    expect(p.blocks[0].attention).toEqual({ removed: false, keptKvHeads: [0], keptHeads: [1, 2] });
    expect(p.blocks[0].groups!.kvHeads).toEqual([1, 0]);
  });

  it('paper allocation: a cluster that costs exactly the budget is taken', () => {
    // attention only (128), ratio 0.5: budget 64 = one head
    const a = tiny({ nHead: 2, nKvHead: 2, ffn: 0 }, [{ heads: [3, 1], channels: [] }]);
    const p = plan(a, { ratio: 0.5, allocation: 'paper', granularity: 'width-only', k: 2, compensation: false });
    expect(p.blocks[0].attention.keptHeads).toEqual([0]);
    expect(p.notes).toEqual([]);
    // the allowance is 1e-9: a budget of 64 − 1e-9 still takes the head (and no more)
    expect(plan(a, { ratio: (64 - 1e-9) / 128, allocation: 'paper', granularity: 'width-only', k: 2, compensation: false }).blocks[0].attention.keptHeads).toEqual([0]);
    // MLP only (96), a budget of 48 − 1e-9: the cluster {0, 0.1} (48) goes in the per-unit pass, the fill has nothing to do
    const m = tiny({ nHead: 0, nKvHead: 0, ffn: 4 }, [{ heads: [], channels: [0, 0.1, 5, 5.1] }]);
    const q = plan(m, { ratio: (48 - 1e-9) / 96, allocation: 'paper', granularity: 'width-only', k: 2, compensation: false });
    expect(q.blocks[0].mlp.keptChannels).toEqual([2, 3]);
    expect(q.notes).toEqual([]);
  });

  it('--align-heads leaves a count that is a multiple already, and may bring back groups or heads', () => {
    // 8 heads in 4 groups of 2, all groups tied (one cluster, too dear): 237.6 of attention budget trims one head
    // a group: 4 × 1 = 4 heads, a multiple of 2: unchanged (not 2 groups × 2)
    const g4 = tiny({ nHead: 8, nKvHead: 4, ffn: 6 }, [{ teAttn: 1, teMlp: 3, heads: [1, 2, 2, 1, 1, 2, 2, 1], channels: [0, 0.1, 5, 5.1, 10, 10.1] }]);
    for (const alignHeads of [1, 2])
      expect(plan(g4, { ratio: 0.6, allocation: 'paper', granularity: 'width-only', k: 3, alignHeads, compensation: false }).blocks[0].attention).toEqual({ removed: false, keptKvHeads: [0, 1, 2, 3], keptHeads: [1, 2, 5, 6] });
    // 2 groups of 3, group 0 removed: 3 heads; the only multiple of 4 within reach is 2 groups × 2
    const g23 = tiny({ nHead: 6, nKvHead: 2, ffn: 4 }, [flat({ teAttn: 0.1, teMlp: 10, heads: [1, 1.1, 1.2, 5, 5.1, 5.2] })]);
    expect(plan(g23, { ratio: 128 / 352, compensation: false }).blocks[0].attention).toEqual({ removed: false, keptKvHeads: [1], keptHeads: [3, 4, 5] });
    expect(plan(g23, { ratio: 128 / 352, alignHeads: 4, compensation: false }).blocks[0].attention).toEqual({ removed: false, keptKvHeads: [0, 1], keptHeads: [1, 2, 4, 5] });
    // 8 heads (MHA), one removed: 7 → 8 (one away), not 4 (three away)
    const m8 = tiny({ nHead: 8, nKvHead: 8, ffn: 4 }, [flat({ teAttn: 0.1, teMlp: 10, heads: [8, 1, 7, 6, 5, 4, 3, 2] })]);
    expect(plan(m8, { ratio: 64 / 608, compensation: false }).blocks[0].attention.keptHeads).toEqual([0, 2, 3, 4, 5, 6, 7]);
    expect(plan(m8, { ratio: 64 / 608, alignHeads: 4, compensation: false }).blocks[0].attention.keptHeads).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    // 2 groups of 5, group 0 removed: 5 heads. Multiples of 2 in the order tried: 1×2 (3 away), 1×4 (1 away), then
    // 2×1 (3 away, smaller: not taken), 2×2 and 2×3 (1 away, not smaller): 1 group × 4, its four most important heads
    const g5 = tiny({ nHead: 10, nKvHead: 2, ffn: 4 }, [flat({ teAttn: 0.1, teMlp: 10, heads: [1, 1, 1, 1, 1, 6, 9, 7, 8, 5] })]);
    expect(plan(g5, { ratio: 192 / 480, compensation: false }).blocks[0].attention.keptHeads).toEqual([5, 6, 7, 8, 9]);
    expect(plan(g5, { ratio: 192 / 480, alignHeads: 2, compensation: false }).blocks[0].attention).toEqual({ removed: false, keptKvHeads: [1], keptHeads: [5, 6, 7, 8] });
  });

  it('--align-heads on a tie: the smaller count even when the larger one is found first', () => {
    // attention only, 8 groups of 4 heads (a group 160, 1280 in all), head entropies rising with the index. At 0.55
    // (704): the low cluster of groups 0–2 (480) goes, 224 left trims one head a group: 5 groups × 3 = 15 heads.
    // Multiples of 2 one away: 16 = 4×4 (found at 4 groups) and 14 = 7×2 (found at 7 groups): 14, in the 7 most
    // important groups (the five kept, then 2 and 1), two heads each.
    const heads = [...Array(32).keys()].map((h) => (h < 12 ? 0.25 + 0.01 * h : 2.5 + 0.01 * h));
    const a8 = tiny({ nHead: 32, nKvHead: 8, ffn: 0 }, [{ heads, channels: [] }]);
    const o = { ratio: 0.55, allocation: 'paper', granularity: 'width-only', k: 2, compensation: false } as const;
    const p = plan(a8, o);
    expect(p.blocks[0].groups!.kvHeads).toEqual([0, 0, 0, 1, 1, 1, 1, 1]);
    expect(p.blocks[0].attention.keptHeads).toEqual([13, 14, 15, 17, 18, 19, 21, 22, 23, 25, 26, 27, 29, 30, 31]);
    expect(plan(a8, { ...o, alignHeads: 2 }).blocks[0].attention).toEqual({ removed: false, keptKvHeads: [1, 2, 3, 4, 5, 6, 7], keptHeads: [6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31] });
  });

  it('the fill: align-sized steps, as many as the gap holds, block by block from the lowest TE, to half the tolerance', () => {
    // two blocks of 2 heads and 16 channels (128 + 384 = 512, 1024 in all), entropies rising in block 0 (TE 1) and
    // falling in block 1 (TE 2). Uniform at 0.2: no head (round(0.4)), round(3.2) = 3 channels a block.
    const ch = (rising: boolean) => [...Array(16).keys()].map((i) => (rising ? i + 1 : 16 - i));
    const f = tiny({ nHead: 2, nKvHead: 2, ffn: 16 }, [{ te: 1, heads: [1, 2], channels: ch(true) }, { te: 2, heads: [1, 2], channels: ch(false) }]);
    const widths = (o: Partial<PlanOptions>) => plan(f, { ratio: 0.2, method: 'uniform', compensation: false, ...o }).blocks.map((b) => b.mlp.keptChannels);
    // align 2: 13 kept rounds to 14 (96 removed, 204.8 wanted). The fill step is two channels (48): block 0 takes
    // ⌊108.8 / 48⌋·2 = 4 at once; 12.8 is then left, less than a step (48 > 12.8 + 5.12): block 1 keeps its 14.
    expect(widths({ align: 2 })).toEqual([[6, 7, 8, 9, 10, 11, 12, 13, 14, 15], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]]);
    // tolerance 0.04 (40.96): once block 0 has brought the gap (60.8 with align 1, 108.8 with align 2) to 12.8, within
    // half the tolerance, block 1 is not touched, although one more step would still be within the tolerance
    expect(widths({ tolerance: 0.04 })).toEqual([[5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]]);
    expect(widths({ tolerance: 0.04, align: 2 })).toEqual([[6, 7, 8, 9, 10, 11, 12, 13, 14, 15], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]]);
    // a gap left exactly at half the tolerance ends the fill: 0.1640625 (168) with align 2 and tolerance 0.046875 (48):
    // 96 removed, block 0 takes a step (48), 24 is left = 48 / 2
    expect(widths({ ratio: 0.1640625, tolerance: 0.046875, align: 2 })).toEqual([[4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]]);
    // tolerance 0: a step that lands exactly on the target is taken (0.140625 = 144 / 1024: 2 channels a block, then 2)
    const exact = plan(f, { ratio: 0.140625, method: 'uniform', tolerance: 0, compensation: false });
    expect(exact.blocks[0].mlp.keptChannels).toEqual([4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    expect(exact.notes).toEqual(['fill: 2 more MLP channels removed to reach the target']);
    expect(exact.achieved.ratio).toBe(0.140625);
  });

  it('search candidates: a block only while it has both parts, a layer only while it has weights', () => {
    // block 1 has no attention (te 0.5 would make it the cheapest "block"): the MLP of block 2 (1.5) is taken
    const af = tiny(layer, [flat({ te: 5, teAttn: 2, teMlp: 3 }), flat({ te: 0.5, teAttn: 1, teMlp: 4 }), flat({ te: 7, teAttn: 3, teMlp: 1.5 })]);
    af.model.layers[1] = { nHead: 0, nKvHead: 0, ffn: 4 };
    af.blocks[1].attention = null;
    expect(plan(af, { ratio: 96 / 544, allocation: 'paper', compensation: false }).notes).toEqual(['dfs: remaining 17.65 % met by removing mlp2 (11 nodes)']);
    // block 1 has no MLP: attention of block 0 (2)
    const mf = tiny(layer, [flat({ te: 5, teAttn: 2, teMlp: 3 }), flat({ te: 0.5, teAttn: 4, teMlp: 1 }), flat({ te: 7, teAttn: 3, teMlp: 1.5 })]);
    mf.model.layers[1] = { nHead: 2, nKvHead: 2, ffn: 0 };
    mf.blocks[1].mlp = null;
    expect(plan(mf, { ratio: 128 / 576, allocation: 'paper', compensation: false }).notes).toEqual(['dfs: remaining 22.22 % met by removing attn0 (19 nodes)']);
    // an MLP larger than the attention (192 > 128): the block is still a candidate
    const big = tiny({ nHead: 2, nKvHead: 2, ffn: 8 }, [flat({ te: 0.5, teAttn: 2, teMlp: 3, channels: [1, 1, 1, 1, 1, 1, 1, 1] }), flat({ te: 6, teAttn: 1, teMlp: 4, channels: [1, 1, 1, 1, 1, 1, 1, 1] })]);
    expect(plan(big, { ratio: 0.5, allocation: 'paper', granularity: 'depth-only', compensation: false }).notes).toEqual(['dfs: remaining 50.00 % met by removing block0 (13 nodes)']);
  });

  it('one shape for every block needs the same heads and KV heads too', () => {
    const a = tiny({ nHead: 2, nKvHead: 2, ffn: 10 }, [flat({}), flat({})]);
    a.model.layers[1] = { nHead: 4, nKvHead: 2, ffn: 10 }; // more query heads, the same KV heads
    expect(() => plan(a, { ratio: 0.3, uniformShape: true })).toThrow('--uniform needs a model whose blocks all have the same shape');
    const b = tiny({ nHead: 4, nKvHead: 4, ffn: 10 }, [flat({}), flat({})]);
    b.model.layers[1] = { nHead: 4, nKvHead: 2, ffn: 10 }; // the same query heads, fewer KV heads
    expect(() => plan(b, { ratio: 0.3, uniformShape: true })).toThrow('--uniform needs a model whose blocks all have the same shape');
  });
});
