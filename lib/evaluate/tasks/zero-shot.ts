// Zero-shot evaluation driver: load task documents, take a seeded subset, score every request in one
// batched native job per task, and report lm-eval's metrics (acc, acc_norm; LAMBADA acc and perplexity).
import type { Model } from '../../load/model';
import type { Tokenizer } from '../../load/tokenizer';
import { EntropruneError } from '../../util/errors';
import type { ProgressEvent } from '../../util/progress';
import { seededSubset } from '../../util/random';
import { EncodedRequest, encodeRequests, maxLengthOf, scoreEncoded } from './loglikelihood';
import { choiceMetrics, meanWithError, MeanWithError } from './metrics';
import { loadTaskDocs, TaskDoc, TaskSpec, taskSpec } from './task-files';

export interface TaskOptions {
  /** folder with the task files (the shared data's tasks/) */
  tasksDir: string;
  /** evaluate a seeded random subset of N documents per task */
  limit?: number;
  /** seed of that subset (default 0: the same documents on every machine) */
  seed?: number;
  /** padded tokens per forward call (default 8192) */
  batchTokens?: number;
  /** GPUs that run the scoring; none: the CPU */
  cudaDevices?: number[];
  /** per task: requests tokenized, then sequences scored */
  onProgress?: (task: string, p: ProgressEvent) => void;
  /** cancels tokenization and scoring; rejects with EP_CANCELLED (the reason as cause) */
  signal?: AbortSignal;
}

export interface TaskResult {
  task: string;
  docs: number;
  /** documents in the full task file */
  totalDocs: number;
  acc: MeanWithError;
  accNorm?: MeanWithError;
  /** LAMBADA: exp(−mean log-likelihood of the target word) */
  ppl?: number;
  seconds: number;
  /** tokens run through the model (context + continuation of every request) */
  tokens: number;
}

export function selectDocs(docs: TaskDoc[], limit: number | undefined, seed: number): TaskDoc[] {
  if (limit === undefined) return docs;
  if (!Number.isInteger(limit) || limit < 1) throw new EntropruneError('EP_INVALID_ARGUMENT', `limit must be a positive integer (got ${limit})`);
  if (limit >= docs.length) return docs;
  return seededSubset(docs.length, limit, seed).map((i) => docs[i]);
}

/** A task's documents, selected and tokenized once: scoring it on several models (the original and each
 *  pruned one, which share the vocabulary and context) then costs only the forward passes. */
export interface PreparedTask {
  task: string;
  spec: TaskSpec;
  docs: TaskDoc[];
  totalDocs: number;
  encoded: EncodedRequest[];
}

export async function prepareTask(
  model: Model,
  tokenizer: Tokenizer,
  name: string,
  o: Pick<TaskOptions, 'tasksDir' | 'limit' | 'seed' | 'signal'>,
): Promise<PreparedTask> {
  const spec = taskSpec(name);
  const all = loadTaskDocs(spec, o.tasksDir);
  const docs = selectDocs(all, o.limit, o.seed ?? 0);
  const requests = docs.flatMap((d) => (d.kind === 'choice' ? d.requests : [d]));
  const encoded = await encodeRequests(tokenizer, requests, maxLengthOf(model), o.signal);
  return { task: name, spec, docs, totalDocs: all.length, encoded };
}

export async function prepareTasks(
  model: Model,
  tokenizer: Tokenizer,
  names: string[],
  o: Pick<TaskOptions, 'tasksDir' | 'limit' | 'seed' | 'signal'>,
): Promise<PreparedTask[]> {
  for (const n of names) taskSpec(n); // fail on a typo before any work
  const out: PreparedTask[] = [];
  for (const n of names) out.push(await prepareTask(model, tokenizer, n, o));
  return out;
}

export async function scoreTask(model: Model, t: PreparedTask, o: Pick<TaskOptions, 'batchTokens' | 'cudaDevices' | 'onProgress' | 'signal'> = {}): Promise<TaskResult> {
  const started = process.hrtime.bigint();
  const scores = await scoreEncoded(model, t.encoded, {
    batchTokens: o.batchTokens,
    cudaDevices: o.cudaDevices,
    onProgress: (p) => o.onProgress?.(t.task, p),
    signal: o.signal,
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;

  const acc: number[] = [];
  const accNorm: number[] = [];
  let lambadaLogprob = 0;
  let at = 0;
  for (const d of t.docs) {
    if (d.kind === 'choice') {
      const lps = d.requests.map((_, i) => scores[at + i].logprob);
      at += d.requests.length;
      const m = choiceMetrics(lps, d.choiceTexts, d.gold);
      acc.push(m.acc);
      accNorm.push(m.accNorm);
    } else {
      acc.push(scores[at].greedy ? 1 : 0);
      lambadaLogprob += scores[at].logprob;
      at += 1;
    }
  }
  return {
    task: t.task,
    docs: t.docs.length,
    totalDocs: t.totalDocs,
    acc: meanWithError(acc),
    accNorm: t.spec.metrics.includes('acc_norm') ? meanWithError(accNorm) : undefined,
    ppl: t.spec.metrics.includes('ppl') ? Math.exp(-lambadaLogprob / t.docs.length) : undefined,
    seconds,
    tokens: t.encoded.reduce((n, r) => n + r.tokens.length, 0),
  };
}

export async function scoreTasks(model: Model, tasks: PreparedTask[], o: Pick<TaskOptions, 'batchTokens' | 'cudaDevices' | 'onProgress' | 'signal'> = {}): Promise<TaskResult[]> {
  const out: TaskResult[] = [];
  for (const t of tasks) out.push(await scoreTask(model, t, o));
  return out;
}

export async function evaluateTask(model: Model, tokenizer: Tokenizer, name: string, o: TaskOptions): Promise<TaskResult> {
  return scoreTask(model, await prepareTask(model, tokenizer, name, o), o);
}

export async function evaluateTasks(model: Model, tokenizer: Tokenizer, names: string[], o: TaskOptions): Promise<TaskResult[]> {
  return scoreTasks(model, await prepareTasks(model, tokenizer, names, o), o);
}

/** Mean accuracy over tasks, the paper's "Avg" column (acc_norm where the task reports it, as the paper does). */
export function averageAccuracy(results: TaskResult[]): number {
  if (results.length === 0) return NaN;
  return results.reduce((a, r) => a + (r.accNorm ?? r.acc).value, 0) / results.length;
}
