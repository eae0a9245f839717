// The few-row products of decoding (forward/gemv.h) against a float64 reference, for every row count the
// kernels unroll, a width that leaves a tail, float32 and bfloat16 weights (widened exactly).
#include <cmath>
#include <random>

#include "core/error.h"
#include "core/format/dtype.h"
#include "core/forward/gemv.h"
#include "core/forward/layer_ops.h"
#include "test_util.h"

using namespace ep;

TEST(Gemv, EveryRowCountAndStorageTypeMatchesFloat64) {
  const int64_t in = 203, out = 37;  // 203 = 25·8 + 3: the tail loop runs
  std::mt19937 g(5);
  std::normal_distribution<float> n(0, 1);
  std::vector<float> w(in * out), x(kGemvMaxRows * in);
  for (float& v : w) v = n(g);
  for (float& v : x) v = n(g);
  std::vector<uint16_t> wb(w.size());
  std::vector<float> wb32(w.size());  // the values the bfloat16 weights stand for
  for (size_t i = 0; i < w.size(); ++i) wb[i] = f32_to_bf16(w[i]), wb32[i] = bf16_to_f32(wb[i]);
  struct Case {
    DType dtype;
    const void* stored;
    const std::vector<float>* values;
  };
  for (const Case& k : {Case{DType::F32, w.data(), &w}, Case{DType::BF16, wb.data(), &wb32}})
    for (int64_t rows = 1; rows <= kGemvMaxRows; ++rows) {
      std::vector<float> y(rows * out, -1.0f);
      gemv_rows(x.data(), k.stored, k.dtype, y.data(), rows, in, out);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t o = 0; o < out; ++o) {
          double want = 0;
          for (int64_t i = 0; i < in; ++i) want += static_cast<double>(x[r * in + i]) * (*k.values)[o * in + i];
          ASSERT_NEAR(y[r * out + o], want, 1e-4 * std::max(1.0, std::abs(want))) << dtype_name(k.dtype) << " rows " << rows << " (" << r << ", " << o << ")";
        }
    }
  std::vector<float> y(9 * out);
  EXPECT_THROW(gemv_rows(x.data(), w.data(), DType::F32, y.data(), kGemvMaxRows + 1, in, out), Error);
  EXPECT_THROW(gemv_rows(x.data(), w.data(), DType::F16, y.data(), 1, in, out), Error);  // no float16 kernel
}

// linear() takes the gemv path for few rows and BLAS for more: both give the same products.
TEST(Gemv, LinearAgreesAcrossItsTwoPaths) {
  const int64_t in = 64, out = 50, rows = 12;
  std::mt19937 g(6);
  std::normal_distribution<float> n(0, 1);
  std::vector<float> w(in * out), x(rows * in), b(out), all(rows * out), one(out);
  for (float& v : w) v = n(g);
  for (float& v : x) v = n(g);
  for (float& v : b) v = n(g);
  linear(x.data(), w.data(), b.data(), all.data(), rows, in, out);  // > kGemvMaxRows: BLAS
  for (int64_t r = 0; r < rows; ++r) {
    linear(&x[r * in], w.data(), b.data(), one.data(), 1, in, out);
    for (int64_t o = 0; o < out; ++o) ASSERT_NEAR(one[o], all[r * out + o], 1e-4) << r << ", " << o;
  }
}
