// Per-document metrics as lm-eval-harness computes them, and their aggregation with standard errors.

/** Index of the largest value; ties go to the first, like numpy.argmax. */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/** Length of a string as Python's len() counts it (code points, not UTF-16 units). */
export function pythonLength(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/**
 * acc: the choice with the highest log-likelihood is the gold one. acc_norm: the same after dividing each
 * log-likelihood by its choice's length in characters (the choice text without the leading space), which is
 * lm-eval's normalisation — not by token count.
 */
export function choiceMetrics(logprobs: number[], choiceTexts: string[], gold: number): { acc: number; accNorm: number } {
  const normed = logprobs.map((lp, i) => lp / pythonLength(choiceTexts[i]));
  return { acc: argmax(logprobs) === gold ? 1 : 0, accNorm: argmax(normed) === gold ? 1 : 0 };
}

export interface MeanWithError {
  value: number;
  /** standard error of the mean: sample standard deviation / sqrt(n), lm-eval's mean_stderr */
  stderr: number;
}

export function meanWithError(xs: number[]): MeanWithError {
  const n = xs.length;
  if (n === 0) return { value: NaN, stderr: NaN };
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  if (n < 2) return { value: mean, stderr: NaN };
  const variance = xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1);
  return { value: mean, stderr: Math.sqrt(variance / n) };
}
