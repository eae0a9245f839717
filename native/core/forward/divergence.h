// How far a changed model's next-token distributions are from the intact model's, row by row: the CPU
// reference of the measured sensitivities (measure/sensitivity.h) and of a plan's measured loss
// (apply/plan_loss.h), and the twin of the GPU kernels that compute the same on the device
// (cuda/block_kernels.cuh: log_softmax_rows, kl_next_token_rows).
#pragma once
#include <cstdint>

namespace ep {

// lg[rows, V] ← log-softmax of each row, in place.
void log_softmax_rows_cpu(float* lg, int64_t rows, int V);

// For logits lg[rows, V] of windows of T tokens (row r of the window is position r % T), against the intact
// model's log-probabilities ref[rows, V]: kl[r] = KL(p_ref ‖ softmax(lg_r)) at every row (clamped at 0: it
// is ≥ 0 but rounding can make a tiny one negative), and nll[(r / T)·(T − 1) + r % T] = −log softmax(lg_r)
// at the next token tokens[r + 1], for every row but a window's last. Sums in float64.
void kl_next_token_rows_cpu(const float* lg, const float* ref, int64_t rows, int T, int V, const int32_t* tokens, float* kl, float* nll);

}  // namespace ep
