// Greedy continuations of held-out prompts, and how repetitive they are. Perplexity alone misses a model
// that scores text well but loops on one token when it writes ("ffff…"): a pruned model is judged on what
// it generates too, next to the original's figures on the same prompts.
import type { Model } from '../load/model';
import { awaitNativeJob } from '../util/native-job';

export interface GenerationQuality {
  prompts: number;
  /** tokens generated per prompt */
  tokens: number;
  /** share of generated 4-grams that repeat an earlier 4-gram of the same continuation (0: none; loops → 1) */
  repeat4: number;
  /** distinct tokens / generated tokens, pooled over the continuations */
  distinct1: number;
  /** distinct bigrams / generated bigrams, pooled */
  distinct2: number;
  /** the longest run of one token back to back in any continuation */
  longestRun: number;
  /** continuations caught in a single-token loop: a run of LOOP_RUN or more of one token */
  looping: number;
  /** each continuation's ids (for the report to decode) */
  continuations: number[][];
}

/**
 * How many held-out prompts `compare` and the report continue by default. Few, because each costs 48 decoding
 * steps of the whole model; a loop rate of a few per cent needs hundreds to tell apart from none
 * (`--generation-prompts`: 64 prompts that show no loop still allow a rate of 4 %, 512 one of 0.6 %).
 */
export const DEFAULT_GENERATION_PROMPTS = 8;

/** `count` prompts of `length` tokens at evenly spaced places of a held-out stream, each after BOS. */
export function generationPrompts(stream: Int32Array, bos: number, count = DEFAULT_GENERATION_PROMPTS, length = 16): Int32Array[] {
  const span = stream.length - length - 1;
  if (span <= 0) return [];
  return Array.from({ length: count }, (_, i) => {
    const at = 1 + Math.floor((i * span) / count);
    const p = new Int32Array(length + 1);
    p[0] = bos;
    p.set(stream.subarray(at, at + length), 1);
    return p;
  });
}

/** A run this long of one token is a loop, not style (the original models' longest runs here are 1–2). */
export const LOOP_RUN = 8;

export function repetitionFigures(continuations: number[][]): Omit<GenerationQuality, 'prompts' | 'tokens' | 'continuations'> {
  let looping = 0;
  let grams4 = 0;
  let repeated4 = 0;
  let tokens = 0;
  let bigrams = 0;
  let longestRun = 0;
  const uni = new Set<number>();
  const bi = new Set<string>();
  for (const c of continuations) {
    const seen = new Set<string>();
    let run = 0;
    let longest = 0;
    for (let i = 0; i < c.length; i++) {
      tokens++;
      uni.add(c[i]);
      run = i > 0 && c[i] === c[i - 1] ? run + 1 : 1;
      longest = Math.max(longest, run);
      if (i >= 1) {
        bigrams++;
        bi.add(`${c[i - 1]},${c[i]}`);
      }
      if (i >= 3) {
        const g = `${c[i - 3]},${c[i - 2]},${c[i - 1]},${c[i]}`;
        grams4++;
        if (seen.has(g)) repeated4++;
        seen.add(g);
      }
    }
    longestRun = Math.max(longestRun, longest);
    if (longest >= LOOP_RUN) looping++;
  }
  return { repeat4: grams4 ? repeated4 / grams4 : 0, distinct1: tokens ? uni.size / tokens : 0, distinct2: bigrams ? bi.size / bigrams : 0, longestRun, looping };
}

export async function generationQuality(m: Model, prompts: Int32Array[], tokens = 48, signal?: AbortSignal): Promise<GenerationQuality> {
  const continuations: number[][] = [];
  for (const prompt of prompts) {
    const r = await awaitNativeJob(m.handle.generate({ prompt, tokens }), signal);
    const ids = Array.from(r.tokens);
    const end = ids.indexOf(m.info.eos);
    continuations.push(end >= 0 ? ids.slice(0, end) : ids); // a finished story ends the continuation
  }
  return { prompts: prompts.length, tokens, ...repetitionFigures(continuations), continuations };
}
