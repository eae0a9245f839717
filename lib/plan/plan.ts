// The pruning plan: the typed, versioned, human-editable hand-off from the planner to `apply`.
// Validated on load by a JSON schema (shape) and by semantic checks (indices in range, GQA consistency,
// the plan matches the model it is applied to), each error naming the field.

import Ajv from 'ajv';

import { EntropruneError } from '../util/errors';
import { writeFileAtomic } from '../util/atomic';
import { readJsonFile } from '../util/json-file';
import { layerShapesSchema } from '../util/json-schema';
import { countedParams, LayerShapeCount } from './accounting';
import type { UnitRanking } from '../measure/unit-order';

export const PLAN_FORMAT = 'entroprune.plan';
export const PLAN_VERSION = 1;

export interface BlockPlan {
  index: number;
  /** the whole block goes (attention and MLP) */
  removed: boolean;
  attention: {
    removed: boolean;
    /** kept KV heads (groups), ascending original indices */
    keptKvHeads: number[];
    /** kept query heads, ascending original indices; every kept KV group keeps the same number */
    keptHeads: number[];
  };
  mlp: { removed: boolean; keptChannels: number[] };
  /** fold the removed units' mean contribution into biases (docs/METHOD.md section 5) */
  compensate: boolean;
  /**
   * the K-means groups the paper allocation formed (docs/METHOD.md §4b), by unit: per KV group and per MLP
   * channel, 0 for the group with the lowest centroid; the report draws these. Absent for the marginal
   * allocation, which forms no groups.
   */
  groups?: { kvHeads?: number[]; channels?: number[] };
  /** informational: planned block ratio and the importances the planner saw */
  plannedRatio?: number;
  te?: number;
}

export interface PlanMethod {
  /** 'entropy': entroprune's method (docs/METHOD.md); the others are baselines: every block at the ratio
   * ('uniform'), whole blocks by ShortGPT's 1 − cos ('block-drop'), whole attention layers ('layer-drop') */
  name: 'entropy' | 'uniform' | 'block-drop' | 'layer-drop';
  /** how units (KV groups, channels) are ranked inside a sublayer: their activations' information entropy
   * (default, the paper's), the variance they add to the residual stream, activation energy, weight magnitude */
  importance: UnitRanking;
  /** the paper allocation's search over whole blocks and layers for the remaining ratio */
  search: 'dfs' | 'greedy';
  /** per-block ratios from the model ('dynamic') or the target ratio in every block (the paper's ablation) */
  ratios: 'dynamic' | 'uniform';
  /** fold the removed units' calibration means into the output biases */
  compensation: boolean;
  /** which units may go: heads, channels and whole layers ('multi'), only heads and channels, only whole layers */
  granularity: 'multi' | 'width-only' | 'depth-only';
  /** K-means clusters per layer in the paper allocation (default by ratio: 3 at 30 %, 4 at 40 %, 6 at 50 %) */
  k?: number;
  /** β of the paper allocation's block weights TE^−β */
  temperature: number;
  /** no block loses more than this share in the paper allocation */
  maxBlockRatio: number;
  /** the search's window above the target ratio */
  tolerance: number;
  /** kept MLP widths rounded to multiples of this (256 suits llama.cpp's K-quants) */
  align: number;
  /** kept query-head counts rounded to multiples of this */
  alignHeads: number;
  /** one shape for every block (a stock Llama config, which Hugging Face output needs) */
  uniformShape: boolean;
  /**
   * How the budget is shared out (method 'entropy'): 'marginal' (ours, default) removes units across all
   * blocks in ascending damage per parameter; 'paper' is docs/METHOD.md's water-filled block ratios, attention/MLP
   * split ∝ 1/TE, K-means clusters and the DFS over whole layers.
   */
  allocation?: 'marginal' | 'paper';
  /** the block / sublayer importance the planner read: measured damage, stream-targeted TE or output-targeted TE */
  estimator?: 'measured' | 'stream-te' | 'output-te';
  /**
   * γ of the marginal allocation's damage model S·F^γ for a removed share F of a sublayer: a number for every
   * sublayer (1: linear, the default), or 'measured': each sublayer's own, fitted through its measured half cut
   * (docs/METHOD.md §4; needs an analysis made with half cuts and the measured estimator)
   */
  curvature?: number | 'measured';
  /**
   * What a partial cut of a sublayer is predicted to cost, as shares of the sublayer's whole-removal damage
   * (docs/METHOD.md §4a): 'refit' (default where the analysis has the refit-aware damage of the plan's ranking):
   * what the least-squares compensation of the kept units leaves of the removed units' output; 'variance': the
   * removed units' share of the sublayer's variance (what the bias compensation leaves).
   */
  cutDamage?: 'refit' | 'variance';
}

export interface RefinementCandidate {
  /** 'planned' (the damage model as measured on the intact model), 'secant N' / 'secant N, half step', 'uniform ratios' */
  name: string;
  nll: number;
  kl: number;
  ratio: number;
}

/** What the refinement did, recorded in the plan it returns. */
export interface PlanRefinement {
  /** the unpruned model's NLL on the same windows */
  intactNll: number;
  /** every plan measured, in order */
  candidates: RefinementCandidate[];
  /** what the candidates were judged by: KL from the unpruned model (the default) or NLL, on the windows */
  criterion: 'kl' | 'nll';
  /** the candidate returned: the lowest of them by the criterion */
  chosen: string;
  /** the damage model's correction behind the chosen plan (1 where nothing was corrected) */
  damageScale: { attn: number[]; mlp: number[] };
}

export interface PruningPlan {
  format: typeof PLAN_FORMAT;
  version: typeof PLAN_VERSION;
  createdBy: string;
  model: { identity: string; dim: number; headDim: number; vocab: number; tiedOutput: boolean; layers: LayerShapeCount[] };
  analysis?: string;
  target: { ratio: number; counting: 'block-linear' };
  achieved: { ratio: number; keptParams: number; originalParams: number; wholeModelRatio: number };
  method: PlanMethod;
  notes: string[];
  blocks: BlockPlan[];
  /** the measured refinement (lib/plan/refine.ts), when the plan came from one */
  refinement?: PlanRefinement;
}

const intArray = { type: 'array', items: { type: 'integer', minimum: 0 } } as const;

export const planSchema = {
  $id: 'https://entroprune.dev/schemas/plan-1.json',
  type: 'object',
  required: ['format', 'version', 'model', 'target', 'method', 'blocks'],
  properties: {
    format: { const: PLAN_FORMAT },
    version: { const: PLAN_VERSION },
    model: {
      type: 'object',
      required: ['identity', 'dim', 'headDim', 'layers'],
      properties: {
        identity: { type: 'string' },
        dim: { type: 'integer', minimum: 1 },
        headDim: { type: 'integer', minimum: 1 },
        layers: layerShapesSchema,
      },
    },
    target: {
      type: 'object',
      required: ['ratio'],
      properties: { ratio: { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 1 }, counting: { const: 'block-linear' } },
    },
    blocks: {
      type: 'array',
      items: {
        type: 'object',
        required: ['index', 'removed', 'attention', 'mlp', 'compensate'],
        properties: {
          index: { type: 'integer', minimum: 0 },
          removed: { type: 'boolean' },
          compensate: { type: 'boolean' },
          groups: { type: 'object', properties: { kvHeads: intArray, channels: intArray } },
          attention: {
            type: 'object',
            required: ['removed', 'keptKvHeads', 'keptHeads'],
            properties: { removed: { type: 'boolean' }, keptKvHeads: intArray, keptHeads: intArray },
          },
          mlp: { type: 'object', required: ['removed', 'keptChannels'], properties: { removed: { type: 'boolean' }, keptChannels: intArray } },
        },
      },
    },
  },
} as const;

const validateShape = new Ajv({ allErrors: false, strict: false }).compile(planSchema);

function fail(where: string, field: string, message: string): never {
  throw new EntropruneError('EP_FORMAT', `${where}: ${field}: ${message}`, where);
}

function strictlyAscending(xs: number[]): boolean {
  return xs.every((x, i) => i === 0 || x > xs[i - 1]);
}

/** Semantic checks: every impossible edit is caught here, with the field named. */
export function checkPlan(plan: PruningPlan, where = 'plan'): void {
  const { layers } = plan.model;
  if (plan.blocks.length !== layers.length) fail(where, 'blocks', `has ${plan.blocks.length} entries for a model of ${layers.length} blocks`);
  plan.blocks.forEach((b, l) => {
    const f = `blocks[${l}]`;
    const s = layers[l];
    if (b.index !== l) fail(where, `${f}.index`, `is ${b.index}, expected ${l}`);
    const a = b.attention;
    // Sizes first, and every check below linear: a plan that claims more units than its layer is refused
    // before its lists are walked.
    if (a.keptKvHeads.length > s.nKvHead) fail(where, `${f}.attention.keptKvHeads`, `keeps ${a.keptKvHeads.length} KV heads of a layer that has ${s.nKvHead}`);
    if (a.keptHeads.length > s.nHead) fail(where, `${f}.attention.keptHeads`, `keeps ${a.keptHeads.length} query heads of a layer that has ${s.nHead}`);
    if (b.mlp.keptChannels.length > s.ffn) fail(where, `${f}.mlp.keptChannels`, `keeps ${b.mlp.keptChannels.length} channels of a layer that has ${s.ffn}`);
    if (b.groups?.kvHeads && b.groups.kvHeads.length !== s.nKvHead) fail(where, `${f}.groups.kvHeads`, `has ${b.groups.kvHeads.length} entries for ${s.nKvHead} KV heads`);
    if (b.groups?.channels && b.groups.channels.length !== s.ffn) fail(where, `${f}.groups.channels`, `has ${b.groups.channels.length} entries for ${s.ffn} channels`);
    if (!strictlyAscending(a.keptKvHeads)) fail(where, `${f}.attention.keptKvHeads`, 'must be strictly ascending (no duplicates)');
    if (!strictlyAscending(a.keptHeads)) fail(where, `${f}.attention.keptHeads`, 'must be strictly ascending (no duplicates)');
    for (const g of a.keptKvHeads) if (g >= s.nKvHead) fail(where, `${f}.attention.keptKvHeads`, `KV head ${g} out of range (the layer has ${s.nKvHead})`);
    for (const h of a.keptHeads) if (h >= s.nHead) fail(where, `${f}.attention.keptHeads`, `query head ${h} out of range (the layer has ${s.nHead})`);
    const group = s.nKvHead > 0 ? s.nHead / s.nKvHead : 0;
    const perGroup = new Map<number, number>();
    const keptKv = new Set(a.keptKvHeads);
    for (const h of a.keptHeads) {
      const g = Math.floor(h / group);
      if (!keptKv.has(g)) fail(where, `${f}.attention.keptHeads`, `query head ${h} is kept but its KV group ${g} was removed`);
      perGroup.set(g, (perGroup.get(g) ?? 0) + 1);
    }
    for (const g of a.keptKvHeads) if (!perGroup.has(g)) fail(where, `${f}.attention.keptKvHeads`, `KV group ${g} is kept without any of its query heads`);
    const counts = [...perGroup.values()];
    if (counts.some((c) => c !== counts[0]))
      fail(where, `${f}.attention.keptHeads`, `kept KV groups keep different numbers of query heads (${counts.join(', ')}); runtimes need n_head to be a multiple of n_head_kv`);
    if (a.removed !== (a.keptHeads.length === 0)) fail(where, `${f}.attention.removed`, `is ${a.removed} but ${a.keptHeads.length} query heads are kept`);
    const m = b.mlp;
    if (!strictlyAscending(m.keptChannels)) fail(where, `${f}.mlp.keptChannels`, 'must be strictly ascending (no duplicates)');
    for (const c of m.keptChannels) if (c >= s.ffn) fail(where, `${f}.mlp.keptChannels`, `channel ${c} out of range (the layer has ${s.ffn})`);
    if (m.removed !== (m.keptChannels.length === 0)) fail(where, `${f}.mlp.removed`, `is ${m.removed} but ${m.keptChannels.length} channels are kept`);
    if (b.removed !== (a.removed && m.removed)) fail(where, `${f}.removed`, `is ${b.removed} but attention.removed=${a.removed}, mlp.removed=${m.removed}`);
  });
}

export function validatePlan(json: unknown, where = 'plan'): PruningPlan {
  if (!validateShape(json)) {
    const e = validateShape.errors?.[0];
    fail(where, e?.instancePath || '(root)', e?.message ?? 'invalid');
  }
  const plan = json as PruningPlan;
  checkPlan(plan, where);
  return plan;
}

export function readPlan(file: string): PruningPlan {
  return validatePlan(readJsonFile(file, 'plan JSON'), file);
}

export function writePlan(file: string, plan: PruningPlan): void {
  checkPlan(plan, file);
  writeFileAtomic(file, JSON.stringify(plan, null, 1) + '\n');
}

/**
 * Where each block's compensation constants go (docs/METHOD.md section 5), as bias tensors the runtimes already
 * have: removed heads → own attn_output.bias; removed channels → own ffn_down.bias; a removed MLP → own
 * attn_output.bias when attention stays; a removed attention layer or block → the nearest earlier block's
 * ffn_down.bias (or its attn_output.bias when that block has no MLP), or the token embeddings for none.
 * Returns, per block, whether it ends up with each bias.
 */
export function compensationBiases(plan: Pick<PruningPlan, 'model' | 'blocks'>): { attnOut: boolean; ffnDown: boolean }[] {
  const layers = plan.model.layers;
  const out = plan.blocks.map((_, l) => ({ attnOut: !!layers[l].attnOutBias, ffnDown: !!layers[l].ffnDownBias }));
  const foldIntoEarlier = (l: number) => {
    for (let k = l - 1; k >= 0; k--) {
      const b = plan.blocks[k];
      if (b.removed) continue;
      if (!b.mlp.removed) out[k].ffnDown = true;
      else out[k].attnOut = true;
      return;
    }
  };
  plan.blocks.forEach((b, l) => {
    if (!b.compensate) return;
    const s = layers[l];
    if (b.removed) {
      if (s.nHead > 0 || s.ffn > 0) foldIntoEarlier(l);
      return;
    }
    if (!b.attention.removed && b.attention.keptHeads.length < s.nHead) out[l].attnOut = true;
    if (!b.mlp.removed && b.mlp.keptChannels.length < s.ffn) out[l].ffnDown = true;
    if (b.mlp.removed && s.ffn > 0) {
      if (!b.attention.removed) out[l].attnOut = true;
      else foldIntoEarlier(l);
    }
    if (b.attention.removed && s.nHead > 0) foldIntoEarlier(l);
  });
  return out;
}

/** The per-block shapes a plan leaves, with the biases compensation adds. */
export function prunedShapes(plan: Pick<PruningPlan, 'model' | 'blocks'>): LayerShapeCount[] {
  const biases = compensationBiases(plan);
  return plan.blocks.map((b, l) => ({
    nHead: b.attention.keptHeads.length,
    nKvHead: b.attention.keptKvHeads.length,
    ffn: b.mlp.keptChannels.length,
    attnOutBias: biases[l].attnOut,
    ffnDownBias: biases[l].ffnDown,
  }));
}

export function achievedRatio(plan: Pick<PruningPlan, 'model' | 'blocks'>): { ratio: number; kept: number; original: number } {
  const { dim, headDim, layers } = plan.model;
  const original = countedParams(dim, headDim, layers);
  const kept = countedParams(dim, headDim, prunedShapes(plan));
  return { ratio: 1 - kept / original, kept, original };
}
