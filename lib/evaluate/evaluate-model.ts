// One model's yardsticks in one call — perplexity on each text, zero-shot accuracy, forward throughput —
// shared by `compare` and `prune --report` so both measure exactly the same way.
import * as path from 'node:path';

import type { Model } from '../load/model';
import type { Tokenizer } from '../load/tokenizer';
import type { ProgressEvent } from '../util/progress';
import { perplexity } from './perplexity';
import { prefillThroughput } from './speed';
import { evaluateTasks, TaskResult } from './tasks/zero-shot';

export interface ModelEvalOptions {
  /** texts (already read) and their file names, for labels */
  texts: { file: string; text: string }[];
  seqLen?: number;
  maxTokens?: number;
  tasks: string[];
  tasksDir?: string;
  limit?: number;
  seed?: number;
  /** sequence length of the throughput measurement */
  speedSeqLen: number;
  onProgress?: (label: string, p: ProgressEvent) => void;
  signal?: AbortSignal;
}

export interface ModelEval {
  ppl: number[];
  tasks: TaskResult[];
  tokensPerSecond: number;
}

export async function evaluateModel(m: Model, tokenizer: Tokenizer, label: string, o: ModelEvalOptions): Promise<ModelEval> {
  const ppl: number[] = [];
  for (const { file, text } of o.texts) {
    const r = await perplexity(m, tokenizer, text, {
      seqLen: o.seqLen,
      maxTokens: o.maxTokens,
      onProgress: (p) => o.onProgress?.(`${label} ppl ${path.basename(file)}`, p),
      signal: o.signal,
    });
    ppl.push(r.ppl);
  }
  const tasks = o.tasks.length
    ? await evaluateTasks(m, tokenizer, o.tasks, { tasksDir: o.tasksDir!, limit: o.limit, seed: o.seed, onProgress: (t, p) => o.onProgress?.(`${label} ${t}`, p), signal: o.signal })
    : [];
  const speed = await prefillThroughput(m, { seqLen: o.speedSeqLen, repeats: 3, signal: o.signal });
  return { ppl, tasks, tokensPerSecond: speed.tokensPerSecond };
}

/** The default throughput length: 512 tokens, or the model's context when shorter. */
export const defaultSpeedSeqLen = (m: Model) => Math.min(512, m.info.context > 0 ? m.info.context : 512);
