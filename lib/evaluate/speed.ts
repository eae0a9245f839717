// Forward (prefill) throughput of entroprune's engine: the same token batch run several times, median
// reported, so two models measured one after the other in one process can be compared side by side.
import type { Model } from '../load/model';
import { awaitNativeJob } from '../util/native-job';

export interface PrefillOptions {
  seqLen: number;
  /** sequences per forward call */
  batchSeqs?: number;
  repeats?: number;
  signal?: AbortSignal;
}

export interface PrefillResult {
  seqLen: number;
  batchSeqs: number;
  /** median over repeats */
  tokensPerSecond: number;
  /** every repeat, in order */
  samples: number[];
}

/** Deterministic in-vocabulary ids: throughput does not depend on which tokens run. */
export function benchTokens(n: number, vocab: number, seed = 1): Int32Array {
  const out = new Int32Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out[i] = x % vocab;
  }
  return out;
}

export const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

export async function prefillThroughput(model: Model, o: PrefillOptions): Promise<PrefillResult> {
  const batchSeqs = o.batchSeqs ?? 1;
  const tokens = benchTokens(batchSeqs * o.seqLen, model.info.vocab);
  const samples: number[] = [];
  // One untimed run first: page in the memory-mapped weights and warm the thread pool.
  await awaitNativeJob(model.handle.evaluate({ tokens, nSeqs: batchSeqs, seqLen: o.seqLen, batchSeqs, output: 'nll' }), o.signal);
  for (let r = 0; r < (o.repeats ?? 3); r++) {
    const t0 = process.hrtime.bigint();
    await awaitNativeJob(model.handle.evaluate({ tokens, nSeqs: batchSeqs, seqLen: o.seqLen, batchSeqs, output: 'nll' }), o.signal);
    samples.push((batchSeqs * o.seqLen) / (Number(process.hrtime.bigint() - t0) / 1e9));
  }
  return { seqLen: o.seqLen, batchSeqs, tokensPerSecond: median(samples), samples };
}
