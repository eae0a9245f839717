// The order in which the planner removes a sublayer's units under each unit ranking (docs/METHOD.md §3–4):
// ascending value, ties by index; attention units are KV groups, valued by their query heads' sum. One
// definition for the measure stage, which records the refit-aware damage of exactly these orders (analysis
// `refitDamage`), and the planner, which walks them.
import { entropyPower, type BlockStats } from './analysis';

/** How units are ranked inside a sublayer (docs/METHOD.md §3; `plan.method.importance`). */
export type UnitRanking = 'entropy' | 'contribution' | 'activation' | 'weight';
export const UNIT_RANKINGS: readonly UnitRanking[] = ['entropy', 'contribution', 'activation', 'weight'];

export interface WeightMagnitudes {
  heads: number[][]; // [layer][head]
  channels: number[][]; // [layer][channel]
}

/** Non-finite or non-positive values count as 0 (a unit that carries nothing goes first). */
export function cleanVariance(x: number): number {
  return Number.isFinite(x) && x > 0 ? x : 0;
}

/** Indices in ascending value (cleaned), ties by index (Array.prototype.sort is stable). */
export function ascendingOrder(v: number[]): number[] {
  const c = v.map(cleanVariance);
  return c.map((_, i) => i).sort((a, b) => c[a] - c[b]);
}

/** A KV group's value: the sum of its query heads' (query head h belongs to group ⌊h / (nHead / nKvHead)⌋). */
export function kvGroupValues(heads: number[], nKvHead: number): number[] {
  return Array.from({ length: nKvHead }, (_, g) => {
    const G = heads.length / nKvHead; // query heads per group (no group, no division)
    return heads.slice(g * G, (g + 1) * G).reduce((s, x) => s + cleanVariance(x), 0);
  });
}

/** Entropy powers of a block's query heads and channels (the default ranking's unit values). */
export function entropyPowers(b: BlockStats, headDim: number): { heads: number[]; channels: number[] } {
  return {
    heads: (b.attention?.headEntropy ?? []).map((H) => entropyPower(H, headDim)),
    channels: (b.mlp?.channelEntropy ?? []).map((H) => entropyPower(H)),
  };
}

/**
 * Each unit's value under a ranking, the variance the planner shares a sublayer's damage by: 'entropy' the
 * entropy power (ordered as the entropies, and additive); 'contribution', 'activation' the analysis' figures;
 * 'weight' the model's weight magnitudes. undefined where the figures are missing (an older analysis without
 * contributions; 'weight' without the magnitudes).
 */
export function rankingValues(b: BlockStats, l: number, ranking: UnitRanking, headDim: number, weights?: WeightMagnitudes): { heads: number[]; channels: number[] } | undefined {
  if (ranking === 'entropy') return entropyPowers(b, headDim);
  if (ranking === 'activation') return { heads: b.attention?.headEnergy ?? [], channels: b.mlp?.channelEnergy ?? [] };
  if (ranking === 'contribution') {
    if ((b.attention && !b.attention.headContribution) || (b.mlp && !b.mlp.channelContribution)) return undefined;
    return { heads: b.attention?.headContribution ?? [], channels: b.mlp?.channelContribution ?? [] };
  }
  if (!weights) return undefined;
  return { heads: weights.heads[l] ?? [], channels: weights.channels[l] ?? [] };
}

/** Per block, the KV groups and the channels in the ranking's removal order (empty where the block has no such part). */
export function removalOrders(blocks: BlockStats[], ranking: UnitRanking, headDim: number, weights?: WeightMagnitudes): { attn: number[][]; mlp: number[][] } | undefined {
  const v = blocks.map((b, l) => rankingValues(b, l, ranking, headDim, weights));
  if (v.some((x) => !x)) return undefined;
  return {
    attn: blocks.map((b, l) => (b.attention ? ascendingOrder(kvGroupValues(v[l]!.heads, b.attention.nKvHead)) : [])),
    mlp: blocks.map((b, l) => (b.mlp ? ascendingOrder(v[l]!.channels) : [])),
  };
}
