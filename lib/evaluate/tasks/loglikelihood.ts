// lm-eval-harness `loglikelihood` requests on entroprune's engine: tokenise each (context, continuation)
// pair the way the harness does, then score all of them in padded, length-sorted batches natively.
import type { Model } from '../../load/model';
import { encodeAllOffThread } from '../../load/tokenize-off-thread';
import type { Tokenizer } from '../../load/tokenizer';
import { fromNative } from '../../util/errors';
import { awaitNativeJob } from '../../util/native-job';
import type { ProgressEvent } from '../../util/progress';

export interface LoglikelihoodRequest {
  context: string;
  continuation: string;
}

export interface LoglikelihoodResult {
  logprob: number;
  /** every continuation token is the greedy prediction */
  greedy: boolean;
  /** tokens in the continuation */
  tokens: number;
}

export interface EncodedRequest {
  tokens: Int32Array;
  /** index of the first continuation token */
  target: number;
}

/**
 * The harness's `_encode_pair`: trailing whitespace of the context moves to the continuation; the whole
 * string is encoded once and the continuation is what follows the separately encoded context. BOS is
 * prepended (LLaMA's tokenizer default, as in the harness runs the pruning papers report). Sequences
 * longer than the model's context keep their last `maxLength` tokens, as the harness truncates from the left.
 */
export function encodeRequest(tokenizer: Tokenizer, r: LoglikelihoodRequest, maxLength: number): EncodedRequest {
  const { context, whole } = requestTexts(r);
  return assembleRequest(tokenizer.encode(whole, { bos: true }), tokenizer.encode(context, { bos: true }), maxLength);
}

/** encodeRequest for many requests, the encoding off the main thread (a task set can be megabytes of text). */
export async function encodeRequests(tokenizer: Tokenizer, reqs: LoglikelihoodRequest[], maxLength: number, signal?: AbortSignal): Promise<EncodedRequest[]> {
  const texts = reqs.flatMap((r) => {
    const t = requestTexts(r);
    return [t.whole, t.context];
  });
  const ids = await encodeAllOffThread(tokenizer, texts, { bos: true }, signal);
  return reqs.map((_, i) => assembleRequest(ids[2 * i], ids[2 * i + 1], maxLength));
}

/** The two strings a request encodes: the context, and context + continuation. */
function requestTexts(r: LoglikelihoodRequest): { context: string; whole: string } {
  let { context, continuation } = r;
  const spaces = context.length - context.trimEnd().length;
  if (spaces > 0) {
    continuation = context.slice(context.length - spaces) + continuation;
    context = context.slice(0, context.length - spaces);
  }
  return { context, whole: context + continuation };
}

function assembleRequest(whole: Int32Array, ctx: Int32Array, maxLength: number): EncodedRequest {
  let cont = whole.subarray(Math.min(ctx.length, whole.length));
  // A tokenizer that merges across the boundary can leave nothing: score the last token of the whole string.
  if (cont.length === 0) cont = whole.subarray(whole.length - 1);
  const seq = new Int32Array(ctx.length + cont.length);
  seq.set(ctx, 0);
  seq.set(cont, ctx.length);
  const keep = Math.min(seq.length, maxLength);
  const cut = seq.length - keep;
  return { tokens: seq.subarray(cut), target: Math.max(1, ctx.length - cut) };
}

export interface ScoreOptions {
  batchTokens?: number;
  /** GPUs that run the scoring (resolveDevice's indices); none: the CPU */
  cudaDevices?: number[];
  onProgress?: (p: ProgressEvent) => void;
  signal?: AbortSignal;
}

export async function scoreEncoded(model: Model, reqs: EncodedRequest[], o: ScoreOptions = {}): Promise<LoglikelihoodResult[]> {
  if (reqs.length === 0) return [];
  const lengths = Int32Array.from(reqs, (r) => r.tokens.length);
  const targets = Int32Array.from(reqs, (r) => r.target);
  const tokens = new Int32Array(lengths.reduce((a, b) => a + b, 0));
  let at = 0;
  for (const r of reqs) {
    tokens.set(r.tokens, at);
    at += r.tokens.length;
  }
  let job;
  try {
    job = model.handle.score({ tokens, lengths, targets, batchTokens: o.batchTokens, cudaDevices: o.cudaDevices }, (done, total) => o.onProgress?.({ done, total }));
  } catch (e) {
    throw fromNative(e);
  }
  const out = await awaitNativeJob(job, o.signal);
  return reqs.map((r, i) => ({ logprob: out.logprob[i], greedy: out.greedy[i] === 1, tokens: r.tokens.length - r.target }));
}

/** Context length used for truncation: the model's own, or 2048 when the file does not say. */
export function maxLengthOf(model: Model): number {
  return model.info.context > 0 ? model.info.context : 2048;
}
