// Apply and save stage: slice the model by a plan, fold bias compensation, write GGUF or a Hugging Face
// directory — atomically: everything goes to a temporary name beside the target, renamed when complete;
// the input is never touched and an existing output is only replaced with `force`.
import * as fs from 'node:fs';
import * as path from 'node:path';

import type { Model } from '../load/model';
import { LoadedAnalysis, readAnalysis, type Analysis } from '../measure/analysis';
import { calibrationStreamAsync, sampleCalibration, type CalibrationWindows } from '../measure/calibration';
import { modelIdentity } from '../measure/analyze';
import { ensureFits, forwardBytes, layerInputPasses } from '../load/memory';
import { native, type NativeApplyOptions, type NativeRefitReport, NativeSpmTokenizer, type RefitMomentCache } from '../native';
import { llama2cVocabFile, loadTokenizerJson, tokenizerFor, type Tokenizer } from '../load/tokenizer';
import { spmVocabFromTokenizerJson } from '../load/tokenizer-convert';
import { PruningPlan } from '../plan/plan';
import { temporaryPath } from '../util/atomic';
import { EntropruneError, fromNative } from '../util/errors';
import { assertOutputSparesInputs } from '../util/file-identity';
import { withOutputLock } from '../util/output-lock';
import { interrupted, trackTemporary } from '../util/interrupt';
import { awaitNativeJob } from '../util/native-job';
import type { ProgressEvent } from '../util/progress';

export type OutputFormat = 'gguf' | 'hf' | 'llama2c';

/**
 * How the heads and channels a layer loses are compensated (docs/METHOD.md section 5):
 * - `least-squares` (ours, the default): the kept columns of o_proj / down_proj are refitted on the calibration
 *   windows so the layer's output matches the unpruned one in the least-squares sense, with a bias for the rest;
 * - `bias` (the paper's): only the removed units' mean output is folded into the bias.
 * Layers and blocks removed whole get their mean output folded in either way; blocks planned without
 * compensation get none.
 */
export type CompensationMode = 'least-squares' | 'bias';

export type { CalibrationWindows };

export interface ApplyOptions {
  /** the pruned model: a .gguf or llama2.c .bin file, or a Hugging Face folder (written under a temporary name, then renamed) */
  output: string;
  /** output format (default: from the output name, else the input's format; see defaultFormat) */
  format?: OutputFormat;
  /** matrix dtype of the output (default f32; llama2.c is f32 only) */
  dtype?: 'f32' | 'f16' | 'bf16';
  /** replace an existing output (never an input: that is refused regardless) */
  force?: boolean;
  /**
   * the calibration means bias compensation folds in: a read analysis (`readAnalysis(file)`) or an
   * `analyze()` result (default: read from the plan's `analysis` file)
   */
  analysis?: Pick<LoadedAnalysis, 'mean'> & { analysis?: Pick<Analysis, 'calibration'>; calibrationWindows?: CalibrationWindows };
  /** how removed heads and channels are compensated (default `least-squares`) */
  compensation?: CompensationMode;
  /**
   * the windows least-squares compensation refits on (default: the analysis' own calibration windows: those an
   * `analyze()` result carries, else drawn again from the analysis' calibration file with its seed)
   */
  calibration?: CalibrationWindows;
  /** the tokenizer for drawing those windows again from a text file (default: the model's own) */
  tokenizer?: Tokenizer;
  /**
   * least-squares compensation's ridge λ, relative to the kept units' mean variance (default 0.01): larger
   * values pull the refit toward the kept columns as they are, i.e. toward the bias compensation (docs/METHOD.md 5b)
   */
  leastSquaresDamping?: number;
  /** llama2.c tok*.bin to embed when writing GGUF from a llama2.c checkpoint (default: the one beside it) */
  vocabFile?: string;
  /** tokenizer.json to convert and embed when writing GGUF from a Hugging Face model (default: the model's own) */
  tokenizerJson?: string;
  /** keep shapes and zero the removed units (the equivalence reference) */
  zeroInsteadOfSlice?: boolean;
  /**
   * GPUs that run the blocks of least-squares compensation's capture (the first of them; the covariances still
   * accumulate on the CPU); absent: the CPU
   */
  cudaDevices?: number[];
  /** their matrix-product precision (default bf16) */
  precision?: 'bf16' | 'f16' | 'f32';
  /**
   * input moments kept from earlier refits on the same windows (`createRefitCache()`): a layer they hold is solved
   * without a calibration pass, and the layers this refit captures are added (the measured refinement's candidates,
   * `compare`'s methods and ratios, and prune's final apply share one)
   */
  refitCache?: RefitMomentCache;
  shardBytes?: number;
  /** tensors written so far */
  onProgress?: (p: ProgressEvent) => void;
  /** cancels between tensors (Ctrl-C in the CLI) */
  signal?: AbortSignal;
}

export interface ApplyResult {
  output: string;
  format: OutputFormat;
  layers: number;
  tensors: number;
  bytes: number;
  seconds: number;
  /** least-squares compensation, when it refitted any layer */
  refit?: NativeRefitReport;
  /** what the caller should know about the result (the CLI prints them); empty when nothing */
  warnings: string[];
}

/**
 * A plan priced for the least-squares refit cuts deepest where the refit restores most: compensated with the
 * bias only it loses badly (babyllama-105 at 30 %: 25.7 against 3.77 for a plan made for the bias; README,
 * "Fidelity"). Undefined when the plan and the compensation agree.
 */
export function compensationMismatch(plan: PruningPlan, compensation: 'least-squares' | 'bias'): string | undefined {
  if (compensation === 'bias' && plan.method.cutDamage === 'refit' && plan.blocks.some((b) => b.compensate))
    return 'the plan prices its partial cuts by what least-squares compensation restores (method.cutDamage "refit"), but it is applied with the bias compensation: plan with cutDamage "variance" (CLI: --cut-damage variance) for the bias';
  return undefined;
}

/**
 * The layers least-squares compensation refits — o_proj or down_proj of a compensated block keeping some but
 * not all of its heads or channels (the rule of native/core/apply/refit.cpp's refit_targets) — each with its
 * input width and the number of input columns it keeps.
 */
export function refitLayers(model: Model, plan: PruningPlan): { width: number; kept: number }[] {
  const hd = model.info.headDim;
  const out: { width: number; kept: number }[] = [];
  plan.blocks.forEach((b, l) => {
    const s = model.info.layers[l];
    if (b.removed || !b.compensate) return;
    const heads = b.attention.keptHeads.length, channels = b.mlp.keptChannels.length;
    if (s.nHead > 0 && heads > 0 && heads < s.nHead) out.push({ width: s.nHead * hd, kept: heads * hd });
    if (s.ffn > 0 && channels > 0 && channels < s.ffn) out.push({ width: s.ffn, kept: channels });
  });
  return out;
}

/** Whether least-squares compensation has anything to refit. */
export function planNeedsRefit(model: Model, plan: PruningPlan): boolean {
  return refitLayers(model, plan).length > 0;
}

/**
 * Memory least-squares compensation holds besides the model, and the budget of its capture passes (native/core/apply/refit.h): the covariance
 * accumulators of the widest layer (n² float64 and float32 scratch: a pass holds more layers, up to 4 GiB, where
 * memory allows; lib/load/memory.ts layerInputPasses),
 * the refitted columns of every refitted layer until the model is written, and one forward batch.
 */
export function refitMemory(model: Model, plan: PruningPlan, seqLen: number): { parts: Record<string, number>; passBudget: number } {
  const layers = refitLayers(model, plan);
  const other = {
    'refitted columns': layers.reduce((sum, x) => sum + model.info.dim * x.kept, 0) * 4,
    activations: forwardBytes(model.info, refitBatchSeqs(seqLen) * seqLen),
  };
  const { budget, widest, solve } = layerInputPasses(layers.map((x) => x.width), other['refitted columns'] + other.activations, model.info.dim);
  return { parts: { 'covariance accumulators (the widest layer)': widest, 'its solve': solve, ...other }, passBudget: budget };
}

/** Calibration windows per forward call of the refit's capture: about 4096 tokens. */
const refitBatchSeqs = (seqLen: number) => Math.max(1, Math.floor(4096 / seqLen));

/**
 * The analysis' calibration windows, drawn again: the same file, tokenizer, sample count, length and seed give
 * the same windows (calibration.ts). Refuses when the file is gone or no longer tokenizes to the length recorded.
 */
export async function analysisCalibrationWindows(model: Model, calibration: Analysis['calibration'], tokenizer?: Tokenizer, signal?: AbortSignal): Promise<CalibrationWindows> {
  const file = calibration.file;
  const hint = 'pass the windows (the `calibration` option), or compensate with the bias only (`compensation: \'bias\'`, CLI: --compensation-mode bias)';
  if (!fs.existsSync(file)) throw new EntropruneError('EP_IO', `${file}: least-squares compensation refits on the analysis' calibration windows, and their file is not there: ${hint}`, file);
  const tok = calibration.kind === 'tokens' ? undefined : (tokenizer ?? tokenizerFor(model));
  const { kind, stream } = await calibrationStreamAsync(file, tok, signal);
  if (stream.length !== calibration.streamTokens)
    throw new EntropruneError('EP_INVALID_ARGUMENT', `${file}: tokenizes to ${stream.length} tokens, the analysis recorded ${calibration.streamTokens} (changed since, or another tokenizer): ${hint}`, file);
  const set = sampleCalibration(file, kind, stream, model.info.vocab, { samples: calibration.samples, seqLen: calibration.seqLen, seed: calibration.seed });
  return { tokens: set.tokens, samples: set.samples, seqLen: set.seqLen };
}

export function defaultFormat(model: Model, output: string): OutputFormat {
  if (output.endsWith('.gguf')) return 'gguf';
  if (output.endsWith('.bin')) return 'llama2c';
  if (model.info.format === 'hf') return 'hf';
  return 'gguf';
}

function sizeOf(p: string): number {
  const st = fs.statSync(p);
  if (!st.isDirectory()) return st.size;
  return fs.readdirSync(p).reduce((s, f) => s + sizeOf(path.join(p, f)), 0);
}

/** An output may be written: it does not exist (or `force`), and its folder exists, is a folder and is writable. */
export function checkOutputPath(output: string, force?: boolean): void {
  const out = path.resolve(output);
  if (fs.existsSync(out) && !force) throw new EntropruneError('EP_IO', `${output}: already exists (pass --force to replace it)`, output);
  const parent = path.dirname(out);
  if (!fs.existsSync(parent)) throw new EntropruneError('EP_IO', `${parent}: output directory does not exist`, parent);
  if (!fs.statSync(parent).isDirectory()) throw new EntropruneError('EP_IO', `${parent}: is not a directory, so ${path.basename(out)} cannot be written in it`, parent);
  try {
    fs.accessSync(parent, fs.constants.W_OK);
  } catch {
    throw new EntropruneError('EP_IO', `${parent}: output directory is not writable`, parent);
  }
}

/** The plan's blocks as the native apply and plan-loss calls take them. */
export function nativeBlocks(plan: PruningPlan): NativeApplyOptions['blocks'] {
  return plan.blocks.map((b) => ({
    removed: b.removed,
    attnRemoved: b.attention.removed,
    mlpRemoved: b.mlp.removed,
    keptKvHeads: b.attention.keptKvHeads,
    keptHeads: b.attention.keptHeads,
    keptChannels: b.mlp.keptChannels,
    compensate: b.compensate,
  }));
}

/** The calibration means compensation folds in, per block (undefined without an analysis). */
export function planMeans(plan: PruningPlan, analysis: Pick<LoadedAnalysis, 'mean'> | undefined): NativeApplyOptions['means'] {
  return analysis
    ? plan.blocks.map((_, l) => ({
        headMean: analysis.mean(l, 'headMean'),
        channelMean: analysis.mean(l, 'channelMean'),
        attnOutMean: analysis.mean(l, 'attnOutMean'),
        mlpOutMean: analysis.mean(l, 'mlpOutMean'),
      }))
    : undefined;
}

/**
 * Least-squares compensation's native settings for a plan — its windows (given, the analysis' own, or drawn again
 * from the analysis' calibration file), batch, damping and capture budget — checked against memory; undefined when
 * the plan has nothing to refit.
 */
export async function refitSettings(
  model: Model,
  plan: PruningPlan,
  analysis: ApplyOptions['analysis'],
  o: Pick<ApplyOptions, 'calibration' | 'tokenizer' | 'leastSquaresDamping' | 'signal' | 'cudaDevices' | 'precision' | 'refitCache'>,
): Promise<NativeApplyOptions['refit']> {
  if (!planNeedsRefit(model, plan)) return undefined;
  let windows = o.calibration ?? analysis?.calibrationWindows;
  if (!windows) {
    const record = analysis?.analysis?.calibration ?? (plan.analysis ? readAnalysis(path.resolve(plan.analysis)).analysis.calibration : undefined);
    if (!record)
      throw new EntropruneError('EP_INVALID_ARGUMENT', 'least-squares compensation needs calibration windows: pass the analysis it was planned from (CLI: --analysis), or the windows (the `calibration` option), or compensate with the bias only (--compensation-mode bias)');
    windows = await analysisCalibrationWindows(model, record, o.tokenizer, o.signal);
  }
  if (windows.tokens.length !== windows.samples * windows.seqLen || windows.samples < 1 || windows.seqLen < 2)
    throw new EntropruneError('EP_INVALID_ARGUMENT', `calibration windows: ${windows.tokens.length} tokens do not make ${windows.samples} windows of ${windows.seqLen}`);
  const memory = refitMemory(model, plan, windows.seqLen);
  ensureFits('least-squares compensation', model.info.path, memory.parts, 'compensate with the bias only (--compensation-mode bias), or use a machine with more memory');
  return {
    tokens: windows.tokens, nSeqs: windows.samples, seqLen: windows.seqLen, batchSeqs: refitBatchSeqs(windows.seqLen), damping: o.leastSquaresDamping, memoryBudget: memory.passBudget,
    ...(o.cudaDevices?.length ? { cudaDevices: o.cudaDevices, precision: o.precision } : {}),
    ...(o.refitCache ? { cache: o.refitCache } : {}),
  };
}

/**
 * A cache of least-squares compensation's input moments for `ApplyOptions.refitCache`, holding at most
 * `budgetBytes` (default: a quarter of the memory available now, 1 GiB when that is unknown; a layer that does not
 * fit is captured again when asked). Each layer of width n takes 8·n(n + 1) bytes. It holds one model's moments on
 * one set of windows at a time, and is freed when no longer referenced.
 */
export function createRefitCache(budgetBytes?: number): RefitMomentCache {
  const available = native().availableMemory();
  return native().createRefitMomentCache(budgetBytes ?? (available > 0 ? Math.floor(available / 4) : 2 ** 30));
}

export async function applyPlan(model: Model, plan: PruningPlan, o: ApplyOptions): Promise<ApplyResult> {
  return withOutputLock(o.output, () => applyPlanLocked(model, plan, o));
}

async function applyPlanLocked(model: Model, plan: PruningPlan, o: ApplyOptions): Promise<ApplyResult> {
  const info = model.info;
  const identity = modelIdentity(model);
  if (plan.model.identity !== identity)
    throw new EntropruneError('EP_INVALID_ARGUMENT', `the plan was made for another model (identity ${plan.model.identity.slice(0, 12)}…, this model ${identity.slice(0, 12)}…): analyze and plan this model first`, info.path);
  const format = o.format ?? defaultFormat(model, o.output);
  const out = path.resolve(o.output);
  if (out === path.resolve(info.path)) throw new EntropruneError('EP_INVALID_ARGUMENT', `${o.output}: the output would overwrite the input model`, o.output);
  assertOutputSparesInputs(o.output, [info.path, o.vocabFile]);
  if (format === 'llama2c' && (o.dtype ?? 'f32') !== 'f32') throw new EntropruneError('EP_UNSUPPORTED', `${o.output}: llama2.c checkpoints are float32 only (drop --dtype)`, o.output);
  checkOutputPath(o.output, o.force);
  const needsMeans = plan.blocks.some((b) => b.compensate);
  let analysis = o.analysis;
  if (!analysis && needsMeans) {
    if (!plan.analysis)
      throw new EntropruneError('EP_INVALID_ARGUMENT', 'bias compensation needs the calibration means: pass the analysis (the `analysis` option: an analyze() result or readAnalysis(file); CLI: --analysis), or plan without compensation');
    analysis = readAnalysis(path.resolve(plan.analysis));
  }
  const compensation = o.compensation ?? 'least-squares';
  if (compensation !== 'least-squares' && compensation !== 'bias') throw new EntropruneError('EP_INVALID_ARGUMENT', `compensation must be least-squares or bias (got ${String(compensation)})`);
  if (o.leastSquaresDamping !== undefined && !(Number.isFinite(o.leastSquaresDamping) && o.leastSquaresDamping > 0))
    throw new EntropruneError('EP_INVALID_ARGUMENT', `leastSquaresDamping must be a positive number (got ${o.leastSquaresDamping})`);
  const refit = compensation === 'least-squares' ? await refitSettings(model, plan, analysis, o) : undefined;
  const means = planMeans(plan, analysis);
  // A llama2.c source keeps its vocabulary beside it (tok<vocab>.bin): embedded in a GGUF output, copied beside a llama2.c one.
  const sourceVocab = info.format === 'llama2c' ? llama2cVocabFile(info) : undefined;
  // A Hugging Face source carries its tokenizer as tokenizer.json; GGUF needs it as a SentencePiece vocabulary.
  let vocab: NativeSpmTokenizer | undefined;
  if (format === 'gguf' && info.format === 'hf') {
    const file = o.tokenizerJson ?? path.join(info.path, 'tokenizer.json');
    if (!fs.existsSync(file)) throw new EntropruneError('EP_TOKENIZER', `${file}: GGUF output embeds the tokenizer, and the model has no tokenizer.json (write --format hf, or pass the tokenizer)`, file);
    vocab = spmVocabFromTokenizerJson(file, loadTokenizerJson(file, info.bos, info.eos));
  }
  const tmp = temporaryPath(out);
  fs.rmSync(tmp, { recursive: true, force: true });
  if (format === 'hf') fs.mkdirSync(tmp);
  const removeTmp = () => fs.rmSync(tmp, { recursive: true, force: true });
  const untrack = trackTemporary(tmp); // removed on Ctrl-C / SIGTERM and at exit
  const started = process.hrtime.bigint();
  try {
    const job = native().applyPlan(model.handle, {
      blocks: nativeBlocks(plan),
      means,
      output: tmp,
      format,
      dtype: o.dtype ?? 'f32',
      zero: o.zeroInsteadOfSlice ?? false,
      vocabFile: o.vocabFile ?? (format === 'gguf' ? sourceVocab : undefined),
      vocab,
      shardBytes: o.shardBytes,
      refit,
    }, (done, total) => o.onProgress?.({ done, total }));
    const r = await awaitNativeJob(job, o.signal);
    if (interrupted()) throw new EntropruneError('EP_CANCELLED', 'cancelled');
    if (fs.existsSync(out)) fs.rmSync(out, { recursive: true, force: true }); // --force
    fs.renameSync(tmp, out);
    // A llama2.c checkpoint finds its vocabulary beside it: bring the source's along (never replacing one).
    if (format === 'llama2c' && sourceVocab && !fs.existsSync(path.join(path.dirname(out), path.basename(sourceVocab)))) fs.copyFileSync(sourceVocab, path.join(path.dirname(out), path.basename(sourceVocab)));
    const mismatch = compensationMismatch(plan, compensation);
    return {
      output: out, format, layers: r.layers, tensors: r.tensors, bytes: sizeOf(out), seconds: Number(process.hrtime.bigint() - started) / 1e9,
      ...(r.refit ? { refit: r.refit } : {}),
      warnings: mismatch ? [mismatch] : [],
    };
  } catch (e) {
    removeTmp();
    if (interrupted()) throw new EntropruneError('EP_CANCELLED', 'cancelled');
    // Name the output the user asked for, not its temporary stand-in (which is gone now).
    const err = fromNative(e);
    throw err.file?.startsWith(tmp) || err.message.includes(tmp) ? new EntropruneError(err.code, err.message.split(tmp).join(out), out) : err;
  } finally {
    untrack();
  }
}
