// Marginal-cost allocation (ours; the default "how much" of the entropy method, see docs/METHOD.md §4):
// every prunable unit — a KV group with its query heads, an MLP channel — gets an expected damage
// δ_u = S_s · v_u / Σ_{u'∈s} v_{u'}, the sensitivity S_s of its sublayer s (what removing the whole
// sublayer costs: measured, or the transfer-entropy estimate) shared out by the unit's part v_u of the
// sublayer's output variance (what mean compensation cannot restore). Units are removed in ascending order
// of damage per parameter, δ_u / c_u, across all blocks and sublayers at once, until the target is met.
// Taking the cheapest damage per parameter first equalises the marginal cost across sublayers, so each
// block's ratio and its attention/MLP split follow from the model's own sensitivities instead of a rule.
import { ascendingOrder, cleanVariance, kvGroupValues } from '../measure/unit-order';
import { channelParams, kvHeadParams, queryHeadParams } from './accounting';

export interface LayerShapeIn {
  nHead: number;
  nKvHead: number;
  ffn: number;
}

export interface SublayerSensitivity {
  /** damage of removing block l's attention layer (≥ 0; any consistent unit) */
  attn: number[];
  /** damage of removing block l's MLP layer */
  mlp: number[];
}

/** γ of each sublayer's damage model S·F^γ (≥ 1, so marginal damage never falls as a sublayer is cut) */
export interface SublayerCurvature {
  attn: number[];
  mlp: number[];
}

export interface UnitVariances {
  /** [layer][query head]: variance the head adds to the residual stream */
  heads: number[][];
  /** [layer][channel]: variance the channel adds to the residual stream */
  channels: number[][];
  /**
   * Optional, per layer: the damage of each unit (KV group / channel, by index) when the sublayer's units are
   * removed one by one in ascending variance and the kept ones are refitted by least squares
   * (docs/METHOD.md §4a, "refit-aware damage"). Where given, a unit's share is its increment, not its variance.
   */
  groupIncrements?: (number[] | undefined)[];
  channelIncrements?: (number[] | undefined)[];
}

export interface Allocation {
  keptKv: number[][];
  keptHeads: number[][];
  keptChannels: number[][];
  /** the damage the model predicts for the removed set (sum of δ_u) */
  predictedDamage: number;
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

/**
 * Pool adjacent violators: the non-decreasing sequence nearest to xs (equal weights). Applied to the marginal
 * damages of a sublayer's removal sequence it gives the slopes of the cumulative damage's greatest convex
 * minorant, so a unit whose removal is cheap only because an expensive one came first is priced with it, and
 * the greedy below, which needs marginal damage that never falls along a queue, stays optimal for the curve.
 */
export function nonDecreasing(xs: number[]): number[] {
  const blocks: { sum: number; n: number }[] = [];
  for (const x of xs) {
    blocks.push({ sum: x, n: 1 });
    while (blocks.length > 1 && blocks[blocks.length - 2].sum / blocks[blocks.length - 2].n > blocks[blocks.length - 1].sum / blocks[blocks.length - 1].n) {
      const top = blocks.pop()!;
      blocks[blocks.length - 1].sum += top.sum;
      blocks[blocks.length - 1].n += top.n;
    }
  }
  return blocks.flatMap((b) => Array.from({ length: b.n }, () => b.sum / b.n));
}

/**
 * A sublayer's removal queue: units in ascending variance (ties by index), each with its share of the
 * sublayer's damage — its variance share, or, given the refit increments, its increment's share along that
 * order made non-decreasing.
 */
function removalQueue(v: number[], increments?: number[]): { index: number; e: number }[] {
  const order = ascendingOrder(v);
  const useSteps = increments !== undefined && increments.length === v.length;
  const e = shares(order.map((i) => (useSteps ? increments[i] : v[i])));
  const marginal = useSteps ? nonDecreasing(e) : e;
  return order.map((index, k) => ({ index, e: marginal[k] }));
}

/**
 * The share F of a sublayer's damage the model prices for removing `removed` (indices): the sum of those units'
 * shares along the removal queue (what allocateByMarginalCost takes for the same units, when they are a prefix of
 * its queue; otherwise their own shares).
 */
export function removedShare(v: number[], removed: Iterable<number>, increments?: number[]): number {
  const queue = removalQueue(v, increments);
  const gone = new Set(removed);
  return queue.reduce((f, u) => f + (gone.has(u.index) ? u.e : 0), 0);
}

/** Each sublayer's share F (removedShare) for the kept sets of a plan: KV groups for attention, channels for the MLP. */
export function removedShares(layers: LayerShapeIn[], units: UnitVariances, keptKv: number[][], keptChannels: number[][]): SublayerSensitivity {
  const gone = (n: number, kept: number[]) => range(n).filter((i) => !kept.includes(i));
  return {
    attn: layers.map((s, l) => (s.nHead > 0 ? removedShare(kvGroupValues(units.heads[l] ?? [], s.nKvHead), gone(s.nKvHead, keptKv[l]), units.groupIncrements?.[l]) : 0)),
    mlp: layers.map((s, l) => (s.ffn > 0 ? removedShare(units.channels[l] ?? [], gone(s.ffn, keptChannels[l]), units.channelIncrements?.[l]) : 0)),
  };
}

function shares(v: number[]): number[] {
  const clean = v.map(cleanVariance);
  const t = sum(clean);
  return t > 0 ? clean.map((x) => x / t) : clean.map(() => 1 / Math.max(1, clean.length));
}

export function allocateByMarginalCost(
  layers: LayerShapeIn[],
  dim: number,
  headDim: number,
  sens: SublayerSensitivity,
  units: UnitVariances,
  targetRemoved: number,
  curvature: number | SublayerCurvature = 1,
): Allocation {
  const gammaOf = (kind: 'attn' | 'mlp', l: number) => (typeof curvature === 'number' ? curvature : (curvature[kind][l] ?? 1));
  // One queue per sublayer, its units in ascending share: removing a share F of a sublayer is predicted to
  // cost S·F^γ (γ = curvature, one for all or one per sublayer; 1: linear in the removed variance), so the next unit's marginal damage is
  // S·((F + e)^γ − F^γ), which never falls as F grows. Taking the lowest marginal damage per parameter
  // across all queues, one unit at a time, is then optimal for the predicted total.
  interface Queue { layer: number; kind: 'group' | 'channel'; cost: number; s: number; gamma: number; items: { index: number; e: number }[]; next: number; taken: number }
  const queues: Queue[] = [];
  layers.forEach((s, l) => {
    if (s.nHead > 0) {
      const G = s.nHead / s.nKvHead;
      const items = removalQueue(kvGroupValues(units.heads[l] ?? [], s.nKvHead), units.groupIncrements?.[l]);
      queues.push({ layer: l, kind: 'group', cost: kvHeadParams(dim, headDim) + G * queryHeadParams(dim, headDim), s: Math.max(0, sens.attn[l]), gamma: gammaOf('attn', l), items, next: 0, taken: 0 });
    }
    if (s.ffn > 0) {
      const items = removalQueue(units.channels[l] ?? [], units.channelIncrements?.[l]);
      queues.push({ layer: l, kind: 'channel', cost: channelParams(dim), s: Math.max(0, sens.mlp[l]), gamma: gammaOf('mlp', l), items, next: 0, taken: 0 });
    }
  });
  const marginal = (q: Queue) => q.s * ((q.taken + q.items[q.next].e) ** q.gamma - q.taken ** q.gamma);
  const removedGroups = layers.map(() => new Set<number>());
  const removedChannels = layers.map(() => new Set<number>());
  let removed = 0;
  let predicted = 0;
  for (;;) {
    if (removed >= targetRemoved) break;
    let best: Queue | undefined;
    let bestRate = Infinity;
    for (const q of queues) {
      // Never overshoot by a coarse unit: a queue whose next unit does not fit is done, finer ones close the gap.
      if (q.next >= q.items.length || removed + q.cost > targetRemoved + channelParams(dim) / 2) continue;
      const rate = marginal(q) / q.cost;
      if (rate < bestRate) {
        bestRate = rate;
        best = q;
      }
    }
    if (!best) break;
    const u = best.items[best.next];
    predicted += marginal(best);
    (best.kind === 'group' ? removedGroups : removedChannels)[best.layer].add(u.index);
    best.taken += u.e;
    best.next++;
    removed += best.cost;
  }
  const keptKv = layers.map((s, l) => range(s.nKvHead).filter((g) => !removedGroups[l].has(g)));
  const keptHeads = layers.map((s, l) => {
    const G = s.nKvHead ? s.nHead / s.nKvHead : 0;
    return keptKv[l].flatMap((g) => range(G).map((i) => g * G + i));
  });
  const keptChannels = layers.map((s, l) => range(s.ffn).filter((j) => !removedChannels[l].has(j)));
  return { keptKv: keptKv.map((k, l) => (keptHeads[l].length ? k : [])), keptHeads, keptChannels, predictedDamage: predicted };
}
