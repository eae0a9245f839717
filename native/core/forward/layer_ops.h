// The building blocks a decoder layer is made of, shared by the batched forward pass (forward.cpp) and the
// incremental decoder with a KV cache (decode.cpp), so both compute exactly the same arithmetic.
#pragma once
#include <cstdint>
#include <vector>

#include "core/model_config.h"

namespace ep {

// y[rows, out] = x[rows, in] · Wᵀ (+ bias), W row-major [out, in] as stored by every format. Few rows
// (decoding) go through gemv.h, which reads `w_bf16` — the bfloat16 original of W, when given — instead of
// the float32 view; more rows through gemm_bf16.h on `w_bf16` where the CPU has AMX-BF16, else through BLAS
// on the float32 view.
void linear(const float* x, const float* w, const float* bias, float* y, int64_t rows, int64_t in, int64_t out, const uint16_t* w_bf16 = nullptr);

void add_inplace(float* x, const float* y, int64_t n);

// x[i] += b[i % n] for a bias broadcast over rows
void add_row_bias(float* x, const float* b, int64_t rows, int n);

// gate[i] = silu(gate[i]) · up[i]
void swiglu(float* gate, const float* up, int64_t n);

// cos/sin of positions [first, first+count) × every frequency, in double once: [count, head_dim/2].
void rope_tables(const ModelConfig& c, int first, int count, std::vector<float>& cos_t, std::vector<float>& sin_t);

// Rotate every head of x [rows, n_heads*head_dim] in place; row r uses table row r % period.
void apply_rope(const ModelConfig& c, float* x, int64_t rows, int period, int n_heads, const std::vector<float>& cos_t,
                const std::vector<float>& sin_t);

}  // namespace ep
