// The many-row bfloat16 products of generation's prompt pass (forward/gemm_bf16.h) against a float64
// reference over the bfloat16-rounded activations and weights: row counts around the 16-row tiles and
// 32-row blocks, widths around the 32-input steps (odd ones too), output counts around the 32-output panels.
#include <cmath>
#include <random>

#include "core/error.h"
#include "core/format/dtype.h"
#include "core/forward/gemm_bf16.h"
#include "core/forward/layer_ops.h"
#include "test_util.h"

using namespace ep;

namespace {

struct Case {
  int64_t rows, in, out;
};

void check(const Case& k, bool through_linear) {
  std::mt19937 g(static_cast<unsigned>(k.rows * 131 + k.in * 7 + k.out));
  std::normal_distribution<float> n(0, 1);
  std::vector<float> x(k.rows * k.in), wf(k.in * k.out), bias(k.out);
  for (float& v : x) v = n(g);
  for (float& v : wf) v = n(g);
  for (float& v : bias) v = n(g);
  std::vector<uint16_t> w(wf.size());
  for (size_t i = 0; i < wf.size(); ++i) w[i] = f32_to_bf16(wf[i]), wf[i] = bf16_to_f32(w[i]);
  std::vector<float> y(k.rows * k.out, -7.0f);
  if (through_linear)
    linear(x.data(), wf.data(), bias.data(), y.data(), k.rows, k.in, k.out, w.data());
  else
    gemm_bf16(x.data(), w.data(), y.data(), k.rows, k.in, k.out);
  for (int64_t r = 0; r < k.rows; ++r)
    for (int64_t o = 0; o < k.out; ++o) {
      double want = through_linear ? bias[o] : 0.0, scale = 0;
      for (int64_t i = 0; i < k.in; ++i) {
        const double p = static_cast<double>(bf16_to_f32(f32_to_bf16(x[r * k.in + i]))) * wf[o * k.in + i];
        want += p;
        scale += std::fabs(p);
      }
      // float32 sums of exact products: a few ulps of the absolute sum (rounding x in float32 instead would
      // miss by about 2⁻⁹ of it)
      ASSERT_NEAR(y[r * k.out + o], want, 1e-6 * scale + 1e-6) << "rows " << k.rows << " in " << k.in << " out " << k.out << " at (" << r << ", " << o << ")";
    }
}

}  // namespace

TEST(GemmBf16, MatchesFloat64OverRoundedOperands) {
  if (!gemm_bf16_available()) GTEST_SKIP() << "no AMX-BF16 on this CPU or kernel (or ENTROPRUNE_BF16_GEMM=0)";
  for (const Case& k : {Case{9, 64, 16}, Case{13, 203, 37}, Case{67, 96, 130}, Case{130, 35, 5}, Case{1, 31, 3}, Case{40, 1, 64}, Case{32, 320, 33}})
    check(k, false);
}

// linear() hands more than kGemvMaxRows rows with a bfloat16 original to gemm_bf16 (and adds the bias).
TEST(GemmBf16, LinearUsesItForManyRowsOfStoredBf16Weights) {
  if (!gemm_bf16_available()) GTEST_SKIP() << "no AMX-BF16 on this CPU or kernel (or ENTROPRUNE_BF16_GEMM=0)";
  check(Case{20, 203, 37}, true);
}
