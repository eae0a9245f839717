// Matrix products for a few rows of activations — decoding, where each new token is one row: every weight
// row is read once from memory for all of them, so the product runs at the machine's memory bandwidth.
// (A BLAS sgemm with one row first packs the whole weight matrix — a copy of every weight per token, which
// perf showed as 65 % of decoding time — and OpenBLAS' sgemv serves one row only and float32 only.)
// Weights may be float32, or bfloat16 used as stored (half the bytes per token), widened to float32 lane by
// lane; sums in float32. (float16 is not served: GCC 12 widens it without F16C one value at a time, measured
// slower than reading the float32 copies, so F16 files decode from those.)
#pragma once
#include <cstdint>

#include "core/format/dtype.h"

namespace ep {

// The most activation rows the kernels take at once; callers with more use a GEMM.
constexpr int64_t kGemvMaxRows = 8;

// y[rows, out] = x[rows, in] · Wᵀ, W row-major [out, in] in `dtype` (F32 or BF16), rows ≤ kGemvMaxRows.
void gemv_rows(const float* x, const void* w, DType dtype, float* y, int64_t rows, int64_t in, int64_t out);

}  // namespace ep
