// The element-wise and attention kernels of a decoder block on the GPU; every one is the twin of a CPU
// function in native/core (named beside each). Activations are float32; `Precision` outputs feed the GEMMs.
// All launch on `stream` and throw CudaFailure on a launch error.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/device/block_runner.h"

namespace ep::cuda {

// out[rows, dim] (in precision p) = RMSNorm(x) ⊙ w — twin of ep::rmsnorm_cpu.
void rmsnorm_rows(const float* x, const float* w, void* out, Precision p, int64_t rows, int dim, float eps, cudaStream_t s);
// out[i] = in[i] converted to precision p (a plain copy for kF32).
void convert_from_f32(const float* in, void* out, Precision p, int64_t n, cudaStream_t s);
// Rotate every head of x [rows, n_heads*head_dim] in place; row r uses table row r % period — twin of ep::apply_rope.
void rope_rows(float* x, int64_t rows, int period, int n_heads, int head_dim, bool interleaved, const float* cos_t, const float* sin_t,
               cudaStream_t s);
// Causal grouped-query attention, optionally windowed — twin of the attention in ep::forward_block.
// q [rows, nh*hd], k/v [rows, nkv*hd] -> out [rows, nh*hd], rows = n_seqs * seq_len. head_dim ≤ kMaxHeadDim.
constexpr int kMaxHeadDim = 256;
void causal_attention(const float* q, const float* k, const float* v, float* out, int n_seqs, int seq_len, int n_head, int n_kv_head,
                      int head_dim, int window, cudaStream_t s);
// gate[i] = silu(gate[i]) · up[i] — twin of ep::swiglu.
void swiglu_rows(float* gate, const float* up, int64_t n, cudaStream_t s);
// x[i] += y[i] — twin of ep::add_inplace.
void add_rows(float* x, const float* y, int64_t n, cudaStream_t s);
// x[r, j] += b[j] — twin of ep::add_row_bias.
void add_bias_rows(float* x, const float* b, int64_t rows, int n, cudaStream_t s);

// For logits rows [row0, row0 + rows) of windows of T tokens (lg holds just those rows, [rows, V]):
// nll[(row / T)·(T − 1) + row % T] = log Σ exp(lg) − lg[target], target = tokens[row + 1], for every row but
// a window's last, and argmax there (the first maximal logit) unless argmax is null — twin of
// ep::next_token_nll_of_logits.
void next_token_nll_rows(const float* lg, int64_t row0, int64_t rows, int T, int V, const int32_t* tokens, float* nll, int32_t* argmax,
                         cudaStream_t s);

// out[rows, V] = log-softmax of each row of lg (out may be lg) — twin of ep::log_softmax_rows_cpu.
void log_softmax_rows(const float* lg, float* out, int64_t rows, int V, cudaStream_t s);
// For logits rows [row0, row0 + rows) (lg and ref hold just those rows, [rows, V]) against the reference
// log-probabilities ref: kl[row] = KL(p_ref ‖ softmax(lg)) and, for every row but a window's last,
// nll[(row / T)·(T − 1) + row % T] = −log softmax(lg)[tokens[row + 1]] — twin of ep::kl_next_token_rows_cpu.
void kl_next_token_rows(const float* lg, const float* ref, int64_t row0, int64_t rows, int T, int V, const int32_t* tokens, float* kl, float* nll,
                        cudaStream_t s);

}  // namespace ep::cuda
