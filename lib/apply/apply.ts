// Apply and save stage: slice the model by a plan, fold bias compensation, write GGUF or a Hugging Face
// directory — atomically: everything goes to a temporary name beside the target, renamed when complete;
// the input is never touched and an existing output is only replaced with `force`.
import * as fs from 'node:fs';
import * as path from 'node:path';

import type { Model } from '../load/model';
import { LoadedAnalysis, readAnalysis } from '../measure/analysis';
import { modelIdentity } from '../measure/analyze';
import { native, NativeSpmTokenizer } from '../native';
import { llama2cVocabFile, loadTokenizerJson } from '../load/tokenizer';
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
  analysis?: Pick<LoadedAnalysis, 'mean'>;
  /** llama2.c tok*.bin to embed when writing GGUF from a llama2.c checkpoint (default: the one beside it) */
  vocabFile?: string;
  /** tokenizer.json to convert and embed when writing GGUF from a Hugging Face model (default: the model's own) */
  tokenizerJson?: string;
  /** keep shapes and zero the removed units (the equivalence reference) */
  zeroInsteadOfSlice?: boolean;
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
  const means = analysis
    ? plan.blocks.map((_, l) => ({
        headMean: analysis!.mean(l, 'headMean'),
        channelMean: analysis!.mean(l, 'channelMean'),
        attnOutMean: analysis!.mean(l, 'attnOutMean'),
        mlpOutMean: analysis!.mean(l, 'mlpOutMean'),
      }))
    : undefined;
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
      blocks: plan.blocks.map((b) => ({
        removed: b.removed,
        attnRemoved: b.attention.removed,
        mlpRemoved: b.mlp.removed,
        keptKvHeads: b.attention.keptKvHeads,
        keptHeads: b.attention.keptHeads,
        keptChannels: b.mlp.keptChannels,
        compensate: b.compensate,
      })),
      means,
      output: tmp,
      format,
      dtype: o.dtype ?? 'f32',
      zero: o.zeroInsteadOfSlice ?? false,
      vocabFile: o.vocabFile ?? (format === 'gguf' ? sourceVocab : undefined),
      vocab,
      shardBytes: o.shardBytes,
    }, (done, total) => o.onProgress?.({ done, total }));
    const r = await awaitNativeJob(job, o.signal);
    if (interrupted()) throw new EntropruneError('EP_CANCELLED', 'cancelled');
    if (fs.existsSync(out)) fs.rmSync(out, { recursive: true, force: true }); // --force
    fs.renameSync(tmp, out);
    // A llama2.c checkpoint finds its vocabulary beside it: bring the source's along (never replacing one).
    if (format === 'llama2c' && sourceVocab && !fs.existsSync(path.join(path.dirname(out), path.basename(sourceVocab)))) fs.copyFileSync(sourceVocab, path.join(path.dirname(out), path.basename(sourceVocab)));
    return { output: out, format, layers: r.layers, tensors: r.tensors, bytes: sizeOf(out), seconds: Number(process.hrtime.bigint() - started) / 1e9 };
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
