// The measured refinement of a plan (lib/plan/refine.ts, docs/METHOD.md §4c) against a known truth: a synthetic
// analysis whose "measurements" come from a damage model with other sensitivities than the analysis holds. The
// secant step must recover those sensitivities from what it measures, the plan it returns must be the lowest
// measured of its candidates, and plans the refinement does not apply to come back untouched.
import { describe, expect, it } from 'vitest';

import type { Analysis, PruningPlan } from '../lib';
import { cutShares, plan as makePlan, planSensitivities } from '../lib/plan/planner';
import { refinable, refinePlan, secantFactors, type Loss, type PlanLossMeasurement } from '../lib/plan/refine';
import { syntheticAnalysis } from './helpers/synthetic-analysis';

const L = 4;

/** A synthetic analysis with measured sensitivities (KL of each whole removal), so the default estimator is "measured". */
function measuredAnalysis(seed: number): Analysis {
  const a = syntheticAnalysis({ seed, blocks: L, dim: 16, headDim: 4, nHead: 4, nKvHead: 4, ffn: 24 });
  const attn = [0.3, 0.15, 0.2, 0.25], mlp = [0.6, 0.3, 0.35, 0.5];
  const figures = { block: attn.map((x, l) => x + mlp[l]), attn, mlp };
  return { ...a, sensitivity: { windows: 4, seqLen: 64, seed: 1, compensated: true, baseNll: 2, ...figures, kl: figures, agreement: {}, agreementWithLoss: {} } };
}

/**
 * The truth the fake measurement reports: damage adds up over sublayers, each S_s·k_s·F_s (the analysis' own
 * S_s times a factor it does not know), and restoring a layer takes exactly its term back.
 */
function truth(a: Analysis, k: { attn: number[]; mlp: number[] }) {
  const calls: boolean[] = [];
  const loss = (p: PruningPlan) => {
    const S = planSensitivities(a, p.method), F = cutShares(a, p);
    const terms = { attn: S.attn.map((s, l) => s * k.attn[l] * F.attn[l]), mlp: S.mlp.map((s, l) => s * k.mlp[l] * F.mlp[l]) };
    return { terms, kl: [...terms.attn, ...terms.mlp].reduce((x, y) => x + y, 0) };
  };
  const measure = async (p: PruningPlan, leaveOneOut: boolean): Promise<PlanLossMeasurement> => {
    calls.push(leaveOneOut);
    const { terms, kl } = loss(p);
    const partly = (kept: number, n: number) => kept > 0 && kept < n;
    const restored = (kind: 'attn' | 'mlp') =>
      p.blocks.map((b, l) => {
        const s = a.model.layers[l];
        const cut = kind === 'attn' ? partly(b.attention.keptHeads.length, s.nHead) : partly(b.mlp.keptChannels.length, s.ffn);
        return leaveOneOut && cut ? { kl: kl - terms[kind][l], nll: 2 + kl - terms[kind][l] } : undefined;
      });
    return { intactNll: 2, plan: { kl, nll: 2 + kl }, restored: { attn: restored('attn'), mlp: restored('mlp') } };
  };
  return { loss, measure, calls };
}

describe('the measured refinement of a plan', () => {
  const k = { attn: [3, 0.5, 2, 0.4], mlp: [0.5, 2.5, 0.6, 1.5] };

  it('the secant factor is measured over predicted cost, per partly cut sublayer, within the trust region', async () => {
    const a = measuredAnalysis(3);
    const t = truth(a, k);
    const p = makePlan(a, { ratio: 0.3 });
    const m = await t.measure(p, true);
    const ones = { attn: Array(L).fill(1), mlp: Array(L).fill(1) };
    const r = secantFactors(a, p, m, ones);
    const F = cutShares(a, p);
    let measuredAny = 0;
    for (const kind of ['attn', 'mlp'] as const)
      for (let l = 0; l < L; l++) {
        if (m.restored[kind][l]) {
          measuredAny++;
          expect(F[kind][l]).toBeGreaterThan(0);
          expect(r[kind][l], `${kind} ${l}`).toBeCloseTo(k[kind][l], 9); // exactly the unknown factor: the truth is linear
        } else {
          expect(r[kind][l]).toBe(1);
        }
      }
    expect(measuredAny).toBeGreaterThan(2);
    // beyond the trust region (×4 either way) the step stops at its edge; a cut measured free gets the lower edge
    const far = { ...m, restored: { attn: m.restored.attn.map((x) => x && { ...x, kl: m.plan.kl - 100 }), mlp: m.restored.mlp.map((x) => x && { ...x, kl: m.plan.kl + 1 }) } };
    const rf = secantFactors(a, p, far, ones);
    for (let l = 0; l < L; l++) {
      if (m.restored.attn[l]) expect(rf.attn[l]).toBe(4);
      if (m.restored.mlp[l]) expect(rf.mlp[l]).toBe(0.25);
    }
  });

  it('returns the lowest measured candidate, lower than the plan made without the measurements', async () => {
    const a = measuredAnalysis(3);
    for (const ratio of [0.15, 0.3, 0.45]) {
      const t = truth(a, k);
      const planned = makePlan(a, { ratio });
      const p = await refinePlan(a, { ratio }, t.measure);
      const r = p.refinement!;
      expect(r.candidates[0].name).toBe('planned');
      expect(r.candidates[0].kl).toBeCloseTo(t.loss(planned).kl, 12);
      expect(r.criterion).toBe('kl');
      const best = Math.min(...r.candidates.map((c) => c.kl));
      expect(r.candidates.find((c) => c.name === r.chosen)!.kl).toBe(best);
      expect(t.loss(p).kl).toBeCloseTo(best, 12); // the plan returned is the one measured so
      expect(t.loss(p).kl, `${ratio}`).toBeLessThan(t.loss(planned).kl * 0.99); // the damage model's error cost something, and it is recovered
      expect(Math.abs(p.achieved.ratio - ratio)).toBeLessThan(0.02);
      // leave-one-out for the plans the secant steps from, not for the uniform-ratio candidate (measured last)
      expect(t.calls[0]).toBe(true);
      expect(t.calls[t.calls.length - 1]).toBe(false);
      expect(r.candidates[r.candidates.length - 1].name).toBe('uniform ratios');
      expect(p.notes.some((n) => n.startsWith('refinement: measured KL from the unpruned model'))).toBe(true);
      // the correction recorded is the one behind the plan: planning with it gives the same units
      if (r.chosen !== 'uniform ratios') {
        const again = makePlan(a, { ratio, damageScale: r.damageScale });
        expect(again.blocks.map((b) => [b.attention.keptHeads, b.mlp.keptChannels])).toEqual(p.blocks.map((b) => [b.attention.keptHeads, b.mlp.keptChannels]));
      }
    }
  });

  it('a damage model that is right needs no correction: the plan as planned stays', async () => {
    const a = measuredAnalysis(4);
    const t = truth(a, { attn: Array(L).fill(1), mlp: Array(L).fill(1) });
    const p = await refinePlan(a, { ratio: 0.3 }, t.measure, { uniformRatios: false });
    expect(p.refinement!.chosen).toBe('planned');
    expect(p.refinement!.candidates.map((c) => c.name)).toEqual(['planned']); // every secant factor is 1: nothing to try
    expect(p.refinement!.damageScale).toEqual({ attn: Array(L).fill(1), mlp: Array(L).fill(1) });
  });

  it('the uniform-ratio allocation wins when it measures lower; other allocations are not refined', async () => {
    const a = measuredAnalysis(5);
    const t = truth(a, k);
    const uniform = makePlan(a, { ratio: 0.3, ratios: 'uniform' });
    const m = async (p: PruningPlan, loo: boolean) => {
      const r = await t.measure(p, loo);
      return p.method.ratios === 'uniform' ? { ...r, plan: { kl: 0, nll: 1.5 } } : r; // a fake that favours it
    };
    const p = await refinePlan(a, { ratio: 0.3 }, m, { rounds: 0 });
    expect(p.refinement!.chosen).toBe('uniform ratios');
    expect(p.method.ratios).toBe('uniform');
    expect(p.blocks).toEqual(uniform.blocks);
    // the paper's allocation keeps its own rules: not measured, not changed
    let measured = 0;
    const paper = await refinePlan(a, { ratio: 0.3, allocation: 'paper' }, async (q, loo) => (measured++, t.measure(q, loo)));
    expect(refinable(makePlan(a, { ratio: 0.3, allocation: 'paper' }))).toBe(false);
    expect(measured).toBe(0);
    expect(paper.refinement).toBeUndefined();
    expect(paper.blocks).toEqual(makePlan(a, { ratio: 0.3, allocation: 'paper' }).blocks);
    await expect(refinePlan(a, { ratio: 0.3 }, t.measure, { rounds: -1 })).rejects.toThrow(/rounds/);
  });

  it('candidates are judged by KL from the unpruned model by default, by NLL when asked (they disagree on text unlike the model\'s own)', async () => {
    const a = measuredAnalysis(3);
    const t = truth(a, k);
    // a text where the loss falls as the model departs from itself: NLL and KL rank the candidates in reverse
    const away = async (p: PruningPlan, loo: boolean) => {
      const m = await t.measure(p, loo);
      return { ...m, plan: { kl: m.plan.kl, nll: 2 - m.plan.kl } };
    };
    const byKl = await refinePlan(a, { ratio: 0.3 }, away);
    const byNll = await refinePlan(a, { ratio: 0.3 }, away, { criterion: 'nll' });
    const pick = (p: PruningPlan, f: 'kl' | 'nll') => p.refinement!.candidates.find((c) => c.name === p.refinement!.chosen)![f];
    expect(pick(byKl, 'kl')).toBe(Math.min(...byKl.refinement!.candidates.map((c) => c.kl)));
    expect(pick(byNll, 'nll')).toBe(Math.min(...byNll.refinement!.candidates.map((c) => c.nll)));
    expect(byNll.refinement!.criterion).toBe('nll');
    expect(t.loss(byKl).kl).toBeLessThan(t.loss(byNll).kl);
  });

  it('a step that measures worse is tried at half length, then the refinement stops; ties keep the earlier plan', async () => {
    const a = measuredAnalysis(3);
    const t = truth(a, k);
    const planned = makePlan(a, { ratio: 0.3 });
    // every plan but the one as planned measures worse: the secant step and its half are rejected, then it stops
    const worse = async (p: PruningPlan, loo: boolean) => {
      const m = await t.measure(p, loo);
      const same = p.blocks.every((b, l) => b.mlp.keptChannels.join() === planned.blocks[l].mlp.keptChannels.join() && b.attention.keptHeads.join() === planned.blocks[l].attention.keptHeads.join());
      return same ? m : { ...m, plan: { kl: m.plan.kl + 10, nll: m.plan.nll + 10 } };
    };
    const p = await refinePlan(a, { ratio: 0.3 }, worse);
    expect(p.refinement!.candidates.map((c) => c.name)).toEqual(['planned', 'secant 1', 'secant 1, half step', 'uniform ratios']);
    expect(p.refinement!.chosen).toBe('planned');
    expect(p.blocks).toEqual(planned.blocks);
    expect(p.refinement!.damageScale).toEqual({ attn: Array(L).fill(1), mlp: Array(L).fill(1) });
    // the uniform-ratio plan measuring exactly as low as the planned one: the planned one stays
    const tie = async (q: PruningPlan, loo: boolean) => {
      const m = await t.measure(q, loo);
      return q.method.ratios === 'uniform' ? { ...m, plan: (await t.measure(planned, false)).plan } : m;
    };
    expect((await refinePlan(a, { ratio: 0.3 }, tie, { rounds: 0 })).refinement!.chosen).toBe('planned');
    // the step accepted first is the full one when it measures lower; the recorded candidates say so
    const good = await refinePlan(a, { ratio: 0.3 }, t.measure, { rounds: 1, uniformRatios: false });
    expect(good.refinement!.candidates.map((c) => c.name)).toEqual(['planned', 'secant 1']);
    expect(good.refinement!.chosen).toBe('secant 1');
    // the note lists every candidate with its figure, and the one chosen
    const kl = (name: string) => good.refinement!.candidates.find((c) => c.name === name)!.kl.toFixed(4);
    expect(good.notes[good.notes.length - 1]).toBe(`refinement: measured KL from the unpruned model: planned ${kl('planned')}, secant 1 ${kl('secant 1')}; chosen: secant 1`);
    const byNll = await refinePlan(a, { ratio: 0.3 }, t.measure, { rounds: 0, uniformRatios: false, criterion: 'nll' });
    expect(byNll.notes[byNll.notes.length - 1]).toBe(`refinement: measured NLL (unpruned 2.0000): planned ${byNll.refinement!.candidates[0].nll.toFixed(4)}; chosen: planned`);
  });

  it('measures leave-one-out only where a step will read it, and runs as many steps as asked', async () => {
    const a = measuredAnalysis(3);
    const t0 = truth(a, k);
    await refinePlan(a, { ratio: 0.3 }, t0.measure, { rounds: 0 });
    expect(t0.calls).toEqual([false, false]); // the plan as planned and the uniform-ratio one, neither with its layers restored
    const t1 = truth(a, k);
    const one = await refinePlan(a, { ratio: 0.3 }, t1.measure, { rounds: 1, uniformRatios: false });
    expect(one.refinement!.candidates.length).toBe(2);
    expect(t1.calls).toEqual([true, true]);
    const t3 = truth(a, k);
    const three = await refinePlan(a, { ratio: 0.3 }, t3.measure, { uniformRatios: false });
    expect(three.refinement!.candidates.length).toBeGreaterThanOrEqual(2);
    expect(three.refinement!.candidates.length).toBeLessThanOrEqual(1 + 2 * 3);
    // with uniform ratios asked for, there is no uniform-ratio candidate to add
    const u = await refinePlan(a, { ratio: 0.3, ratios: 'uniform' }, truth(a, k).measure);
    expect(u.refinement!.candidates.map((c) => c.name)).not.toContain('uniform ratios');
  });

  it('the secant factor divides out the correction already made (measured over S·c·F)', async () => {
    const a = measuredAnalysis(3);
    const t = truth(a, k);
    const scale = { attn: [2, 0.5, 1.5, 0.8], mlp: [0.7, 1.2, 2, 0.9] };
    const p = makePlan(a, { ratio: 0.3, damageScale: scale });
    const m = await t.measure(p, true);
    const r = secantFactors(a, p, m, scale);
    let checked = 0;
    for (const kind of ['attn', 'mlp'] as const)
      for (let l = 0; l < L; l++)
        if (m.restored[kind][l]) {
          expect(r[kind][l]).toBeCloseTo(Math.min(4, Math.max(0.25, k[kind][l] / scale[kind][l])), 9);
          checked++;
        }
    expect(checked).toBeGreaterThan(1);
  });

  it('steps go on while each measures lower, up to the rounds asked; a tie is no improvement', async () => {
    const a = measuredAnalysis(3);
    const t = truth(a, k);
    // every new plan measures lower than all before it, and every cut twice as dear as predicted: steps keep coming
    let calls = 0;
    const better = async (p: PruningPlan, loo: boolean) => {
      const m = await t.measure(p, loo);
      calls++;
      const doubled = (x: Loss | undefined) => x && { kl: m.plan.kl - 2 * (m.plan.kl - x.kl), nll: 0 };
      return { ...m, plan: { kl: 100 - calls, nll: 100 - calls }, restored: { attn: m.restored.attn.map(doubled), mlp: m.restored.mlp.map(doubled) } };
    };
    const p = await refinePlan(a, { ratio: 0.3 }, better, { uniformRatios: false });
    const names = p.refinement!.candidates.map((c) => c.name);
    for (const n of names) expect(n).toMatch(/^(planned|secant [123](, half step)?)$/);
    expect(names).toContain('secant 2');
    expect(p.refinement!.chosen).toBe(names[names.length - 1]);
    // every plan measuring the same: no step is an improvement
    const flat = async (q: PruningPlan, loo: boolean) => ({ ...(await t.measure(q, loo)), plan: { kl: 1, nll: 3 } });
    const f = await refinePlan(a, { ratio: 0.3 }, flat, { uniformRatios: false });
    expect(f.refinement!.chosen).toBe('planned');
    expect(f.refinement!.candidates.map((c) => c.name)).toEqual(['planned', 'secant 1', 'secant 1, half step']);
    // the plan's own notes come first, the refinement's summary last, nothing else
    expect(p.notes.slice(0, -1)).toEqual(makePlan(a, { ratio: 0.3, damageScale: p.refinement!.damageScale }).notes);
  });

  it('a step that moves only channels, or only heads, is measured (plans compared unit by unit)', async () => {
    const a = measuredAnalysis(3);
    for (const [attn, mlp] of [[[30, 30, 30, 30], [0.6, 0.3, 0.35, 0.5]], [[0.3, 0.15, 0.2, 0.25], [60, 60, 60, 60]]]) {
      const b = { ...a, sensitivity: { ...a.sensitivity!, kl: { block: attn.map((x, l) => x + mlp[l]), attn, mlp } } };
      const t = truth(b, k);
      const planned = makePlan(b, { ratio: 0.15 });
      const p = await refinePlan(b, { ratio: 0.15 }, t.measure, { rounds: 1, uniformRatios: false });
      const moved = p.refinement!.candidates.map((c) => c.name);
      expect(moved[1], JSON.stringify({ attn, mlp })).toMatch(/^secant 1/);
      // with attention too dear, no head goes: the step moved channels alone (with the MLPs too dear, the fill
      // still closes the target with a few channels, so there the step moves heads and may move channels too)
      const heads = (q: PruningPlan) => q.blocks.map((x) => x.attention.keptHeads.length).join();
      if (attn[0] === 30) expect(heads(planned) + ' / ' + heads(p)).toBe('4,4,4,4 / 4,4,4,4');
    }
  });

  it('a cut the damage model prices at nothing gets no secant factor (nothing to scale)', async () => {
    const a = measuredAnalysis(3);
    const free = { ...a, sensitivity: { ...a.sensitivity!, kl: { ...a.sensitivity!.kl, mlp: [0, 0.3, 0.35, 0.5] } } };
    const p = makePlan(free, { ratio: 0.05 });
    const F = cutShares(free, p);
    expect(F.mlp[0]).toBeGreaterThan(0); // block 0's MLP is cut, in part: the 5 % fit inside it
    expect(p.blocks[0].mlp.keptChannels.length).toBeGreaterThan(0);
    const m = await truth(free, k).measure(p, true);
    expect(m.restored.mlp[0]).toBeDefined();
    expect(secantFactors(free, p, m, { attn: Array(L).fill(1), mlp: Array(L).fill(1) }).mlp[0]).toBe(1);
  });

  it('other estimators, granularities and damage models are not refined', async () => {
    const base = measuredAnalysis(7);
    // half cuts measured, so that the measured curvature can be asked for
    const half = { attn: [0.1, 0.05, 0.08, 0.1], mlp: [0.2, 0.1, 0.1, 0.2], block: [null, null, null, null] };
    const a: Analysis = { ...base, sensitivity: { ...base.sensitivity!, partial: { attnShare: [0.5, 0.5, 0.5, 0.5], mlpShare: [0.5, 0.5, 0.5, 0.5], ...half, kl: half } } };
    for (const o of [{ estimator: 'stream-te' as const }, { granularity: 'width-only' as const }, { uniformShape: true }, { method: 'uniform' as const }, { curvature: 'measured' as const }]) {
      let measured = 0;
      const p = await refinePlan(a, { ratio: 0.3, ...o }, async (q, loo) => (measured++, truth(a, k).measure(q, loo)));
      expect(measured, JSON.stringify(o)).toBe(0);
      expect(p.refinement).toBeUndefined();
      expect(p.notes[p.notes.length - 1]).toMatch(/^refinement: applies to the measured marginal allocation only/);
    }
  });

  it('damageScale scales the sensitivities the allocation reads, and is refused malformed', () => {
    const a = measuredAnalysis(6);
    const ones = { attn: Array(L).fill(1), mlp: Array(L).fill(1) };
    expect(makePlan(a, { ratio: 0.3, damageScale: ones }).blocks).toEqual(makePlan(a, { ratio: 0.3 }).blocks);
    // as planned no attention unit goes at 20 %; with the MLPs made 100× dearer, attention goes and MLP stays
    const heads = (p: PruningPlan) => p.blocks.reduce((n, b) => n + b.attention.keptHeads.length, 0);
    const channels = (p: PruningPlan) => p.blocks.reduce((n, b) => n + b.mlp.keptChannels.length, 0);
    const planned = makePlan(a, { ratio: 0.2 });
    expect(heads(planned)).toBe(4 * L);
    const dear = makePlan(a, { ratio: 0.2, damageScale: { attn: Array(L).fill(1), mlp: Array(L).fill(100) } });
    expect(heads(dear)).toBeLessThan(4 * L);
    expect(channels(dear)).toBeGreaterThan(channels(planned));
    expect(() => makePlan(a, { ratio: 0.3, damageScale: { attn: [1], mlp: ones.mlp } })).toThrow(/damageScale/);
    expect(() => makePlan(a, { ratio: 0.3, damageScale: { attn: [0, 1, 1, 1], mlp: ones.mlp } })).toThrow(/damageScale/);
  });
});
