// Perplexity, with the protocol of SliceGPT, FLAP and the seed paper (docs/METHOD.md section 7):
// encode the whole text once with BOS once at the start; cut the stream into non-overlapping windows of
// seqLen tokens, dropping the remainder; score each window alone; report exp(mean NLL) over the seqLen-1
// predicted positions of every window. `normalization: 'wanda'` divides the summed NLL by windows·seqLen
// instead, as the authors' evaluation code does, so published numbers can be matched.
import type { Model } from '../load/model';
import { encodeOffThread } from '../load/tokenize-off-thread';
import type { Tokenizer } from '../load/tokenizer';
import { EntropruneError } from '../util/errors';
import { ensureFits, forwardBytes } from '../load/memory';
import { awaitNativeJob } from '../util/native-job';
import type { ProgressEvent } from '../util/progress';

export interface PerplexityOptions {
  /** Window length; default min(2048, the model's context). */
  seqLen?: number;
  /** Use only the first N tokens of the stream. */
  maxTokens?: number;
  /** Windows per forward call; default: about 8k tokens per call. */
  batchSeqs?: number;
  /** 'exact' (default): exp(mean NLL over every predicted position); 'wanda': the authors' per-window normalisation */
  normalization?: 'exact' | 'wanda';
  /**
   * GPUs that run the windows (resolveDevice's indices): every window through one block at a time on them, the
   * blocks streamed to the GPU, the output head and log-softmax there. None: the CPU, batch by batch.
   */
  cudaDevices?: number[];
  /** windows scored so far */
  onProgress?: (p: ProgressEvent) => void;
  /** cancels tokenization and the forward passes; rejects with EP_CANCELLED (the reason as cause) */
  signal?: AbortSignal;
}

export interface PerplexityResult {
  ppl: number;
  meanNll: number;
  /** Tokens in the (possibly truncated) stream, BOS included. */
  tokens: number;
  seqLen: number;
  windows: number;
  /** Positions scored: windows · (seqLen − 1). */
  predicted: number;
  normalization: 'exact' | 'wanda';
  seconds: number;
  /** Forward throughput: windows · seqLen / seconds. */
  tokensPerSecond: number;
}

export function defaultSeqLen(model: Model): number {
  const ctx = model.info.context;
  return ctx > 0 ? Math.min(2048, ctx) : 2048;
}

/** The warning for a window longer than the model's trained context (undefined when it fits or the context is unknown). */
export function beyondContextWarning(info: { context: number; path: string }, seqLen: number | undefined, flag: string): string | undefined {
  const ctx = info.context;
  return seqLen !== undefined && seqLen > 0 && ctx > 0 && seqLen > ctx
    ? `${flag} ${seqLen} is beyond ${info.path}'s trained context of ${ctx} tokens: its positions past that were never trained, and what is measured there means little`
    : undefined;
}

export async function perplexityOfTokens(model: Model, stream: Int32Array, options: PerplexityOptions = {}): Promise<PerplexityResult> {
  const seqLen = options.seqLen ?? defaultSeqLen(model);
  if (!Number.isInteger(seqLen) || seqLen < 2) throw new EntropruneError('EP_INVALID_ARGUMENT', `seq-len must be an integer >= 2 (got ${seqLen})`);
  if (options.maxTokens !== undefined && (!Number.isInteger(options.maxTokens) || options.maxTokens < 2))
    throw new EntropruneError('EP_INVALID_ARGUMENT', `max-tokens must be an integer >= 2 (got ${options.maxTokens})`);
  const tokens = options.maxTokens !== undefined ? stream.subarray(0, Math.min(stream.length, options.maxTokens)) : stream;
  const windows = Math.floor(tokens.length / seqLen);
  if (windows === 0)
    throw new EntropruneError('EP_INVALID_ARGUMENT', `the text has ${tokens.length} tokens, fewer than one window of seq-len ${seqLen}: use a longer text or a smaller --seq-len`);
  const batchSeqs = options.batchSeqs ?? Math.max(1, Math.floor(8192 / seqLen));
  const gpu = (options.cudaDevices?.length ?? 0) > 0;
  // on the GPU the host keeps the hidden states of a group of windows (pinned, at most 8 GiB: evaluate_streamed.h)
  // for the block-major order
  const groupBytes = Math.min(windows * seqLen * model.info.dim * 4, 8 * 2 ** 30);
  ensureFits('perplexity', model.path, { activations: gpu ? groupBytes : forwardBytes(model.info, batchSeqs * seqLen) },
    gpu ? 'use --max-tokens to evaluate a prefix of the text' : 'lower --batch (windows per forward call) or --seq-len');
  const started = process.hrtime.bigint();
  const job = model.handle.evaluate(
    { tokens: tokens.slice(0, windows * seqLen), nSeqs: windows, seqLen, batchSeqs, output: 'nll', cudaDevices: options.cudaDevices },
    (done, total) => options.onProgress?.({ done, total }),
  );
  const nll = await awaitNativeJob(job, options.signal);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  let sum = 0;
  for (let i = 0; i < nll.length; i++) sum += nll[i];
  const normalization = options.normalization ?? 'exact';
  const meanNll = sum / (normalization === 'wanda' ? windows * seqLen : nll.length);
  if (!Number.isFinite(meanNll))
    throw new EntropruneError('EP_FORMAT', `${model.path}: the loss is NaN or infinite: the model's weights or activations are not finite (entroprune analyze names the first bad tensor)`, model.path);
  return {
    ppl: Math.exp(meanNll),
    meanNll,
    tokens: tokens.length,
    seqLen,
    windows,
    predicted: nll.length,
    normalization,
    seconds,
    tokensPerSecond: (windows * seqLen) / seconds,
  };
}

/**
 * The first `maxTokens` tokens of encode(text) without encoding all of a long text (tokenizer.json BPE
 * runs at about 50 kB/s). Prefixes of growing length are encoded until two consecutive ones agree on
 * the first maxTokens tokens and reach beyond them, so the result is the prefix of the full encoding;
 * otherwise the whole text is encoded.
 */
export async function encodeStreamPrefix(tokenizer: Tokenizer, text: string, maxTokens?: number, signal?: AbortSignal): Promise<Int32Array> {
  // Long encodes run in a worker thread (tokenize-off-thread.ts), so Ctrl-C is handled while they run.
  const encode = (t: string) => encodeOffThread(tokenizer, t, { bos: true }, signal);
  if (maxTokens === undefined) return encode(text);
  let chars = Math.max(4096, maxTokens * 8);
  let previous: Int32Array | undefined;
  while (chars < text.length) {
    const ids = await encode(text.slice(0, chars));
    if (ids.length > maxTokens + 64 && previous && previous.length > maxTokens + 64) {
      const a = previous.subarray(0, maxTokens);
      const b = ids.subarray(0, maxTokens);
      if (a.every((v, i) => v === b[i])) return b.slice();
    }
    previous = ids;
    chars = Math.ceil(chars * 1.5);
  }
  return (await encode(text)).slice(0, maxTokens);
}

export async function perplexity(model: Model, tokenizer: Tokenizer, text: string, options: PerplexityOptions = {}): Promise<PerplexityResult> {
  return perplexityOfTokens(model, await encodeStreamPrefix(tokenizer, text, options.maxTokens, options.signal), options);
}
