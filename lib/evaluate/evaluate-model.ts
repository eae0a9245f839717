// One model's yardsticks in one call — perplexity on each text, zero-shot accuracy, forward throughput —
// shared by `compare` and `prune --report` so both measure exactly the same way. The inputs are tokenized
// once (prepareEvalInputs) and then scored on every model: the original and its pruned versions share the
// vocabulary, and tokenizing long texts and thousands of task requests costs as much as scoring them.
import * as path from 'node:path';

import type { Model } from '../load/model';
import type { Tokenizer } from '../load/tokenizer';
import type { ProgressEvent } from '../util/progress';
import { encodeStreamPrefix, perplexityOfTokens } from './perplexity';
import { DEFAULT_GENERATION_PROMPTS, GenerationQuality, generationPrompts, generationQuality } from './generation';
import { prefillThroughput } from './speed';
import { PreparedTask, prepareTasks, scoreTasks, TaskResult } from './tasks/zero-shot';

export interface EvalInputs {
  /** each text's token stream (its first maxTokens tokens), with the file it came from, for labels */
  texts: { file: string; tokens: Int32Array }[];
  tasks: PreparedTask[];
  /** held-out prompts for greedy continuations (from the first text), empty when not asked for */
  prompts: Int32Array[];
}

export interface EvalInputOptions {
  texts: { file: string; text: string }[];
  maxTokens?: number;
  tasks: string[];
  tasksDir?: string;
  limit?: number;
  seed?: number;
  /** greedy continuations of held-out prompts from the first text (default true) */
  generation?: boolean;
  /** how many such prompts (default DEFAULT_GENERATION_PROMPTS, 8; 0: none) */
  generationPrompts?: number;
  /** stops a long tokenization (EP_CANCELLED) */
  signal?: AbortSignal;
}

export async function prepareEvalInputs(model: Model, tokenizer: Tokenizer, o: EvalInputOptions): Promise<EvalInputs> {
  const texts: EvalInputs['texts'] = [];
  for (const { file, text } of o.texts) texts.push({ file, tokens: await encodeStreamPrefix(tokenizer, text, o.maxTokens, o.signal) });
  return {
    texts,
    prompts: o.generation !== false && texts.length ? generationPrompts(texts[0].tokens, model.info.bos, o.generationPrompts ?? DEFAULT_GENERATION_PROMPTS) : [],
    tasks: o.tasks.length ? await prepareTasks(model, tokenizer, o.tasks, { tasksDir: o.tasksDir!, limit: o.limit, seed: o.seed, signal: o.signal }) : [],
  };
}

export interface ModelEvalOptions {
  inputs: EvalInputs;
  seqLen?: number;
  /** sequence length of the throughput measurement */
  speedSeqLen: number;
  /** GPUs for the perplexities and the zero-shot tasks (the throughput is measured on the CPU) */
  cudaDevices?: number[];
  onProgress?: (label: string, p: ProgressEvent) => void;
  signal?: AbortSignal;
}

export interface ModelEval {
  ppl: number[];
  tasks: TaskResult[];
  tokensPerSecond: number;
  /** repetition figures of greedy continuations of the held-out prompts (absent without prompts) */
  generation?: GenerationQuality;
}

export async function evaluateModel(m: Model, label: string, o: ModelEvalOptions): Promise<ModelEval> {
  const ppl: number[] = [];
  for (const { file, tokens } of o.inputs.texts) {
    const r = await perplexityOfTokens(m, tokens, {
      seqLen: o.seqLen,
      cudaDevices: o.cudaDevices,
      onProgress: (p) => o.onProgress?.(`${label} ppl ${path.basename(file)}`, p),
      signal: o.signal,
    });
    ppl.push(r.ppl);
  }
  const tasks = await scoreTasks(m, o.inputs.tasks, { cudaDevices: o.cudaDevices, onProgress: (t, p) => o.onProgress?.(`${label} ${t}`, p), signal: o.signal });
  // Generation runs through the KV-cache decoder, which a streamed model does not offer.
  const generation = o.inputs.prompts.length && !m.info.streamsLayers ? await generationQuality(m, o.inputs.prompts, 48, o.signal) : undefined;
  const speed = await prefillThroughput(m, { seqLen: o.speedSeqLen, repeats: 3, signal: o.signal });
  return { ppl, tasks, tokensPerSecond: speed.tokensPerSecond, ...(generation ? { generation } : {}) };
}

/** The default throughput length: 512 tokens, or the model's context when shorter. */
export const defaultSpeedSeqLen = (m: Model) => Math.min(512, m.info.context > 0 ? m.info.context : 512);
