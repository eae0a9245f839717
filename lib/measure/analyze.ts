// Measure stage: calibration windows through the forward pass with activation capture, then the
// estimators (native), packaged as a typed Analysis (docs/METHOD.md sections 1–3).
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';

import type { Model } from '../load/model';
import type { CovarianceProducts } from '../native';
import { tokenizerFor, type Tokenizer } from '../load/tokenizer';
import { captureBytes, ensureFits, forwardBytes, layerInputPasses, streamedStateBytes } from '../load/memory';
import { awaitNativeJob } from '../util/native-job';
import type { ProgressEvent } from '../util/progress';
import { VERSION } from '../version';
import { ANALYSIS_FORMAT, ANALYSIS_VERSION, Analysis, type BlockStats, MeanName, MeasuredSensitivity, writeAnalysis } from './analysis';
import { removalOrders, UNIT_RANKINGS, type UnitRanking } from './unit-order';
import { agreement, halfCuts, measureSensitivity } from './sensitivity';
import { EntropruneError } from '../util/errors';
import { assertOutputSparesInputs } from '../util/file-identity';
import { withOutputLock } from '../util/output-lock';
import { calibrationStreamAsync, sampleCalibration, type CalibrationWindows } from './calibration';

export interface AnalyzeOptions {
  /** Calibration file: text, JSONL (`text` field) or pre-tokenized (.json array, .tokens/.i32 int32). */
  calib: string;
  /** the tokenizer for a text calibration file (default: the model's own, `tokenizerFor(model)`) */
  tokenizer?: Tokenizer;
  /** calibration windows drawn from the text (default 128) */
  samples?: number;
  /** tokens per window (default min(2048, the model's context)) */
  seqLen?: number;
  /** seed of the window draw, the random projection and the sensitivity windows (default 0) */
  seed?: number;
  /** windows per forward call (default: as many as fit a memory budget) */
  batchSeqs?: number;
  /** hidden states wider than this are projected to `projDim` dimensions for the joint moments (default 1024) */
  maxDim?: number;
  /** dimension of that random projection (default 512) */
  projDim?: number;
  /** ridge added to covariance diagonals, relative to their mean variance (default 1e-6; at most 1e-2) */
  ridge?: number;
  /** joint covariance cross-products: 'auto' (default: float64 up to 1024 wide, float32 above), 'float32' or 'float64' */
  products?: CovarianceProducts;
  /**
   * Block-major layer streaming: every calibration window through block l before block l+1, in two passes
   * (final hidden states first, then the capture), with the hidden states of all windows kept in memory
   * ((d + r) floats per token). Bit-identical to the default order; each block's weights are read once per
   * pass instead of once per batch. Default: on when the model was loaded with `streamLayers`.
   */
  stream?: boolean;
  /** run the calibration forward pass and the measured sensitivities on these CUDA devices, the windows
   * split between them (block by block: implies `stream`) */
  cudaDevices?: number[];
  /** the GPU's matrix-product precision (default bf16: f16 activations can overflow) */
  precision?: 'bf16' | 'f16' | 'f32';
  /**
   * Measure each block's, attention layer's and MLP layer's removal damage on windows of the calibration
   * text drawn with a separate seed (default on: `windows` 16, `seqLen` min(512, the calibration window)).
   * It is the ground truth the estimators are scored against and the planner's default importance. It costs
   * about 1.5·L² block passes over those windows, on the CPU or on `cudaDevices`; false skips it (the planner then uses the
   * stream-targeted TE).
   */
  sensitivity?:
    | boolean
    | {
        windows?: number;
        seqLen?: number;
        /** draw the windows from this text instead */
        text?: string;
        /** also measure plain removal (no compensation) */
        plain?: boolean;
        /** also measure each sublayer with the lower-ranked half of its units cut (the planner's curvature "measured") */
        halfCuts?: boolean;
      };
  /**
   * Record the refit-aware damage of partial cuts (docs/METHOD.md §4a; default on): one more pass over the
   * calibration windows (more for models whose layer covariances exceed 4 GiB together) capturing every
   * o_proj and down_proj input covariance, and per sublayer one Cholesky factorisation. The planner's
   * default damage model for least-squares compensation reads it; false skips it (the planner then shares a
   * sublayer's damage by the units' variances). `rankings`: the unit rankings to record it for (default
   * ['contribution', 'entropy']: the default plan's and the paper's; one capture serves all, each adds one factorisation per sublayer; 'weight'
   * reads the model's weight magnitudes).
   */
  refitDamage?: boolean | { rankings?: UnitRanking[] };
  /** progress of the refit-damage pass, after the calibration */
  onRefitDamageProgress?: (p: ProgressEvent) => void;
  /** progress of the sensitivity step, after the calibration */
  onSensitivityProgress?: (p: ProgressEvent) => void;
  /** tokenizing the calibration text: {done: 0, total: 1} when it starts, {1, 1} when it is done */
  onTokenizeProgress?: (p: ProgressEvent) => void;
  /** calibration batches through the model */
  onProgress?: (p: ProgressEvent) => void;
  /** cancels tokenization, calibration and the sensitivity measurement; rejects with EP_CANCELLED */
  signal?: AbortSignal;
}

export interface AnalyzeResult {
  /** everything `plan()` reads (the file form adds where its means were written) */
  analysis: Omit<Analysis, 'means'>;
  /** the calibration windows the statistics came from (what `applyPlan`'s least-squares compensation refits on) */
  calibrationWindows: CalibrationWindows;
  /** the windows the sensitivities were measured on (absent without them): what a plan's refinement measures plans on */
  sensitivityWindows?: CalibrationWindows;
  /** the calibration means per block (what `applyPlan` folds into biases) */
  means: { block: number; name: MeanName; values: Float64Array }[];
  /** one mean by block and name: with it the result is the `analysis` option of `applyPlan` */
  mean(block: number, name: MeanName): Float64Array | undefined;
  seconds: number;
  /** where the time went, in seconds (`stages.calibrate` includes `forward` and `capture` when block-major) */
  stages: AnalyzeStages;
  /** what ran the calibration blocks: "cpu" or the GPU (name, precision, GEMM backend) */
  device: string;
  /** the most GPU memory held (0 on the CPU) */
  peakDeviceBytes: number;
}

export interface AnalyzeStages {
  /** the calibration text into tokens */
  tokenize: number;
  /** the calibration windows through the model with the statistics capture */
  calibrate: number;
  /** block-major runs only: the pass without the capture (a plain forward) and the pass with it */
  forward?: number;
  capture?: number;
  /** transfer entropies, unit entropies and means from the captured statistics */
  estimators: number;
  /** the refit-aware damage of partial cuts (0 when skipped) */
  refitDamage: number;
  /** the measured sensitivities (0 when skipped) */
  sensitivity: number;
}

/**
 * Windows for the measured sensitivities: 16, fewer for deep models so that the measurement (about 1.5·L
 * block passes per token) costs no more forward work than the calibration pass itself — LLaMA-2-7B (32
 * blocks) with 128 × 2048 calibration tokens gets 10 windows of 512, a 80-block model 4. At least 4.
 */
export function defaultSensitivityWindows(blocks: number, calibrationTokens: number, seqLen: number): number {
  return Math.max(4, Math.min(16, Math.floor(calibrationTokens / (1.5 * blocks * seqLen))));
}

/**
 * The windows an analysis' sensitivities were measured on, drawn again (the same text, tokenizer, count, length
 * and seed give the same windows); undefined when the analysis has no sensitivities. Refuses when the text is gone.
 */
export async function analysisSensitivityWindows(model: Model, a: Pick<Analysis, 'calibration' | 'sensitivity'>, tokenizer?: Tokenizer, signal?: AbortSignal): Promise<CalibrationWindows | undefined> {
  const s = a.sensitivity;
  if (!s) return undefined;
  const file = s.file ?? a.calibration.file;
  if (!fs.existsSync(file)) throw new EntropruneError('EP_IO', `${file}: the analysis' sensitivities were measured on this text, and it is not there`, file);
  const kind = s.file ? undefined : a.calibration.kind;
  const { kind: k, stream } = await calibrationStreamAsync(file, kind === 'tokens' ? undefined : (tokenizer ?? tokenizerFor(model)), signal);
  const w = sampleCalibration(file, k, stream, model.info.vocab, { samples: s.windows, seqLen: s.seqLen, seed: s.seed });
  return { tokens: w.tokens, samples: w.samples, seqLen: s.seqLen };
}

export function modelIdentity(model: Model): string {
  const { path: _p, convertedBytes: _c, streamsLayers: _s, ...config } = model.info;
  return createHash('sha256').update(JSON.stringify(config)).update(model.handle.tensorDirectory()).digest('hex');
}

export async function analyze(model: Model, o: AnalyzeOptions): Promise<AnalyzeResult> {
  const info = model.info;
  const seqLen = o.seqLen ?? Math.min(2048, info.context > 0 ? info.context : 2048);
  // Memory first: refuse before the (possibly long) tokenization of the calibration text.
  const maxDim = o.maxDim ?? 1024;
  const projDim = o.projDim ?? 512;
  const ridge = o.ridge ?? 1e-6;
  // A ridge beyond 1e-2 of the mean variance decides the log-determinants instead of the data (1e300 gave
  // negative TE and planned on); the native side raises a singular block's ridge up to 1e-2 itself.
  if (!(Number.isFinite(ridge) && ridge >= 0 && ridge <= 1e-2)) throw new EntropruneError('EP_INVALID_ARGUMENT', `ridge must lie in [0, 0.01] (got ${ridge})`);
  const products = o.products ?? 'auto';
  const onGpu = (o.cudaDevices?.length ?? 0) > 0;
  const streamed = onGpu || (o.stream ?? info.streamsLayers);
  const batchSeqs = o.batchSeqs ?? Math.max(1, Math.floor(4096 / seqLen));
  const samples = o.samples ?? 128;
  const activations = forwardBytes(info, batchSeqs * seqLen); // one forward call's buffers
  ensureFits('analyze', info.path, {
    statistics: captureBytes(info, batchSeqs * seqLen, maxDim, projDim),
    activations,
    ...(streamed ? { 'hidden states': streamedStateBytes(info, samples * seqLen, maxDim, projDim) } : {}),
  }, streamed
    ? 'lower --samples or --seq-len (streaming keeps (d + r) floats per calibration token), --batch, --proj-dim or --max-dim, or drop --stream'
    : 'lower --batch (activations grow with the tokens per call), --proj-dim or --max-dim (statistics grow with the square of the projection), or use a machine with more memory');
  // The refit-aware damage's pass after the calibration (more passes where memory is short; the widest layer must fit).
  const refitWidths = info.layers.flatMap((s) => [s.nHead * info.headDim, s.ffn].filter((n) => n > 0));
  const refitPass = layerInputPasses(refitWidths, activations, info.dim);
  if (o.refitDamage !== false)
    ensureFits('the refit-aware damage', info.path, { 'covariance accumulators (the widest layer)': refitPass.widest, 'its factorisation': refitPass.solve, activations },
      'skip it (--no-refit-damage; the planner then shares damage by variance), or use a machine with more memory');
  // A text needs a tokenizer: the model's own unless one is given (pre-tokenized ids need none).
  const tokenizer = o.tokenizer ?? (/\.(json|tokens|i32)$/i.test(o.calib) ? undefined : tokenizerFor(model));
  o.onTokenizeProgress?.({ done: 0, total: 1 });
  const tokenizeStarted = process.hrtime.bigint();
  const { kind, stream } = await calibrationStreamAsync(o.calib, tokenizer, o.signal);
  const tokenizeSeconds = Number(process.hrtime.bigint() - tokenizeStarted) / 1e9;
  o.onTokenizeProgress?.({ done: 1, total: 1 });
  const calib = sampleCalibration(o.calib, kind, stream, info.vocab, { samples: o.samples, seqLen, seed: o.seed });
  const started = process.hrtime.bigint();
  const job = model.handle.analyze(
    {
      tokens: calib.tokens,
      nSeqs: calib.samples,
      seqLen,
      batchSeqs,
      maxDim,
      projDim,
      seed: calib.seed,
      ridge,
      products,
      stream: streamed,
      cudaDevices: o.cudaDevices,
      precision: o.precision,
    },
    (done, total) => o.onProgress?.({ done, total }),
  );
  let r: Awaited<typeof job.promise>;
  try {
    r = await awaitNativeJob(job, o.signal);
  } catch (e) {
    // A singular covariance even after the ridge means the calibration tokens carry too little variety
    // (a constant or repetitive stream): name the calibration file, not only the model.
    const msg = (e as Error).message ?? '';
    if (/not positive definite/.test(msg))
      throw new EntropruneError('EP_INVALID_ARGUMENT', `${o.calib}: the calibration tokens give degenerate activations (${msg.replace(/^.*?: /, '')}): use a longer, varied text`, o.calib);
    throw e;
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const means: AnalyzeResult['means'] = [];
  const blocks: BlockStats[] = r.blocks.map((b, index) => {
    const shape = info.layers[index];
    if (b.hasAttn) means.push({ block: index, name: 'headMean', values: b.headMean }, { block: index, name: 'attnOutMean', values: b.attnOutMean });
    if (b.hasMlp) means.push({ block: index, name: 'channelMean', values: b.channelMean }, { block: index, name: 'mlpOutMean', values: b.mlpOutMean });
    return {
      index,
      te: b.te,
      teAttn: b.teAttn,
      teMlp: b.teMlp,
      cosine: b.cosine,
      maxRidgeEffect: b.maxRidgeEffect,
      ...(b.ridge > ridge ? { ridge: b.ridge } : {}),
      teStream: b.teStream,
      teStreamAttn: b.teStreamAttn,
      teStreamMlp: b.teStreamMlp,
      attention: b.hasAttn
        ? {
            nHead: shape.nHead,
            nKvHead: shape.nKvHead,
            headEntropy: Array.from(b.headEntropy),
            headEnergy: Array.from(b.headEnergy),
            headContribution: Array.from(b.headContribution),
          }
        : null,
      mlp: b.hasMlp
        ? { width: shape.ffn, channelEntropy: Array.from(b.channelEntropy), channelEnergy: Array.from(b.channelEnergy), channelContribution: Array.from(b.channelContribution) }
        : null,
    };
  });
  const refitStarted = process.hrtime.bigint();
  if (o.refitDamage !== false) await recordRefitDamage(model, blocks, calib.tokens, calib.samples, seqLen, batchSeqs, refitPass.budget, o);
  const refitSeconds = o.refitDamage !== false ? Number(process.hrtime.bigint() - refitStarted) / 1e9 : 0;
  let sensitivity: MeasuredSensitivity | undefined;
  let sensitivityWindows: CalibrationWindows | undefined;
  const sensitivityStarted = process.hrtime.bigint();
  if (o.sensitivity !== false) {
    const so = typeof o.sensitivity === 'object' ? o.sensitivity : {};
    const sSeqLen = Math.max(2, Math.min(so.seqLen ?? 512, seqLen));
    const seed = (calib.seed + 0x5e45) % 2 ** 32; // a seed of its own: other windows than the calibration's
    const source = so.text ? await calibrationStreamAsync(so.text, tokenizer ?? tokenizerFor(model), o.signal) : { kind, stream };
    const windows = sampleCalibration(so.text ?? o.calib, source.kind, source.stream, info.vocab, { samples: so.windows ?? defaultSensitivityWindows(info.layers.length, calib.samples * seqLen, sSeqLen), seqLen: sSeqLen, seed });
    sensitivityWindows = { tokens: windows.tokens, samples: windows.samples, seqLen: sSeqLen };
    // on the calibration's devices: the GPUs when it ran there
    const measureOn = { tokens: windows.tokens, windows: windows.samples, seqLen: sSeqLen, seed, cudaDevices: o.cudaDevices, precision: o.precision, onProgress: o.onSensitivityProgress, signal: o.signal };
    // Beside each whole removal, the lower-ranked half of the sublayer's units, compensated as apply does:
    // the planner reads from the two points how damage grows with the share removed.
    // (optional: the default plan's damage model is linear and does not read them).
    const halves = so.halfCuts ? halfCuts(blocks, info.headDim) : [];
    const unitMeans = (means: Float64Array, units: number[], width: number) => Float64Array.from(units.flatMap((u) => Array.from(means.subarray(u * width, (u + 1) * width))));
    const cuts = so.halfCuts
      ? {
          attn: halves.map((h) => Int32Array.from(h.attn.heads)),
          attnMeans: halves.map((h, l) => unitMeans(r.blocks[l].headMean, h.attn.heads, info.headDim)),
          mlp: halves.map((h) => Int32Array.from(h.mlp.channels)),
          mlpMeans: halves.map((h, l) => unitMeans(r.blocks[l].channelMean, h.mlp.channels, 1)),
        }
      : undefined;
    const { partialDamage, ...m } = await measureSensitivity(model, { ...measureOn, means: { attnOut: r.blocks.map((b) => b.attnOutMean), mlpOut: r.blocks.map((b) => b.mlpOutMean) }, cuts });
    const plain = so.plain ? await measureSensitivity(model, measureOn) : undefined;
    sensitivity = {
      ...m,
      ...(partialDamage ? { partial: { attnShare: halves.map((h) => h.attn.share), mlpShare: halves.map((h) => h.mlp.share), ...partialDamage } } : {}),
      ...(so.text ? { file: so.text } : {}),
      ...(plain ? { plain: { block: plain.block, attn: plain.attn, mlp: plain.mlp, kl: plain.kl } } : {}), // the figures, without the settings
      agreement: { 'stream-te': agreement(blocks, m.kl, 'stream-te'), 'output-te': agreement(blocks, m.kl, 'output-te') },
      agreementWithLoss: { 'stream-te': agreement(blocks, m, 'stream-te'), 'output-te': agreement(blocks, m, 'output-te') },
    };
  }
  const stages: AnalyzeStages = {
    tokenize: tokenizeSeconds,
    calibrate: r.calibrateSeconds,
    ...(r.forwardSeconds > 0 ? { forward: r.forwardSeconds, capture: r.captureSeconds } : {}),
    estimators: r.estimatorsSeconds,
    refitDamage: refitSeconds,
    sensitivity: sensitivity ? Number(process.hrtime.bigint() - sensitivityStarted) / 1e9 : 0,
  };
  const analysis: Omit<Analysis, 'means'> = {
    format: ANALYSIS_FORMAT,
    version: ANALYSIS_VERSION,
    createdBy: `entroprune ${VERSION}`,
    model: {
      path: info.path,
      format: info.format,
      arch: info.arch,
      dim: info.dim,
      vocab: info.vocab,
      headDim: info.headDim,
      layers: info.layers.map((l) => ({ nHead: l.nHead, nKvHead: l.nKvHead, ffn: l.ffn })),
      identity: modelIdentity(model),
      tiedOutput: info.tiedOutput,
    },
    calibration: {
      file: calib.file,
      kind: calib.kind,
      streamTokens: calib.streamTokens,
      samples: calib.samples,
      seqLen,
      seed: calib.seed,
      tokens: r.tokens,
      projected: r.projected,
      jointDim: r.jointDim,
      maxDim,
      projDim,
      ridge,
      products: r.products,
    },
    blocks,
    ...(sensitivity ? { sensitivity } : {}),
  };
  const mean = (block: number, name: MeanName) => means.find((m) => m.block === block && m.name === name)?.values;
  return { analysis, calibrationWindows: { tokens: calib.tokens, samples: calib.samples, seqLen }, ...(sensitivityWindows ? { sensitivityWindows } : {}), means, mean, seconds, stages, device: r.device, peakDeviceBytes: r.peakDeviceBytes };
}

/**
 * Each sublayer's refit steps along the default removal order (lib/measure/unit-order.ts), into the blocks'
 * `refitDamage` (per KV group / channel): what the least-squares compensation of the kept units cannot restore
 * as the units go one by one (native/core/measure/refit_damage.h).
 */
/** The default plan's ranking with the refit-aware damage, and the paper's. */
export const DEFAULT_REFIT_RANKINGS: UnitRanking[] = ['contribution', 'entropy'];

async function recordRefitDamage(model: Model, blocks: BlockStats[], tokens: Int32Array, nSeqs: number, seqLen: number, batchSeqs: number, memoryBudget: number, o: AnalyzeOptions): Promise<void> {
  const info = model.info;
  const asked = (typeof o.refitDamage === 'object' ? o.refitDamage.rankings : undefined) ?? DEFAULT_REFIT_RANKINGS;
  const rankings = [...new Set(asked)];
  for (const r of rankings) if (!UNIT_RANKINGS.includes(r)) throw new EntropruneError('EP_INVALID_ARGUMENT', `refit-damage ranking must be one of ${UNIT_RANKINGS.join(', ')} (got ${String(r)})`);
  const weights = rankings.includes('weight') ? model.handle.unitWeightMagnitudes() : undefined;
  const orders = rankings.map((r) => removalOrders(blocks, r, info.headDim, weights)!);
  const job = model.handle.refitDamage(
    {
      tokens,
      nSeqs,
      seqLen,
      batchSeqs,
      memoryBudget,
      orders: orders.map((x) => ({ attn: x.attn.map((u) => Int32Array.from(u)), mlp: x.mlp.map((u) => Int32Array.from(u)) })),
      // on the calibration's first GPU when it ran there (the covariances and their factorisations on the CPU)
      ...(o.cudaDevices?.length ? { cudaDevices: o.cudaDevices, precision: o.precision } : {}),
    },
    (done, total) => o.onRefitDamageProgress?.({ done, total }),
  );
  const r = await awaitNativeJob(job, o.signal);
  blocks.forEach((b, l) => {
    if (b.attention) b.attention.refitDamage = Object.fromEntries(rankings.map((k, i) => [k, Array.from(r.steps[i].attn[l])]));
    if (b.mlp) b.mlp.refitDamage = Object.fromEntries(rankings.map((k, i) => [k, Array.from(r.steps[i].mlp[l])]));
  });
}

export async function analyzeToFile(model: Model, file: string, o: AnalyzeOptions): Promise<AnalyzeResult & { analysis: Analysis }> {
  // The analysis must not replace the model or the texts it reads, and one run writes it at a time.
  assertOutputSparesInputs(file, [model.info.path, o.calib, typeof o.sensitivity === 'object' ? o.sensitivity.text : undefined]);
  return withOutputLock(file, async () => {
    const r = await analyze(model, o);
    return { ...r, analysis: writeAnalysis(file, r.analysis, r.means) };
  });
}
