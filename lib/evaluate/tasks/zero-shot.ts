// Zero-shot evaluation driver: load task documents, take a seeded subset, score every request in one
// batched native job per task, and report lm-eval's metrics (acc, acc_norm; LAMBADA acc and perplexity).
import type { Model } from '../../load/model';
import type { Tokenizer } from '../../load/tokenizer';
import { EntropruneError } from '../../util/errors';
import type { ProgressEvent } from '../../util/progress';
import { seededSubset } from '../../util/random';
import { EncodedRequest, encodeRequest, maxLengthOf, scoreEncoded } from './loglikelihood';
import { choiceMetrics, meanWithError, MeanWithError } from './metrics';
import { loadTaskDocs, TaskDoc, taskSpec } from './task-files';

export interface TaskOptions {
  /** folder with the task files (the shared data's tasks/) */
  tasksDir: string;
  /** evaluate a seeded random subset of N documents per task */
  limit?: number;
  seed?: number;
  batchTokens?: number;
  onProgress?: (task: string, p: ProgressEvent) => void;
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

export async function evaluateTask(model: Model, tokenizer: Tokenizer, name: string, o: TaskOptions): Promise<TaskResult> {
  const spec = taskSpec(name);
  const all = loadTaskDocs(spec, o.tasksDir);
  const docs = selectDocs(all, o.limit, o.seed ?? 0);
  const maxLength = maxLengthOf(model);
  const encoded: EncodedRequest[] = [];
  for (const d of docs) {
    if (d.kind === 'choice') for (const r of d.requests) encoded.push(encodeRequest(tokenizer, r, maxLength));
    else encoded.push(encodeRequest(tokenizer, d, maxLength));
  }
  const started = process.hrtime.bigint();
  const scores = await scoreEncoded(model, encoded, { batchTokens: o.batchTokens, onProgress: (p) => o.onProgress?.(name, p), signal: o.signal });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;

  const acc: number[] = [];
  const accNorm: number[] = [];
  let lambadaLogprob = 0;
  let at = 0;
  for (const d of docs) {
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
    task: name,
    docs: docs.length,
    totalDocs: all.length,
    acc: meanWithError(acc),
    accNorm: spec.metrics.includes('acc_norm') ? meanWithError(accNorm) : undefined,
    ppl: spec.metrics.includes('ppl') ? Math.exp(-lambadaLogprob / docs.length) : undefined,
    seconds,
    tokens: encoded.reduce((a, r) => a + r.tokens.length, 0),
  };
}

export async function evaluateTasks(model: Model, tokenizer: Tokenizer, names: string[], o: TaskOptions): Promise<TaskResult[]> {
  for (const n of names) taskSpec(n); // fail on a typo before any work
  const out: TaskResult[] = [];
  for (const n of names) out.push(await evaluateTask(model, tokenizer, n, o));
  return out;
}

/** Mean accuracy over tasks, the paper's "Avg" column (acc_norm where the task reports it, as the paper does). */
export function averageAccuracy(results: TaskResult[]): number {
  if (results.length === 0) return NaN;
  return results.reduce((a, r) => a + (r.accNorm ?? r.acc).value, 0) / results.length;
}
