// How a row-major linear layer y[rows, out] = x[rows, in] · W[out, in]ᵀ is expressed as one column-major
// GEMM call (cuBLAS' convention), kept apart from the CUDA code so that the CPU suite can check it with
// OpenBLAS' column-major sgemm (native/tests/test_gemm_mapping.cpp) on a machine without a GPU.
//
// Row-major Y = X·Wᵀ is column-major Yᵀ[out, rows] = op(A)·op(B) with A = W seen column-major ([in, out],
// ld in), transposed, and B = X seen column-major ([in, rows], ld in), as is; C = Yᵀ with ld out.
#pragma once
#include <cstdint>

namespace ep::cuda {

struct ColumnMajorGemm {
  bool trans_a, trans_b;
  int64_t m, n, k;
  int64_t lda, ldb, ldc;
};

inline ColumnMajorGemm linear_as_column_major_gemm(int64_t rows, int64_t in, int64_t out) {
  return ColumnMajorGemm{true, false, out, rows, in, in, in, out};  // A = W, B = X, C = Y
}

}  // namespace ep::cuda
