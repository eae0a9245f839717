// Measured refinement of a plan (ours; docs/METHOD.md §4c). The marginal allocation prices a cut of a share F
// of sublayer s at S_s·F^γ, S_s measured by removing the whole sublayer from the intact model. A plan cuts many
// sublayers at once and most of them only in part, and there the line is off in both directions: the
// least-squares refit restores more of some cuts than the one-at-a-time refit steps predict, and cuts compound.
// The refinement measures the plan itself — the loss of the model it produces, and, for every partly cut layer,
// the loss with that layer restored alone (lib/apply/plan-loss.ts) — and so knows what each cut costs in the
// company of the others: d_s = KL(plan) − KL(plan with s restored). It rescales each measured sublayer's S_s so
// that the model passes through that point (a secant step, c_s ← c_s·d_s / (S_s c_s F_s^γ)), plans again, and
// keeps the new plan only if it measures lower; a step that does not help is tried again at half length (in log
// scale), then the refinement stops. The method's own uniform-ratio allocation is measured too, and the lowest is
// returned: the model decides between the candidates. "Lower" is the KL from the unpruned model by default — how
// much of the model's own behaviour a plan keeps, on any text — since the loss on windows of text unlike the
// model's own can fall as the model departs from itself (docs/METHOD.md §4c, "Why KL").
import type { PlannerInput, PlanOptions } from './planner';
import { cutShares, plan as makePlan, planSensitivities } from './planner';
import type { SublayerSensitivity } from './allocation';
import type { PlanRefinement, PruningPlan, RefinementCandidate } from './plan';

export type { PlanRefinement, RefinementCandidate };
import { EntropruneError } from '../util/errors';

/** A model's mean next-token NLL (nats per predicted token) and mean KL from the unpruned model (per position). */
export interface Loss {
  nll: number;
  kl: number;
}

/** What the refinement needs measured of a plan (lib/apply/plan-loss.ts measures it). */
export interface PlanLossMeasurement {
  intactNll: number;
  plan: Loss;
  /** per block: the plan with that block's partly cut attention / MLP restored alone (undefined: not partly cut, or not asked) */
  restored: { attn: (Loss | undefined)[]; mlp: (Loss | undefined)[] };
}

export type MeasurePlan = (p: PruningPlan, leaveOneOut: boolean) => Promise<PlanLossMeasurement>;

export interface RefineOptions {
  /** accepted secant steps at most (default 3; 0: the plan as planned and the uniform-ratio one only) */
  rounds?: number;
  /** also measure the uniform-ratio allocation (default true) */
  uniformRatios?: boolean;
  /** called after each measured candidate */
  onCandidate?: (c: RefinementCandidate) => void;
  /** what candidates are judged by (default 'kl') */
  criterion?: 'kl' | 'nll';
}

/** The refinement's trust region: one step changes a sublayer's S by at most this factor either way. */
const MAX_STEP = 4;

/** Whether the refinement applies to plans made with these options: the marginal allocation on measured damage. */
export function refinable(p: PruningPlan): boolean {
  const m = p.method;
  return m.name === 'entropy' && m.allocation === 'marginal' && m.granularity === 'multi' && !m.uniformShape && m.estimator === 'measured' && typeof m.curvature === 'number';
}

// The same units kept (the kept query heads determine the kept KV groups).
const samePlan = (a: PruningPlan, b: PruningPlan) =>
  a.blocks.every((x, l) => x.attention.keptHeads.join() === b.blocks[l].attention.keptHeads.join() && x.mlp.keptChannels.join() === b.blocks[l].mlp.keptChannels.join());

/**
 * The secant step's factor for each measured sublayer (1 elsewhere): measured cost over predicted cost, bounded
 * by the trust region. A cut that costs nothing or less (measured d ≤ 0, noise at this depth) gets the bound.
 */
export function secantFactors(analysis: PlannerInput, p: PruningPlan, m: PlanLossMeasurement, scale: SublayerSensitivity): SublayerSensitivity {
  const S = planSensitivities(analysis, p.method);
  const F = cutShares(analysis, p);
  const gamma = p.method.curvature as number;
  const factor = (s: number, c: number, f: number, restored: Loss | undefined) => {
    const predicted = s * c * f ** gamma;
    if (!restored || !(predicted > 0)) return 1;
    const measured = m.plan.kl - restored.kl;
    return Math.min(MAX_STEP, Math.max(1 / MAX_STEP, measured / predicted));
  };
  return {
    attn: S.attn.map((s, l) => factor(s, scale.attn[l], F.attn[l], m.restored.attn[l])),
    mlp: S.mlp.map((s, l) => factor(s, scale.mlp[l], F.mlp[l], m.restored.mlp[l])),
  };
}

/**
 * Plan with `options`, then refine by measurement (see the file comment). Returns the candidate measured lowest
 * (by `o.criterion`, default KL), with `refinement` recording every candidate; plans the refinement does not apply to (refinable)
 * come back as planned, unmeasured, with the reason in their notes.
 */
export async function refinePlan(analysis: PlannerInput, options: PlanOptions, measure: MeasurePlan, o: RefineOptions = {}): Promise<PruningPlan> {
  const rounds = o.rounds ?? 3;
  if (!(Number.isInteger(rounds) && rounds >= 0)) throw new EntropruneError('EP_INVALID_ARGUMENT', `refinement rounds must be a whole number ≥ 0 (got ${rounds})`);
  const L = analysis.model.layers.length;
  const ones = (): SublayerSensitivity => ({ attn: Array(L).fill(1), mlp: Array(L).fill(1) });
  const first = makePlan(analysis, { ...options, damageScale: undefined });
  const candidates: RefinementCandidate[] = [];
  const record = (name: string, p: PruningPlan, m: PlanLossMeasurement) => {
    const c = { name, nll: m.plan.nll, kl: m.plan.kl, ratio: p.achieved.ratio };
    candidates.push(c);
    o.onCandidate?.(c);
  };
  // Other allocations have no damage model to correct (and the paper's keeps its own rules): as planned.
  if (!refinable(first)) return { ...first, notes: [...first.notes, 'refinement: applies to the measured marginal allocation only (estimator "measured", allocation "marginal", granularity "multi", numeric curvature): not refined'] };
  let best = { name: 'planned', plan: first, m: await measure(first, rounds > 0), scale: ones() };
  record(best.name, best.plan, best.m);
  const notes: string[] = [];
  const crit = o.criterion ?? 'kl';
  const score = (m: PlanLossMeasurement) => m.plan[crit];
  let current = best;
  for (let round = 1; round <= rounds; round++) {
    const r = secantFactors(analysis, current.plan, current.m, current.scale);
    let accepted = false;
    for (const [alpha, suffix] of [[1, ''], [0.5, ', half step']] as const) {
      const scale = { attn: current.scale.attn.map((c, l) => c * r.attn[l] ** alpha), mlp: current.scale.mlp.map((c, l) => c * r.mlp[l] ** alpha) };
      const next = makePlan(analysis, { ...options, damageScale: scale });
      if (samePlan(next, current.plan)) continue; // this step changes nothing: a shorter one will not either
      const name = `secant ${round}${suffix}`;
      const m = await measure(next, true);
      record(name, next, m);
      if (score(m) < score(best.m)) {
        best = current = { name, plan: next, m, scale };
        accepted = true;
        break;
      }
    }
    if (!accepted) break;
  }
  if ((o.uniformRatios ?? true) && first.method.ratios === 'dynamic') {
    const uniform = makePlan(analysis, { ...options, ratios: 'uniform', damageScale: undefined });
    const m = await measure(uniform, false);
    record('uniform ratios', uniform, m);
    if (score(m) < score(best.m)) best = { name: 'uniform ratios', plan: uniform, m, scale: ones() };
  }
  const refinement: PlanRefinement = { intactNll: best.m.intactNll, candidates, criterion: crit, chosen: best.name, damageScale: best.scale };
  const summary = candidates.map((c) => `${c.name} ${c[crit].toFixed(4)}`).join(', ');
  notes.push(`refinement: measured ${crit === 'kl' ? 'KL from the unpruned model' : `NLL (unpruned ${best.m.intactNll.toFixed(4)})`}: ${summary}; chosen: ${best.name}`);
  return { ...best.plan, notes: [...best.plan.notes, ...notes], refinement };
}
