// The planner (docs/METHOD.md section 4). Default (allocation 'marginal'): each sublayer's sensitivity —
// measured, or a transfer-entropy estimate — shared out over its units by their contribution to the residual
// stream, and units removed across all blocks in ascending damage per parameter (allocation.ts), so the
// per-block ratios follow from the model's own sensitivities. The paper's rules as first reconstructed
// (allocation 'paper'): per-block ratios by water-filling on transfer entropy, each block's budget split
// between attention and MLP ∝ 1/TE, units ranked by entropy and grouped by K-means, whole clusters removed
// within budget, then a depth-first search over whole blocks/layers for the remaining ratio. Either way,
// (ours) a fill with the least important MLP channels lands the achieved ratio within the tolerance.
// Baselines (uniform width, ShortGPT block drop, attention-layer drop) and the paper's ablations are
// options of the same entry point, so every method is planned, accounted and validated the same way.
import { type Analysis, type BlockStats } from '../measure/analysis';
import { entropyPowers, rankingValues, type WeightMagnitudes } from '../measure/unit-order';
import { EntropruneError } from '../util/errors';
import { VERSION } from '../version';
import { attentionParams, blockParams, channelParams, countedParams, kvHeadParams, mlpParams, queryHeadParams, wholeModelParams } from './accounting';
import { allocateByMarginalCost, removedShares, SublayerCurvature, SublayerSensitivity, UnitVariances } from './allocation';
import { waterFillRatios } from './block-ratios';
import { estimatorValues } from '../measure/sensitivity';
import { defaultK, kmeans1d } from './kmeans';
import { achievedRatio, BlockPlan, PLAN_FORMAT, PLAN_VERSION, PlanMethod, prunedShapes, PruningPlan } from './plan';
import { Candidate, dfsSearch, greedySearch, SearchFallback, SearchResult } from './search';

export type { WeightMagnitudes } from '../measure/unit-order';

/** Every PlanMethod field may be given (defaults in parentheses there); these are the rest. */
export interface PlanOptions extends Partial<Omit<PlanMethod, 'name'>> {
  /** the share of the blocks' linear weights to remove, in (0, 1) */
  ratio: number;
  /** entroprune's method (default 'entropy') or a baseline */
  method?: PlanMethod['name'];
  /** DFS node limit (anytime: the best set found so far) */
  searchLimit?: number;
  /** what DFS does when no set fits the window (default 'undershoot' + channel fill; docs/METHOD.md: 'overshoot') */
  searchFallback?: SearchFallback;
  /** per-unit weight magnitudes (`model.handle.unitWeightMagnitudes()`), needed by importance 'weight' */
  weights?: WeightMagnitudes;
  /** the model's vocabulary size, for the whole-model ratio (default: the analysis's) */
  vocab?: number;
  /** whether the output head shares the embedding, for the whole-model ratio (default: the analysis's) */
  tiedOutput?: boolean;
  /** the analysis file the plan records, so that `apply` finds the calibration means by itself */
  analysisFile?: string;
  /**
   * Per sublayer, a factor on the marginal allocation's sensitivities S_s (default 1): the correction the plan's
   * measured refinement (lib/plan/refine.ts) makes to the damage model at the plan's own depth
   */
  damageScale?: SublayerSensitivity;
}

interface State {
  keptKv: number[][];
  keptHeads: number[][];
  keptChannels: number[][];
  /** the paper allocation's K-means groups per layer (0: the lowest centroid), when it formed them */
  groups?: { kvHeads?: number[]; channels?: number[] }[];
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/**
 * Each unit's importance under the ranking: the raw entropies for 'entropy' (the paper allocation's K-means
 * and the fill read those), otherwise the ranking's values (lib/measure/unit-order.ts), refused naming what is
 * missing.
 */
function importanceOf(b: BlockStats, l: number, metric: PlanMethod['importance'], weights?: WeightMagnitudes) {
  if (metric === 'entropy') return { heads: b.attention?.headEntropy ?? [], channels: b.mlp?.channelEntropy ?? [] };
  const v = rankingValues(b, l, metric, 0, weights); // head_dim matters to the entropy powers only
  if (v) return v;
  if (metric === 'weight') throw new EntropruneError('EP_INVALID_ARGUMENT', 'importance "weight" needs the model\'s weight magnitudes (pass the model)');
  throw new EntropruneError('EP_INVALID_ARGUMENT', `importance "contribution" needs an analysis with unit contributions (block ${l} has none: re-run analyze)`);
}

/** What the planner reads of an analysis: everything but where its means were written. */
export type PlannerInput = Omit<Analysis, 'means'>;

/** A pruning plan from an analysis (`analyze()`'s `analysis`, or `readAnalysis(file).analysis`). */
export function plan(analysis: PlannerInput, o: PlanOptions): PruningPlan {
  const p = o.ratio;
  if (!(p > 0 && p < 1)) throw new EntropruneError('EP_INVALID_ARGUMENT', `ratio must lie in (0, 1) (got ${p})`);
  const method: PlanMethod = {
    name: o.method ?? 'entropy',
    importance: o.importance ?? 'entropy',
    search: o.search ?? 'dfs',
    ratios: o.ratios ?? 'dynamic',
    compensation: o.compensation ?? true,
    granularity: o.granularity ?? 'multi',
    k: o.k,
    temperature: o.temperature ?? 1,
    maxBlockRatio: o.maxBlockRatio ?? 0.9,
    tolerance: o.tolerance ?? 0.005,
    align: o.align ?? 1,
    alignHeads: o.alignHeads ?? 1,
    uniformShape: o.uniformShape ?? false,
    allocation: o.allocation ?? 'marginal',
    estimator: o.estimator ?? defaultEstimator(analysis),
    curvature: o.curvature ?? 1,
  };
  // The damage model of partial cuts, recorded where the allocation reads it (the marginal one). Its default
  // is the refit-aware one where the analysis has it; with it the default ranking is the units' contribution
  // (what each writes into the residual stream), which gave lower perplexity and fewer greedy loops than the
  // entropy ranking on every bundled model (docs/METHOD.md §3); without it the paper's entropy ranking.
  if (method.name === 'entropy' && method.allocation === 'marginal' && method.granularity === 'multi' && !method.uniformShape) {
    if (o.importance === undefined && o.cutDamage !== 'variance' && hasRefitDamage(analysis, 'contribution')) method.importance = 'contribution';
    method.cutDamage = o.cutDamage ?? (hasRefitDamage(analysis, method.importance) ? 'refit' : 'variance');
  }
  if (method.cutDamage === 'refit' && !hasRefitDamage(analysis, method.importance))
    throw new EntropruneError('EP_INVALID_ARGUMENT', `cutDamage "refit" needs an analysis with the refit-aware damage of the "${method.importance}" ranking (analyze --refit-rankings ${method.importance})`);
  if (method.curvature === 'measured' && !(method.estimator === 'measured' && analysis.sensitivity?.partial))
    throw new EntropruneError('EP_INVALID_ARGUMENT', 'curvature "measured" needs the measured estimator and an analysis with measured half cuts (re-run analyze)');
  if (typeof method.curvature === 'number') inRangeCurvature(method.curvature);
  if (method.estimator === 'measured' && !analysis.sensitivity)
    throw new EntropruneError('EP_INVALID_ARGUMENT', 'estimator "measured" needs an analysis with measured sensitivities (analyze without --no-sensitivity)');
  // Numeric options in their ranges before any work (a cap of 5 would plan 146 % of a block; β = 1e308
  // overflows the weights; the cap must leave room for the target).
  const inRange = (name: string, v: number, lo: number, hi: number, hint = '') => {
    if (!(Number.isFinite(v) && v >= lo && v <= hi)) throw new EntropruneError('EP_INVALID_ARGUMENT', `${name} must lie in [${lo}, ${hi}] (got ${v})${hint}`);
  };
  inRange('maxBlockRatio', method.maxBlockRatio, 0, 1);
  if (method.maxBlockRatio < p) throw new EntropruneError('EP_INVALID_ARGUMENT', `maxBlockRatio ${method.maxBlockRatio} is below the target ratio ${p}: no block could lose enough`);
  inRange('temperature', method.temperature, 0, 16, ' (β in w = s^−β; larger values overflow)');
  inRange('tolerance', method.tolerance, 0, 0.5);
  if (method.k !== undefined && !(Number.isInteger(method.k) && method.k >= 1 && method.k <= 64)) throw new EntropruneError('EP_INVALID_ARGUMENT', `k must be an integer in [1, 64] (got ${method.k})`);
  if (!Number.isInteger(method.alignHeads) || method.alignHeads < 1) throw new EntropruneError('EP_INVALID_ARGUMENT', `alignHeads must be a positive integer (got ${method.alignHeads})`);
  if (!Number.isInteger(method.align) || method.align < 1) throw new EntropruneError('EP_INVALID_ARGUMENT', `align must be a positive integer (got ${method.align})`);
  const { dim: d, headDim: hd } = analysis.model;
  const layers = analysis.model.layers;
  const L = layers.length;
  const sizes = layers.map((s) => blockParams(d, hd, s));
  const total = sizes.reduce((a, b) => a + b, 0);
  const targetRemoved = p * total;
  const notes: string[] = [];
  const st: State = {
    keptKv: layers.map((s) => range(s.nKvHead)),
    keptHeads: layers.map((s) => range(s.nHead)),
    keptChannels: layers.map((s) => range(s.ffn)),
  };
  const stats = analysis.blocks;
  let plannedRatios = layers.map(() => p);

  const removedSoFar = () => total - countedParams(d, hd, currentShapes(layers, st));

  if (method.name === 'block-drop' || method.name === 'layer-drop') {
    dropBaseline(method.name, stats, layers, st, d, hd, targetRemoved, notes);
  } else if (method.name === 'entropy' && method.allocation === 'marginal' && method.granularity === 'multi' && !method.uniformShape) {
    const model = method.curvature === 'measured' ? measuredDamageModel(analysis) : { sens: sensitivityOf(analysis, method.estimator!), curvature: method.curvature as number };
    const scale = o.damageScale;
    if (scale && !(scale.attn.length === L && scale.mlp.length === L && [...scale.attn, ...scale.mlp].every((x) => Number.isFinite(x) && x > 0)))
      throw new EntropruneError('EP_INVALID_ARGUMENT', `damageScale needs ${L} positive factors for the attention layers and ${L} for the MLPs`);
    const sens = scale ? { attn: model.sens.attn.map((x, l) => x * scale.attn[l]), mlp: model.sens.mlp.map((x, l) => x * scale.mlp[l]) } : model.sens;
    const units = marginalUnits(analysis, method, o.weights);
    if (method.ratios === 'dynamic') {
      const a = allocateByMarginalCost(layers, d, hd, sens, units, targetRemoved, model.curvature);
      Object.assign(st, { keptKv: a.keptKv, keptHeads: a.keptHeads, keptChannels: a.keptChannels });
      notes.push(`marginal allocation over all blocks (${method.estimator} sensitivities, ${method.cutDamage} cut damage): predicted damage ${a.predictedDamage.toPrecision(4)}`);
    } else {
      // The uniform-ratio ablation: every block loses p of its own weights, split inside it the same way.
      layers.forEach((shape, l) => {
        const gamma = typeof model.curvature === 'number' ? model.curvature : { attn: [model.curvature.attn[l]], mlp: [model.curvature.mlp[l]] };
        const one = { heads: [units.heads[l]], channels: [units.channels[l]], groupIncrements: [units.groupIncrements?.[l]], channelIncrements: [units.channelIncrements?.[l]] };
        const a = allocateByMarginalCost([shape], d, hd, { attn: [sens.attn[l]], mlp: [sens.mlp[l]] }, one, p * sizes[l], gamma);
        st.keptKv[l] = a.keptKv[0];
        st.keptHeads[l] = a.keptHeads[0];
        st.keptChannels[l] = a.keptChannels[0];
      });
      notes.push(`marginal allocation inside each block at the uniform ratio ${p}`);
    }
    // Alignment (--align / --align-heads): round each layer's kept counts, keeping the largest contributors;
    // the channel fill below closes what the rounding left of the target.
    layers.forEach((shape, l) => {
      if (method.align > 1 && st.keptChannels[l].length > 0) {
        const kept = new Set(st.keptChannels[l]);
        setKeptChannels(l, shape.ffn, units.channels[l], new Set(range(shape.ffn).filter((j) => !kept.has(j))), st, method.align);
      }
      if (method.alignHeads > 1 && st.keptHeads[l].length > 0) {
        const G = shape.nHead / shape.nKvHead;
        setKeptHeads(l, shape, units.heads[l], st.keptKv[l], G, st, method.alignHeads);
      }
    });
    plannedRatios = layers.map((s, l) => 1 - blockParams(d, hd, currentShapes(layers, st)[l]) / sizes[l]);
  } else if (method.uniformShape) {
    uniformShape(stats, layers, st, d, hd, p, total, method, o.weights, notes);
  } else {
    if (method.name === 'uniform' || method.ratios === 'uniform') plannedRatios = layers.map(() => p);
    else plannedRatios = waterFillRatios(stats.map((b) => b.te), sizes, p, method.temperature, method.maxBlockRatio);
    if (method.granularity !== 'depth-only') {
      for (let l = 0; l < L; l++) {
        const budget = plannedRatios[l] * sizes[l];
        const imp = importanceOf(stats[l], l, method.importance, o.weights);
        const na = attentionParams(d, hd, layers[l].nHead, layers[l].nKvHead);
        const nm = mlpParams(d, layers[l].ffn);
        const [ba, bm] = splitBudget(budget, na, nm, stats[l].teAttn, stats[l].teMlp);
        if (method.name === 'uniform') {
          pruneAttentionExact(l, plannedRatios[l], layers[l], imp.heads, st, method.alignHeads);
          pruneMlpExact(l, plannedRatios[l], layers[l].ffn, imp.channels, st, method.align);
        } else {
          const k = method.k ?? defaultK(p);
          pruneAttentionClusters(l, ba, layers[l], imp.heads, st, d, hd, k, method.alignHeads);
          pruneMlpClusters(l, bm, layers[l].ffn, imp.channels, st, d, k, method.align);
        }
      }
    }
    if (method.name === 'entropy' && method.granularity !== 'width-only') {
      const need = targetRemoved - removedSoFar();
      const fallback = o.searchFallback ?? (method.granularity === 'multi' ? 'undershoot' : 'overshoot');
      const result = compensate(stats, layers, st, d, hd, need, need + method.tolerance * total, method.search, o.searchLimit, fallback);
      notes.push(
        `${method.search}: remaining ${(need / total * 100).toFixed(2)} % met by removing ${result.chosen.map((c) => `${c.kind}${c.block}`).join(', ') || 'nothing'} ` +
          `(${result.nodes} nodes${result.truncated ? ', node limit reached' : ''}${result.inWindow ? '' : `, no set fits the window: ${fallback === 'undershoot' ? 'largest removal below it taken, the channel fill closes the gap' : 'smallest overshoot taken'}`})`,
      );
    }
  }
  // Fill (ours): close what is left of the target with the least important remaining MLP channels.
  if (method.name !== 'block-drop' && method.name !== 'layer-drop' && method.granularity !== 'depth-only' && !method.uniformShape) {
    const filled = fillChannels(stats, layers, st, d, hd, total, targetRemoved, method, o.weights);
    if (filled > 0) notes.push(`fill: ${filled} more MLP channels removed to reach the target`);
  }

  const blocks: BlockPlan[] = toBlocks(layers, st, method.compensation).map((b, l) => ({ ...b, plannedRatio: plannedRatios[l], te: stats[l].te }));
  const model = {
    identity: analysis.model.identity,
    dim: d,
    headDim: hd,
    vocab: o.vocab ?? analysis.model.vocab,
    tiedOutput: o.tiedOutput ?? analysis.model.tiedOutput ?? false,
    layers: layers.map((s) => ({ nHead: s.nHead, nKvHead: s.nKvHead, ffn: s.ffn })),
  };
  const acc = achievedRatio({ model, blocks });
  const vocab = model.vocab;
  const whole0 = wholeModelParams(d, hd, vocab, model.tiedOutput, model.layers);
  const whole1 = wholeModelParams(d, hd, vocab, model.tiedOutput, prunedShapes({ model, blocks }));
  if (Math.abs(acc.ratio - p) > method.tolerance)
    notes.push(`achieved ratio ${(acc.ratio * 100).toFixed(2)} % is more than ${(method.tolerance * 100).toFixed(1)} points from the target: ${whyOff(method)}`);
  return {
    format: PLAN_FORMAT,
    version: PLAN_VERSION,
    createdBy: `entroprune ${VERSION}`,
    model,
    analysis: o.analysisFile,
    target: { ratio: p, counting: 'block-linear' },
    achieved: { ratio: acc.ratio, keptParams: acc.kept, originalParams: acc.original, wholeModelRatio: 1 - whole1 / whole0 },
    method,
    notes,
    blocks,
  };
}

/**
 * The damage model of partial cuts for how apply will compensate (docs/METHOD.md §4a): the one asked for, else the
 * variance shares for the bias compensation (what it leaves of a cut), else the planner's default.
 */
export function cutDamageFor(compensation: 'least-squares' | 'bias' | undefined, asked?: PlanMethod['cutDamage']): PlanMethod['cutDamage'] {
  return asked ?? (compensation === 'bias' ? 'variance' : undefined);
}

/** Whether every sublayer of the analysis has the refit-aware damage of this ranking (analyses from before it: none). */
export function hasRefitDamage(a: PlannerInput, ranking: PlanMethod['importance']): boolean {
  return a.blocks.some((b) => b.attention || b.mlp) &&
    a.blocks.every((b) => (!b.attention || b.attention.refitDamage?.[ranking]?.length === b.attention.nKvHead) && (!b.mlp || b.mlp.refitDamage?.[ranking]?.length === b.mlp.width));
}

/** Measured damage when the analysis has it, else the stream-targeted TE (files from before it: the output-targeted one). */
export function defaultEstimator(a: PlannerInput): NonNullable<PlanMethod['estimator']> {
  if (a.sensitivity) return 'measured';
  return a.blocks.every((b) => b.teStream !== undefined) ? 'stream-te' : 'output-te';
}

function inRangeCurvature(g: number) {
  if (!(Number.isFinite(g) && g >= 1 && g <= 16)) throw new EntropruneError('EP_INVALID_ARGUMENT', `curvature must lie in [1, 16] or be "measured" (got ${g})`);
}

/**
 * The measured damage model of every sublayer (docs/METHOD.md §4): S·F^γ through both measured points, the
 * whole removal (F = 1, D = S) and the half cut (F = share, D = D_half): γ = log(D_half / S) / log(F). Where
 * the points say γ < 1 (a partial cut costs more than its share of the whole), a line through the half cut
 * (S' = D_half / F, γ = 1): the greedy allocation needs marginal damage that never falls, and the half cut is
 * the point nearer to the cuts a plan makes. Sublayers with no half cut (one KV group) keep S and γ = 1.
 */
export function measuredDamageModel(a: PlannerInput): { sens: SublayerSensitivity; curvature: SublayerCurvature } {
  const s = a.sensitivity!;
  const part = s.partial!;
  const fit = (S: number | null, half: number | null, F: number | null): [number, number] => {
    const whole = S !== null && Number.isFinite(S) && S > 0 ? S : 0;
    if (!whole || half === null || F === null || !(half > 0) || !(F > 0 && F < 1)) return [whole, 1];
    const gamma = Math.log(half / whole) / Math.log(F);
    return gamma >= 1 ? [whole, gamma] : [half / F, 1];
  };
  const attn = s.kl.attn.map((S, l) => fit(S, part.kl.attn[l], part.attnShare[l]));
  const mlp = s.kl.mlp.map((S, l) => fit(S, part.kl.mlp[l], part.mlpShare[l]));
  return { sens: { attn: attn.map((x) => x[0]), mlp: mlp.map((x) => x[0]) }, curvature: { attn: attn.map((x) => x[1]), mlp: mlp.map((x) => x[1]) } };
}

/** Sublayer sensitivities S_s from the chosen estimator (absent parts: 0). */
function sensitivityOf(a: PlannerInput, e: NonNullable<PlanMethod['estimator']>): SublayerSensitivity {
  if (e === 'measured') return { attn: a.sensitivity!.kl.attn.map((x) => x ?? 0), mlp: a.sensitivity!.kl.mlp.map((x) => x ?? 0) };
  const v = estimatorValues(a.blocks, e);
  return { attn: v.attn.map((x) => (Number.isFinite(x) ? x : 0)), mlp: v.mlp.map((x) => (Number.isFinite(x) ? x : 0)) };
}

/**
 * Each unit's share-out weight inside its sublayer (a variance, so shares add up).
 * 'entropy' (the paper's ranking): the entropy power of the unit's activation, exp(2H/n)/(2πe) per
 * dimension — σ² for a channel, n·det(Σ_q)^{1/n} for a head of n = head_dim dimensions — so the order is the
 * order of the units' information entropies. 'contribution': the variance the unit writes into the residual
 * stream (Var(x_j)·‖W_down[:,j]‖², tr(W_o,qᵀW_o,q Σ_q)); 'activation': activation energy alone; 'weight':
 * weight magnitude alone. docs/METHOD.md section 3 says which is the default and why. With the refit-aware
 * damage the shares are the refit steps instead; these values then only order the units.
 */
/** The units the marginal allocation queues: their variances and, with the refit-aware damage, the refit steps. */
function marginalUnits(analysis: PlannerInput, method: PlanMethod, weights?: WeightMagnitudes): UnitVariances {
  const stats = analysis.blocks;
  const units = unitVariances(stats, method.importance, analysis.model.headDim, weights);
  if (method.cutDamage === 'refit') {
    units.groupIncrements = stats.map((b) => b.attention?.refitDamage?.[method.importance]);
    units.channelIncrements = stats.map((b) => b.mlp?.refitDamage?.[method.importance]);
  }
  return units;
}

/**
 * Each sublayer's removed share F as the plan's damage model prices it (its ranking and cut damage): the
 * predicted damage of a sublayer is S_s·F^γ. What the measured refinement compares measured damage with.
 */
export function cutShares(analysis: PlannerInput, p: PruningPlan, weights?: WeightMagnitudes): SublayerSensitivity {
  return removedShares(analysis.model.layers, marginalUnits(analysis, p.method, weights), p.blocks.map((b) => b.attention.keptKvHeads), p.blocks.map((b) => b.mlp.keptChannels));
}

/** The marginal allocation's sublayer sensitivities S_s for a plan's method (before any damageScale). */
export function planSensitivities(analysis: PlannerInput, m: PlanMethod): SublayerSensitivity {
  return m.curvature === 'measured' ? measuredDamageModel(analysis).sens : sensitivityOf(analysis, m.estimator ?? defaultEstimator(analysis));
}

function unitVariances(stats: BlockStats[], metric: PlanMethod['importance'], headDim: number, weights?: WeightMagnitudes): UnitVariances {
  const v = stats.map((b, l) => (metric === 'entropy' ? entropyPowers(b, headDim) : importanceOf(b, l, metric, weights)));
  return { heads: v.map((x) => x.heads), channels: v.map((x) => x.channels) };
}

function whyOff(m: PlanMethod): string {
  if (m.name === 'block-drop') return 'block removal moves in steps of one block';
  if (m.name === 'layer-drop') return 'attention-layer removal moves in steps of one layer (and cannot exceed all attention layers)';
  if (m.granularity === 'depth-only') return 'depth-only pruning moves in steps of whole layers';
  if (m.uniformShape) return 'one shape for every block moves in steps of L·align channels';
  return 'the alignment and GQA constraints leave no finer step';
}

function currentShapes(layers: Analysis['model']['layers'], st: State) {
  return layers.map((_, l) => ({ nHead: st.keptHeads[l].length, nKvHead: st.keptHeads[l].length ? st.keptKv[l].length : 0, ffn: st.keptChannels[l].length }));
}

/** Split B between attention and MLP ∝ 1/TE, each capped by its size, overflow to the other. */
export function splitBudget(budget: number, na: number, nm: number, teAttn: number, teMlp: number): [number, number] {
  if (na === 0) return [0, Math.min(budget, nm)];
  if (nm === 0) return [Math.min(budget, na), 0];
  const wa = 1 / Math.max(teAttn, 1e-9);
  const wm = 1 / Math.max(teMlp, 1e-9);
  let ba = (budget * wa) / (wa + wm);
  let bm = budget - ba;
  if (ba > na) {
    bm += ba - na;
    ba = na;
  }
  if (bm > nm) {
    ba = Math.min(na, ba + bm - nm);
    bm = nm;
  }
  return [ba, bm];
}

function alignKeep(count: number, align: number, full: number): number {
  if (align <= 1 || count === 0) return count;
  const aligned = Math.round(count / align) * align;
  return Math.min(full, Math.max(align, aligned));
}

/** Remove whole K-means clusters of channels (ascending centroid) while the budget allows. */
function pruneMlpClusters(l: number, budget: number, ffn: number, imp: number[], st: State, d: number, k: number, align: number) {
  if (ffn === 0 || budget <= 0) return;
  const { assignment, centroids } = kmeans1d(imp, k);
  ((st.groups ??= [])[l] ??= {}).channels = assignment;
  const cost = channelParams(d);
  const removed = new Set<number>();
  for (let c = 0; c < centroids.length; c++) {
    const members = range(ffn).filter((j) => assignment[j] === c);
    if ((removed.size + members.length) * cost > budget + 1e-9) break;
    members.forEach((j) => removed.add(j));
  }
  setKeptChannels(l, ffn, imp, removed, st, align);
}

function setKeptChannels(l: number, ffn: number, imp: number[], removed: Set<number>, st: State, align: number) {
  let kept = range(ffn).filter((j) => !removed.has(j));
  const want = alignKeep(kept.length, align, ffn);
  if (want !== kept.length) {
    const byImportance = range(ffn).sort((a, b) => imp[b] - imp[a] || a - b); // most important first
    kept = byImportance.slice(0, want).sort((a, b) => a - b);
  }
  st.keptChannels[l] = kept;
}

/** Uniform baseline: remove exactly round(p·ffn) least important channels (aligned). */
function pruneMlpExact(l: number, ratio: number, ffn: number, imp: number[], st: State, align: number) {
  const drop = Math.round(ratio * ffn);
  const order = range(ffn).sort((a, b) => imp[a] - imp[b] || a - b);
  setKeptChannels(l, ffn, imp, new Set(order.slice(0, drop)), st, align);
}

/**
 * Attention under GQA: K-means over KV groups (group entropy = sum of its query heads'), whole clusters
 * removed within budget; then the leftover budget trims the same number of lowest-importance query heads
 * from every kept group. With MHA every head is its own group.
 */
function pruneAttentionClusters(l: number, budget: number, s: { nHead: number; nKvHead: number }, imp: number[], st: State, d: number, hd: number, k: number, alignHeads: number) {
  if (s.nHead === 0 || budget <= 0) return;
  const G = s.nHead / s.nKvHead;
  const groupImp = range(s.nKvHead).map((g) => range(G).reduce((a, i) => a + imp[g * G + i], 0));
  const groupCost = kvHeadParams(d, hd) + G * queryHeadParams(d, hd);
  const { assignment, centroids } = kmeans1d(groupImp, k);
  ((st.groups ??= [])[l] ??= {}).kvHeads = assignment;
  const removedGroups = new Set<number>();
  for (let c = 0; c < centroids.length; c++) {
    const members = range(s.nKvHead).filter((g) => assignment[g] === c);
    if ((removedGroups.size + members.length) * groupCost > budget + 1e-9) break;
    members.forEach((g) => removedGroups.add(g));
  }
  const keptGroups = range(s.nKvHead).filter((g) => !removedGroups.has(g));
  const left = budget - removedGroups.size * groupCost;
  const trim = keptGroups.length ? Math.min(G - 1, Math.floor(left / (keptGroups.length * queryHeadParams(d, hd)))) : 0;
  setKeptHeads(l, s, imp, keptGroups, G - Math.max(0, trim), st, alignHeads);
}

/**
 * With --align-heads N the kept query-head count must be a multiple of N: pick the (groups, heads per group)
 * closest to the requested count whose product is, keeping the most important groups.
 */
function alignHeadCount(s: { nHead: number; nKvHead: number }, groupImp: number[], keptGroups: number[], perGroup: number, n: number): [number[], number] {
  const G = s.nHead / s.nKvHead;
  const want = keptGroups.length * perGroup;
  if (want % n === 0) return [keptGroups, perGroup]; // n = 1 and want = 0 included
  let best: [number, number] | null = null;
  for (let g = 1; g <= s.nKvHead; g++)
    for (let p = 1; p <= G; p++) {
      if ((g * p) % n !== 0) continue;
      const cost = Math.abs(g * p - want);
      if (!best || cost < Math.abs(best[0] * best[1] - want) || (cost === Math.abs(best[0] * best[1] - want) && g * p < best[0] * best[1])) best = [g, p];
    }
  if (!best) return [keptGroups, perGroup];
  const order = [...Array(s.nKvHead).keys()].sort((a, b) => groupImp[b] - groupImp[a] || a - b);
  // keep the chosen number of groups, preferring those already kept, then by importance
  const ranked = [...keptGroups.sort((a, b) => groupImp[b] - groupImp[a] || a - b), ...order.filter((g) => !keptGroups.includes(g))];
  return [ranked.slice(0, best[0]).sort((a, b) => a - b), best[1]];
}

function setKeptHeads(l: number, s: { nHead: number; nKvHead: number }, imp: number[], keptGroupsIn: number[], perGroupIn: number, st: State, alignHeads = 1) {
  const G = s.nHead / s.nKvHead;
  const groupImp = [...Array(s.nKvHead).keys()].map((g) => [...Array(G).keys()].reduce((a, i) => a + imp[g * G + i], 0));
  const [keptGroups, perGroup] = alignHeadCount(s, groupImp, [...keptGroupsIn], perGroupIn, alignHeads);
  const heads: number[] = [];
  for (const g of keptGroups) {
    const members = range(G).map((i) => g * G + i).sort((a, b) => imp[b] - imp[a] || a - b);
    heads.push(...members.slice(0, perGroup));
  }
  st.keptKv[l] = perGroup > 0 ? keptGroups : [];
  st.keptHeads[l] = perGroup > 0 ? heads.sort((a, b) => a - b) : [];
}

/** Uniform baseline: drop round(p·n_kv) least important KV groups. */
function pruneAttentionExact(l: number, ratio: number, s: { nHead: number; nKvHead: number }, imp: number[], st: State, alignHeads: number) {
  if (s.nHead === 0) return;
  const G = s.nHead / s.nKvHead;
  const groupImp = range(s.nKvHead).map((g) => range(G).reduce((a, i) => a + imp[g * G + i], 0));
  const drop = Math.min(s.nKvHead - 1, Math.round(ratio * s.nKvHead));
  const order = range(s.nKvHead).sort((a, b) => groupImp[a] - groupImp[b] || a - b);
  const kept = range(s.nKvHead).filter((g) => !order.slice(0, drop).includes(g));
  setKeptHeads(l, s, imp, kept, G, st, alignHeads);
}

function remainingAttn(l: number, st: State, d: number, hd: number) {
  return st.keptHeads[l].length ? attentionParams(d, hd, st.keptHeads[l].length, st.keptKv[l].length) : 0;
}

function compensate(
  stats: BlockStats[],
  layers: Analysis['model']['layers'],
  st: State,
  d: number,
  hd: number,
  need: number,
  windowHi: number,
  search: PlanMethod['search'],
  limit?: number,
  fallback: SearchFallback = 'undershoot',
): SearchResult {
  const cands: Candidate[] = [];
  layers.forEach((_, l) => {
    const a = remainingAttn(l, st, d, hd);
    const m = mlpParams(d, st.keptChannels[l].length);
    if (a + m > 0 && a > 0 && m > 0) cands.push({ kind: 'block', block: l, params: a + m, importance: stats[l].te });
    if (a > 0) cands.push({ kind: 'attn', block: l, params: a, importance: stats[l].teAttn });
    if (m > 0) cands.push({ kind: 'mlp', block: l, params: m, importance: stats[l].teMlp });
  });
  const r = search === 'greedy' ? greedySearch(cands, need, windowHi) : dfsSearch(cands, need, windowHi, limit, fallback);
  for (const c of r.chosen) {
    if (c.kind !== 'mlp') {
      st.keptHeads[c.block] = [];
      st.keptKv[c.block] = [];
    }
    if (c.kind !== 'attn') st.keptChannels[c.block] = [];
  }
  return r;
}

function fillChannels(
  stats: BlockStats[],
  layers: Analysis['model']['layers'],
  st: State,
  d: number,
  hd: number,
  total: number,
  targetRemoved: number,
  method: PlanMethod,
  weights?: WeightMagnitudes,
): number {
  const step = channelParams(d) * method.align;
  let filled = 0;
  const order = layers.map((_, l) => l).sort((a, b) => stats[a].te - stats[b].te);
  const removed = () => total - countedParams(d, hd, prunedShapes({ model: { dim: d, headDim: hd, layers } as never, blocks: toBlocks(layers, st, method.compensation) }));
  let gap = targetRemoved - removed();
  while (gap > method.tolerance * total * 0.5) {
    let progressed = false;
    for (const l of order) {
      if (gap <= method.tolerance * total * 0.5) break;
      const kept = st.keptChannels[l];
      if (kept.length <= method.align) continue;
      const imp = importanceOf(stats[l], l, method.importance, weights).channels;
      const n = Math.min(kept.length - method.align, Math.max(method.align, Math.floor(gap / step) * method.align));
      if (n * channelParams(d) > gap + method.tolerance * total) continue;
      const drop = [...kept].sort((a, b) => imp[a] - imp[b] || a - b).slice(0, n);
      st.keptChannels[l] = kept.filter((j) => !drop.includes(j));
      filled += n;
      gap = targetRemoved - removed();
      progressed = true;
    }
    if (!progressed) break;
  }
  return filled;
}

function toBlocks(layers: Analysis['model']['layers'], st: State, compensate: boolean): BlockPlan[] {
  return layers.map((_, l) => {
    const ar = st.keptHeads[l].length === 0;
    const mr = st.keptChannels[l].length === 0;
    return {
      index: l,
      removed: ar && mr,
      attention: { removed: ar, keptKvHeads: ar ? [] : st.keptKv[l], keptHeads: st.keptHeads[l] },
      mlp: { removed: mr, keptChannels: st.keptChannels[l] },
      compensate,
      ...(st.groups?.[l] ? { groups: st.groups[l] } : {}),
    };
  });
}

/** ShortGPT block drop (lowest block influence 1 − cos first) or attention-layer drop (lowest TE_attn first). */
function dropBaseline(
  name: 'block-drop' | 'layer-drop',
  stats: BlockStats[],
  layers: Analysis['model']['layers'],
  st: State,
  d: number,
  hd: number,
  targetRemoved: number,
  notes: string[],
) {
  const order =
    name === 'block-drop'
      ? layers.map((_, l) => l).sort((a, b) => 1 - stats[a].cosine - (1 - stats[b].cosine) || a - b)
      : layers.map((_, l) => l).filter((l) => layers[l].nHead > 0).sort((a, b) => stats[a].teAttn - stats[b].teAttn || a - b);
  let removed = 0;
  const chosen: number[] = [];
  for (const l of order) {
    const c = name === 'block-drop' ? blockParams(d, hd, layers[l]) : attentionParams(d, hd, layers[l].nHead, layers[l].nKvHead);
    // take the next unit when that lands closer to the target than stopping here
    if (Math.abs(removed + c - targetRemoved) > Math.abs(removed - targetRemoved)) break;
    removed += c;
    chosen.push(l);
  }
  for (const l of chosen) {
    st.keptHeads[l] = [];
    st.keptKv[l] = [];
    if (name === 'block-drop') st.keptChannels[l] = [];
  }
  notes.push(`${name}: removed ${name === 'block-drop' ? 'blocks' : 'attention layers'} ${chosen.join(', ') || 'none'}`);
}

/** One shape for every block (a stock Llama config): the same MLP width everywhere, chosen per block by importance. */
function uniformShape(
  stats: BlockStats[],
  layers: Analysis['model']['layers'],
  st: State,
  d: number,
  hd: number,
  p: number,
  total: number,
  method: PlanMethod,
  weights: WeightMagnitudes | undefined,
  notes: string[],
) {
  const ffn = layers[0].ffn;
  if (layers.some((s) => s.ffn !== ffn || s.nHead !== layers[0].nHead || s.nKvHead !== layers[0].nKvHead))
    throw new EntropruneError('EP_INVALID_ARGUMENT', '--uniform needs a model whose blocks all have the same shape');
  const dropPerBlock = (p * total) / layers.length / channelParams(d);
  const keep = Math.max(method.align, Math.round((ffn - dropPerBlock) / method.align) * method.align);
  if (keep >= ffn || keep <= 0) throw new EntropruneError('EP_INVALID_ARGUMENT', `--uniform cannot reach ratio ${p} with MLP width ${ffn} and align ${method.align}`);
  layers.forEach((_, l) => {
    const imp = importanceOf(stats[l], l, method.importance, weights).channels;
    st.keptChannels[l] = range(ffn).sort((a, b) => imp[b] - imp[a] || a - b).slice(0, keep).sort((a, b) => a - b);
  });
  notes.push(`uniform shape: every block keeps ${keep} of ${ffn} MLP channels and all heads`);
}
