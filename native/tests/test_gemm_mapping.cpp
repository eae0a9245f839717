// The column-major GEMM the CUDA path hands to cuBLAS (cuda/gemm_mapping.h), checked on the CPU: the same
// call through OpenBLAS' column-major sgemm must reproduce ep::linear — so a wrong transpose or leading
// dimension shows here, on a machine without a GPU.
#include <cblas.h>

#include <random>
#include <vector>

#include "core/forward/layer_ops.h"
#include "cuda/gemm_mapping.h"
#include "test_util.h"

using namespace ep;

TEST(GemmMapping, ColumnMajorCallReproducesTheRowMajorLinear) {
  std::mt19937 g(4);
  std::normal_distribution<float> n(0, 1);
  for (auto [rows, in, out] : {std::tuple{1, 1, 1}, {5, 7, 3}, {37, 70, 45}, {64, 128, 96}}) {
    std::vector<float> x(rows * in), w(out * in), ref(rows * out), y(rows * out, -1.0f);
    for (float& v : x) v = n(g);
    for (float& v : w) v = n(g);
    linear(x.data(), w.data(), nullptr, ref.data(), rows, in, out);
    const cuda::ColumnMajorGemm c = cuda::linear_as_column_major_gemm(rows, in, out);
    cblas_sgemm(CblasColMajor, c.trans_a ? CblasTrans : CblasNoTrans, c.trans_b ? CblasTrans : CblasNoTrans, static_cast<int>(c.m),
                static_cast<int>(c.n), static_cast<int>(c.k), 1.0f, w.data(), static_cast<int>(c.lda), x.data(), static_cast<int>(c.ldb), 0.0f,
                y.data(), static_cast<int>(c.ldc));
    for (int i = 0; i < rows * out; ++i) ASSERT_NEAR(y[i], ref[i], 1e-4f * (1 + std::abs(ref[i]))) << rows << "x" << in << "x" << out << " @" << i;
  }
}
