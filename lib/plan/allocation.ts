// Marginal-cost allocation (ours; the default "how much" of the entropy method, see docs/METHOD.md §4):
// every prunable unit — a KV group with its query heads, an MLP channel — gets an expected damage
// δ_u = S_s · v_u / Σ_{u'∈s} v_{u'}, the sensitivity S_s of its sublayer s (what removing the whole
// sublayer costs: measured, or the transfer-entropy estimate) shared out by the unit's part v_u of the
// sublayer's output variance (what mean compensation cannot restore). Units are removed in ascending order
// of damage per parameter, δ_u / c_u, across all blocks and sublayers at once, until the target is met.
// Taking the cheapest damage per parameter first equalises the marginal cost across sublayers, so each
// block's ratio and its attention/MLP split follow from the model's own sensitivities instead of a rule.
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

export interface UnitVariances {
  /** [layer][query head]: variance the head adds to the residual stream */
  heads: number[][];
  /** [layer][channel]: variance the channel adds to the residual stream */
  channels: number[][];
}

export interface Allocation {
  keptKv: number[][];
  keptHeads: number[][];
  keptChannels: number[][];
  /** the damage the model predicts for the removed set (sum of δ_u) */
  predictedDamage: number;
}

interface Unit {
  layer: number;
  kind: 'group' | 'channel';
  index: number;
  cost: number;
  damage: number;
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

function shares(v: number[]): number[] {
  const clean = v.map((x) => (Number.isFinite(x) && x > 0 ? x : 0));
  const t = sum(clean);
  return t > 0 ? clean.map((x) => x / t) : clean.map(() => 1 / Math.max(1, clean.length));
}

export function allocateByMarginalCost(layers: LayerShapeIn[], dim: number, headDim: number, sens: SublayerSensitivity, units: UnitVariances, targetRemoved: number): Allocation {
  const all: Unit[] = [];
  layers.forEach((s, l) => {
    if (s.nHead > 0) {
      const G = s.nHead / s.nKvHead;
      const groupVar = range(s.nKvHead).map((g) => sum(range(G).map((i) => units.heads[l]?.[g * G + i] ?? 0)));
      const cost = kvHeadParams(dim, headDim) + G * queryHeadParams(dim, headDim);
      shares(groupVar).forEach((e, g) => all.push({ layer: l, kind: 'group', index: g, cost, damage: Math.max(0, sens.attn[l]) * e }));
    }
    if (s.ffn > 0) shares(units.channels[l] ?? []).forEach((e, j) => all.push({ layer: l, kind: 'channel', index: j, cost: channelParams(dim), damage: Math.max(0, sens.mlp[l]) * e }));
  });
  all.sort((a, b) => a.damage / a.cost - b.damage / b.cost || a.layer - b.layer || a.index - b.index);
  const removedGroups = layers.map(() => new Set<number>());
  const removedChannels = layers.map(() => new Set<number>());
  let removed = 0;
  let predicted = 0;
  for (const u of all) {
    if (removed >= targetRemoved) break;
    // Never overshoot by a coarse unit: skip it and let finer ones (channels) close the gap.
    if (removed + u.cost > targetRemoved + channelParams(dim) / 2) continue;
    (u.kind === 'group' ? removedGroups : removedChannels)[u.layer].add(u.index);
    removed += u.cost;
    predicted += u.damage;
  }
  const keptKv = layers.map((s, l) => range(s.nKvHead).filter((g) => !removedGroups[l].has(g)));
  const keptHeads = layers.map((s, l) => {
    const G = s.nKvHead ? s.nHead / s.nKvHead : 0;
    return keptKv[l].flatMap((g) => range(G).map((i) => g * G + i));
  });
  const keptChannels = layers.map((s, l) => range(s.ffn).filter((j) => !removedChannels[l].has(j)));
  return { keptKv: keptKv.map((k, l) => (keptHeads[l].length ? k : [])), keptHeads, keptChannels, predictedDamage: predicted };
}
