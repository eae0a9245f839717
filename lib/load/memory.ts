// Memory estimates made before the heavy work starts, so that a run that cannot fit is refused with what to
// change instead of being killed by the OOM killer halfway. The formulas follow the buffers the native
// forward pass and statistics capture allocate (README, "Memory of the accumulators").
import type { ModelInfo } from './model';
import { native } from '../native';
import { EntropruneError } from '../util/errors';

/** The same figure the native loader checks against (MemAvailable, or ENTROPRUNE_MEMORY_LIMIT). */
export function availableMemory(): number {
  return native().availableMemory();
}

export const gib = (b: number) => (b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(1)} GiB` : `${(b / 2 ** 20).toFixed(1)} MiB`);

/** Float32 activation buffers of one forward call over `tokens` rows (plus a logits chunk of ≤ 64 MiB). */
export function forwardBytes(info: ModelInfo, tokens: number): number {
  const hd = info.headDim;
  const maxQ = Math.max(...info.layers.map((l) => l.nHead * hd));
  const maxKv = Math.max(...info.layers.map((l) => l.nKvHead * hd));
  const maxFfn = Math.max(...info.layers.map((l) => l.ffn));
  return 4 * tokens * (3 * info.dim + 2 * maxQ + 2 * maxKv + 2 * maxFfn) + Math.min(64 * 2 ** 20, 4 * tokens * info.vocab);
}

/** Float64 statistics the capture keeps for the whole run, plus its per-batch buffers. */
export function captureBytes(info: ModelInfo, tokensPerBatch: number, maxDim: number, projDim: number): number {
  const r = info.dim > maxDim ? projDim : info.dim;
  const perBlock = info.layers.map((l) => (4 * r) ** 2 * 8 + l.nHead * info.headDim ** 2 * 8 + l.ffn * 3 * 8 + (l.nHead * info.headDim + l.ffn + 2 * info.dim) * 8);
  return perBlock.reduce((a, b) => a + b, 0) + 3 * r * 8 * tokensPerBatch * info.layers.length;
}

/** What block-major streaming keeps for the whole run: every token's hidden state and its projected y. */
export function streamedStateBytes(info: ModelInfo, tokens: number, maxDim: number, projDim: number): number {
  const r = info.dim > maxDim ? projDim : info.dim;
  return 4 * tokens * (info.dim + r);
}

/**
 * Covariance accumulators of one layer input captured in full (native/core/capture/layer_inputs.h): n² float64,
 * plus float32 scratch for inputs wider than 1024 — what least-squares compensation and the refit-aware damage
 * hold per layer in a calibration pass.
 */
export function layerInputCovarianceBytes(n: number): number {
  return n * n * (n > 1024 ? 12 : 8);
}

/**
 * The working set of one layer's solve after its pass (native apply/least_squares.cpp, measure/refit_damage.cpp):
 * the covariance as a full float64 matrix, a permuted or kept-block copy to factor, and a float64 copy of the
 * weight (dim × n) with the product built from it.
 */
export function layerInputSolveBytes(n: number, dim: number): number {
  return 2 * n * n * 8 + 2 * dim * n * 8;
}

/** The accumulator budget of a pass where free memory is unknown (native RefitOptions::memory_budget's default). */
export const LAYER_INPUT_PASS_BUDGET = 4 * 2 ** 30;

/**
 * The memory budget of the passes over these layer inputs (native/core/device/layer_input_passes.h): half the
 * memory left beside `otherBytes`, at least the widest layer's accumulators (a tight machine takes more passes,
 * not a refusal); 4 GiB where free memory is unknown. Within it the native side takes one block-major sweep when
 * every token's hidden state and one block's accumulators fit, else as many layers per pass as fit. And the
 * memory check of it: the widest layer's accumulators, its solve's working set (`dim`: the model's width) and
 * `otherBytes` must fit.
 */
export function layerInputPasses(widths: number[], otherBytes: number, dim = 0): { budget: number; widest: number; solve: number } {
  const widest = Math.max(0, ...widths.map(layerInputCovarianceBytes));
  const solve = Math.max(0, ...widths.map((n) => layerInputSolveBytes(n, dim)));
  const have = availableMemory();
  const room = have > 0 ? (have - otherBytes - solve) / 2 : LAYER_INPUT_PASS_BUDGET;
  return { budget: Math.max(widest, Math.floor(room)), widest, solve };
}

/** Refuse when `parts` add up to more than the available memory; `advice` says what to change. */
export function ensureFits(what: string, file: string, parts: Record<string, number>, advice: string): void {
  const need = Object.values(parts).reduce((a, b) => a + b, 0);
  const have = availableMemory();
  if (have > 0 && need > have) {
    const detail = Object.entries(parts).map(([k, v]) => `${k} ${gib(v)}`).join(', ');
    throw new EntropruneError('EP_UNSUPPORTED', `${file}: ${what} needs about ${gib(need)} (${detail}) but only ${gib(have)} of memory is available: ${advice}`, file);
  }
}
