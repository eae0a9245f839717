// The analysis file: the typed, versioned hand-off from the measure stage to the planner.
//   analysis.json        model identity, calibration settings, per-block transfer entropies, per-unit
//                        entropies and energies (human-readable, JSON-schema validated on load)
//   analysis.means.bin   float64 little-endian means for bias compensation, referenced from the JSON
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import Ajv from 'ajv';

import { EntropruneError } from '../util/errors';
import { writeFileAtomic } from '../util/atomic';
import { readJsonFile } from '../util/json-file';
import type { CovarianceProducts } from '../native';
import type { CalibrationSet } from './calibration';
import { layerShapesSchema } from '../util/json-schema';

export const ANALYSIS_FORMAT = 'entroprune.analysis';
export const ANALYSIS_VERSION = 1;

export type MeanName = 'headMean' | 'channelMean' | 'attnOutMean' | 'mlpOutMean';

export interface BlockStats {
  index: number;
  /** TE_l = I(y; Δ_l | h_{l−1}) in nats */
  te: number;
  teAttn: number;
  teMlp: number;
  /** mean cos(h_{l−1}, h_l); ShortGPT's block influence is 1 − cosine */
  cosine: number;
  maxRidgeEffect: number;
  /** relative ridge the TE terms used, when it had to be raised above calibration.ridge (singular joint covariance) */
  ridge?: number;
  /** stream-targeted TE (docs/METHOD.md §2): I(h_{l−1} + x + ε; x | h_{l−1}) for x = Δ_l, a_l, m_l; absent in older files */
  teStream?: number;
  teStreamAttn?: number;
  teStreamMlp?: number;
  attention: {
    nHead: number;
    nKvHead: number;
    headEntropy: number[];
    headEnergy: number[];
    /** tr(W_o,hᵀW_o,h Σ_h) */
    headContribution?: number[];
    /** per unit ranking, per KV group: its refit step when groups go in that ranking's order (docs/METHOD.md §4a); absent in older files */
    refitDamage?: RefitSteps;
  } | null;
  mlp: {
    width: number;
    channelEntropy: number[];
    channelEnergy: number[];
    /** Var(x_j)·‖W_down[:,j]‖² */
    channelContribution?: number[];
    /** per unit ranking, per channel: its refit step when channels go in that ranking's order (docs/METHOD.md §4a); absent in older files */
    refitDamage?: RefitSteps;
  } | null;
}

/**
 * The refit-aware damage of a sublayer (docs/METHOD.md §4a), by unit ranking: each unit's step — the output
 * variance its removal adds to what least-squares compensation cannot restore — when the units go in that
 * ranking's order (lib/measure/unit-order.ts), by unit index. Keys: 'entropy', 'contribution', 'activation', 'weight'.
 */
export type RefitSteps = Partial<Record<'entropy' | 'contribution' | 'activation' | 'weight', number[]>>;

const LOG_2PIE = Math.log(2 * Math.PI * Math.E);

/**
 * Entropy power of a unit from its Gaussian entropy H (docs/METHOD.md §3): the variance of the Gaussian with
 * that entropy, per dimension times the dimensions — σ² for a channel (one dimension), d·det(Σ)^{1/d} for a
 * head of d = head_dim dimensions. Ordered as the entropies are, and additive, so shares can be taken.
 */
export function entropyPower(H: number, dims = 1): number {
  return dims * Math.exp((2 * H) / dims - LOG_2PIE);
}

/** Which block / sublayer importance estimate the planner reads (docs/METHOD.md §2). */
export type Estimator = 'measured' | 'stream-te' | 'output-te';

/** One figure per block for removing its whole block, its attention, its MLP; null where the block has no such part. */
export interface PartFigures {
  block: (number | null)[];
  attn: (number | null)[];
  mlp: (number | null)[];
}

/** Measured sensitivities (lib/measure/sensitivity.ts): loss increase in nats from removing each part alone. */
export interface MeasuredSensitivity extends PartFigures {
  windows: number;
  seqLen: number;
  seed: number;
  /** removed parts replaced by their calibration means (as apply folds them) */
  compensated: boolean;
  baseNll: number;
  /* block / attn / mlp (PartFigures): increase of the windows' next-token loss (nats) */
  /**
   * mean KL(p_model ‖ p_removed) of the next-token distribution (nats): what the planner's "measured"
   * estimator reads (≥ 0 on any text; the loss increase turns negative on text unlike the model's own)
   */
  kl: PartFigures;
  /** Spearman ρ of each estimator against the KL figures: over blocks, and over attention and MLP layers jointly */
  agreement: Partial<Record<Exclude<Estimator, 'measured'>, { blocks: number; sublayers: number }>>;
  /** the same against the loss increase */
  agreementWithLoss: Partial<Record<Exclude<Estimator, 'measured'>, { blocks: number; sublayers: number }>>;
  /** the text the windows came from, when not the calibration text */
  file?: string;
  /** the same measurement with removed parts replaced by nothing (asked for with `sensitivity --plain`) */
  plain?: PartFigures & { kl: PartFigures };
  /** partial cuts measured beside the whole removals: how damage grows with the share removed (docs/METHOD.md §4) */
  partial?: PartialCutFigures;
}

/**
 * Each sublayer with the lower-ranked half of its units removed (KV groups with their query heads; MLP
 * channels; ranked by the entropy power of their activations, as the default plan ranks them) and
 * compensated, measured like the whole removals. share: the removed units' part of the sublayer's summed
 * entropy power (the F of the planner's damage model); null where the sublayer has no such cut.
 */
export interface PartialCutFigures {
  attnShare: (number | null)[];
  mlpShare: (number | null)[];
  /** mean KL of the next-token distribution (nats) */
  kl: { attn: (number | null)[]; mlp: (number | null)[] };
  /** mean loss increase (nats) */
  nll: { attn: (number | null)[]; mlp: (number | null)[] };
}

export interface Analysis {
  format: typeof ANALYSIS_FORMAT;
  version: typeof ANALYSIS_VERSION;
  createdBy: string;
  model: {
    path: string;
    format: string;
    arch: string;
    dim: number;
    vocab: number;
    headDim: number;
    layers: { nHead: number; nKvHead: number; ffn: number }[];
    /** sha256 over the configuration and the tensor directory (names, dtypes, shapes, offsets, file sizes) */
    identity: string;
    /** the output head shares the token embeddings (whole-model ratios count it once); absent in older files */
    tiedOutput?: boolean;
  };
  calibration: Pick<CalibrationSet, 'file' | 'kind' | 'streamTokens' | 'samples' | 'seqLen' | 'seed'> & {
    /** tokens actually scored (samples × seqLen) */
    tokens: number;
    projected: boolean;
    jointDim: number;
    maxDim: number;
    projDim: number;
    ridge: number;
    /** cross-product precision of the joint moments; absent in files from before it was an option (float64) */
    products?: Exclude<CovarianceProducts, 'auto'>;
  };
  blocks: BlockStats[];
  /** measured sensitivities, when analyze measured them (the default) */
  sensitivity?: MeasuredSensitivity;
  means: { file: string; sha256: string; entries: { block: number; name: MeanName; offset: number; length: number }[] };
}

const figures = { type: 'array', items: { type: ['number', 'null'] } } as const;
const partFiguresSchema = { type: 'object', required: ['block', 'attn', 'mlp'], properties: { block: figures, attn: figures, mlp: figures } } as const;

export const analysisSchema = {
  $id: 'https://entroprune.dev/schemas/analysis-1.json',
  type: 'object',
  required: ['format', 'version', 'createdBy', 'model', 'calibration', 'blocks', 'means'],
  properties: {
    format: { const: ANALYSIS_FORMAT },
    version: { const: ANALYSIS_VERSION },
    createdBy: { type: 'string' },
    model: {
      type: 'object',
      required: ['path', 'format', 'arch', 'dim', 'vocab', 'headDim', 'layers', 'identity'],
      properties: {
        path: { type: 'string' },
        format: { type: 'string' },
        arch: { type: 'string' },
        dim: { type: 'integer', minimum: 1 },
        vocab: { type: 'integer', minimum: 1 },
        headDim: { type: 'integer', minimum: 1 },
        identity: { type: 'string', pattern: '^[0-9a-f]{64}$' },
        layers: layerShapesSchema,
      },
    },
    calibration: {
      type: 'object',
      required: ['file', 'kind', 'samples', 'seqLen', 'seed', 'tokens', 'projected', 'jointDim', 'ridge'],
      properties: {
        file: { type: 'string' },
        kind: { enum: ['text', 'jsonl', 'tokens'] },
        samples: { type: 'integer', minimum: 1 },
        seqLen: { type: 'integer', minimum: 2 },
        seed: { type: 'integer' },
        tokens: { type: 'integer', minimum: 1 },
        projected: { type: 'boolean' },
        jointDim: { type: 'integer', minimum: 1 },
        ridge: { type: 'number', minimum: 0 },
        products: { enum: ['float32', 'float64'] },
      },
    },
    blocks: {
      type: 'array',
      items: {
        type: 'object',
        required: ['index', 'te', 'teAttn', 'teMlp', 'cosine', 'attention', 'mlp'],
        properties: {
          index: { type: 'integer', minimum: 0 },
          te: { type: 'number' },
          teAttn: { type: 'number' },
          teMlp: { type: 'number' },
          cosine: { type: 'number' },
          ridge: { type: 'number', exclusiveMinimum: 0 },
          attention: {
            anyOf: [
              { type: 'null' },
              {
                type: 'object',
                required: ['nHead', 'nKvHead', 'headEntropy', 'headEnergy'],
                properties: { headEntropy: { type: 'array', items: { type: 'number' } }, headEnergy: { type: 'array', items: { type: 'number' } } },
              },
            ],
          },
          mlp: {
            anyOf: [
              { type: 'null' },
              {
                type: 'object',
                required: ['width', 'channelEntropy', 'channelEnergy'],
                properties: { channelEntropy: { type: 'array', items: { type: 'number' } }, channelEnergy: { type: 'array', items: { type: 'number' } } },
              },
            ],
          },
        },
      },
    },
    sensitivity: {
      type: 'object',
      required: ['windows', 'seqLen', 'compensated', 'baseNll', 'block', 'attn', 'mlp', 'kl'],
      properties: {
        windows: { type: 'integer', minimum: 1 },
        seqLen: { type: 'integer', minimum: 2 },
        ...partFiguresSchema.properties,
        kl: partFiguresSchema,
        partial: {
          type: 'object',
          required: ['attnShare', 'mlpShare', 'kl', 'nll'],
          properties: {
            attnShare: figures,
            mlpShare: figures,
            kl: { type: 'object', required: ['attn', 'mlp'], properties: { attn: figures, mlp: figures } },
            nll: { type: 'object', required: ['attn', 'mlp'], properties: { attn: figures, mlp: figures } },
          },
        },
      },
    },
    means: {
      type: 'object',
      required: ['file', 'sha256', 'entries'],
      properties: {
        file: { type: 'string' },
        sha256: { type: 'string' },
        entries: {
          type: 'array',
          items: {
            type: 'object',
            required: ['block', 'name', 'offset', 'length'],
            properties: { name: { enum: ['headMean', 'channelMean', 'attnOutMean', 'mlpOutMean'] }, offset: { type: 'integer', minimum: 0 }, length: { type: 'integer', minimum: 0 } },
          },
        },
      },
    },
  },
} as const;

const validate = new Ajv({ allErrors: true, strict: false }).compile(analysisSchema);

/**
 * Write analysis.json and its means side file as one set. The means file is named by its content
 * (`<name>.means-<sha256 prefix>.bin`) and written first, each atomically (temporary name, then rename); the
 * JSON that references it replaces the old JSON last, and only then is the old pair's means file removed.
 * A run that fails anywhere (a full disk) leaves the previous pair intact and consistent.
 */
export function writeAnalysis(file: string, analysis: Omit<Analysis, 'means'>, means: { block: number; name: MeanName; values: Float64Array }[]): Analysis {
  const entries: Analysis['means']['entries'] = [];
  let offset = 0;
  for (const m of means) {
    entries.push({ block: m.block, name: m.name, offset, length: m.values.length });
    offset += m.values.length;
  }
  const buf = Buffer.alloc(offset * 8);
  for (let i = 0, o = 0; i < means.length; i++) for (const v of means[i].values) buf.writeDoubleLE(v, 8 * o++);
  const sha = createHash('sha256').update(buf).digest('hex');
  const sideName = `${path.basename(file).replace(/\.json$/i, '')}.means-${sha.slice(0, 16)}.bin`;
  const dir = path.dirname(file);
  let previous: string | undefined;
  try {
    previous = (JSON.parse(fs.readFileSync(file, 'utf8')) as Analysis).means?.file;
  } catch {
    /* no previous analysis, or not one of ours */
  }
  const full: Analysis = { ...analysis, means: { file: sideName, sha256: sha, entries } };
  writeFileAtomic(path.join(dir, sideName), buf);
  try {
    writeFileAtomic(file, JSON.stringify(full, null, 1) + '\n');
  } catch (e) {
    if (previous !== sideName) fs.rmSync(path.join(dir, sideName), { force: true });
    throw e;
  }
  if (previous && previous !== sideName && previous === path.basename(previous) && /\.means(-[0-9a-f]+)?\.bin$/.test(previous))
    fs.rmSync(path.join(dir, previous), { force: true });
  return full;
}

export interface LoadedAnalysis {
  analysis: Analysis;
  mean(block: number, name: MeanName): Float64Array | undefined;
}

export function readAnalysis(file: string): LoadedAnalysis {
  const json = readJsonFile(file, 'analysis JSON');
  if (!validate(json)) {
    const first = validate.errors?.[0];
    throw new EntropruneError('EP_FORMAT', `${file}: not a valid analysis file: ${first?.instancePath || '(root)'} ${first?.message ?? ''}`.trim(), file);
  }
  const analysis = json as unknown as Analysis;
  // The means file must sit beside the analysis (a bare file name, no links out, a regular file) and have
  // exactly the size its entries declare, checked before anything is read.
  const name = analysis.means.file;
  if (name !== path.basename(name) || name === '.' || name === '..' || name.includes('\\'))
    throw new EntropruneError('EP_FORMAT', `${file}: means.file must name a file beside the analysis (got ${JSON.stringify(name)})`, file);
  const side = path.join(path.dirname(file), name);
  let st: fs.Stats;
  try {
    st = fs.lstatSync(side);
  } catch {
    throw new EntropruneError('EP_IO', `${side}: the means file referenced by ${file} is missing`, side);
  }
  if (!st.isFile()) throw new EntropruneError('EP_FORMAT', `${side}: the means file referenced by ${file} is not a regular file (links and devices are refused)`, side);
  const declared = analysis.means.entries.reduce((m, e) => Math.max(m, e.offset + e.length), 0) * 8;
  if (st.size !== declared)
    throw new EntropruneError('EP_FORMAT', `${side}: ${st.size} bytes, but ${file} declares ${declared} (files from different runs?)`, side);
  const buf = fs.readFileSync(side);
  if (createHash('sha256').update(buf).digest('hex') !== analysis.means.sha256)
    throw new EntropruneError('EP_FORMAT', `${side}: checksum does not match ${file} (files from different runs?)`, side);
  const data = new Float64Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length));
  // Means are folded into biases: one NaN would write a NaN model.
  for (const e of analysis.means.entries)
    for (let i = e.offset; i < e.offset + e.length; i++)
      if (!Number.isFinite(data[i])) throw new EntropruneError('EP_FORMAT', `${side}: ${e.name} of block ${e.block} holds ${data[i]} at element ${i - e.offset}`, side);
  return {
    analysis,
    mean(block, name) {
      const e = analysis.means.entries.find((x) => x.block === block && x.name === name);
      return e ? data.subarray(e.offset, e.offset + e.length) : undefined;
    },
  };
}
