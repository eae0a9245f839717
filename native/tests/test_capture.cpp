// Capture and analysis on a synthetic heterogeneous model: merging, bookkeeping of means, and transfer
// entropies recomputed independently from explicitly recorded activations.
#include <cmath>

#include "core/measure/analysis.h"
#include "core/capture/capture.h"
#include "core/forward/forward.h"
#include "core/measure/gaussian_entropy.h"
#include "core/load/model.h"
#include "core/synthetic/synthetic_model.h"
#include "heterogeneous_model.h"
#include "test_util.h"

using namespace ep;

namespace {

std::unique_ptr<Model> synthetic(const test::TempDir& t) { return load_model(test::write_heterogeneous_model(t.file("m.gguf"), 21)); }

std::vector<int32_t> tokens(int n, int seed) {
  std::vector<int32_t> t(n);
  uint32_t s = 777u + seed;
  for (int& x : t) { s = s * 1664525u + 1013904223u; x = static_cast<int>((s >> 8) % 300); }
  return t;
}

void run(const Model& m, ForwardHooks* hooks, const std::vector<int32_t>& toks, int n_seqs, int seq_len) {
  ForwardRequest r;
  r.tokens = toks.data();
  r.n_seqs = n_seqs;
  r.seq_len = seq_len;
  r.hooks = hooks;
  forward(m, r);
}

struct Explicit : ForwardHooks {  // keeps y, h_{l-1}, a_l, m_l rows of every token
  std::vector<std::vector<float>> h, a, m;
  std::vector<float> y;
  int d = 0;
  explicit Explicit(int layers, int dim) : h(layers), a(layers), m(layers), d(dim) {}
  int64_t rows_now = 0;
  void block_input(int l, const float* x, int64_t rows, int dim) override {
    rows_now = rows;
    h[l].insert(h[l].end(), x, x + rows * dim);
    a[l].resize(h[l].size(), 0.0f);
    m[l].resize(h[l].size(), 0.0f);
  }
  void attn_output(int l, const float* x, int64_t rows, int dim) override { std::copy(x, x + rows * dim, a[l].end() - rows * dim); }
  void mlp_output(int l, const float* x, int64_t rows, int dim) override { std::copy(x, x + rows * dim, m[l].end() - rows * dim); }
  void final_hidden(const float* x, int64_t rows, int dim) override { y.insert(y.end(), x, x + rows * dim); }
};

}  // namespace

// Batching changes float32 GEMM blocking inside the forward pass, so activations (not the accumulators,
// whose merge is exact: see Moments tests) differ in the last bits: compare to 1e-6 relative.
TEST(Capture, MergeOfTwoHalvesEqualsOnePass) {
  test::TempDir t;
  auto m = synthetic(t);
  auto a = tokens(4 * 20, 1);
  CaptureOptions o;
  StatisticsCapture all(m->config, o), first(m->config, o), second(m->config, o);
  run(*m, &all, a, 4, 20);
  std::vector<int32_t> a1(a.begin(), a.begin() + 40), a2(a.begin() + 40, a.end());
  run(*m, &first, a1, 2, 20);
  run(*m, &second, a2, 2, 20);
  first.merge(second);
  ASSERT_EQ(first.tokens(), all.tokens());
  for (int l = 0; l < 4; ++l) {
    auto c1 = first.block_moments(l).covariance(), c2 = all.block_moments(l).covariance();
    for (size_t i = 0; i < c1.size(); ++i) ASSERT_NEAR(c1[i], c2[i], 1e-6 * std::max(1.0, std::abs(c2[i])));
    for (size_t h = 0; h < all.head_moments(l).size(); ++h) {
      auto h1 = first.head_moments(l)[h].covariance(), h2 = all.head_moments(l)[h].covariance();
      for (size_t i = 0; i < h1.size(); ++i) ASSERT_NEAR(h1[i], h2[i], 1e-6 * std::max(1.0, std::abs(h2[i])));
    }
    auto v1 = first.channel_stats(l).variance(), v2 = all.channel_stats(l).variance();
    for (size_t i = 0; i < v1.size(); ++i) ASSERT_NEAR(v1[i], v2[i], 1e-6 * std::max(1.0, std::abs(v2[i])));
    EXPECT_NEAR(first.block_cosine(l), all.block_cosine(l), 1e-7);
  }
  auto r1 = analyze_capture(first, m->config, 1e-6), r2 = analyze_capture(all, m->config, 1e-6);
  for (int l = 0; l < 4; ++l) EXPECT_NEAR(r1.blocks[l].te, r2.blocks[l].te, 1e-4 * std::max(1.0, r2.blocks[l].te));
}

// float32 cross-products (blocked into float64 sums; the default for joint vectors wider than 1024) against
// float64 products on the same activations. This tiny model's 180 samples of 128-wide joint vectors make
// near-singular covariances, where log-determinants amplify float32 rounding: TE moves by ~0.2% here (on the
// real models TE moved by 1e-7 and the smallest TE_attn by 2e-3, with identical plans). Head entropies use
// float64 moments in both modes and must not move at all.
TEST(Capture, Float32ProductsAgreeWithFloat64) {
  test::TempDir t;
  auto m = synthetic(t);
  auto a = tokens(6 * 30, 5);
  CaptureOptions f32, f64;
  f32.products = Accumulation::kBlockedFloat32;
  f64.products = Accumulation::kFloat64;
  StatisticsCapture c32(m->config, f32), c64(m->config, f64), defaults(m->config, CaptureOptions{});
  EXPECT_EQ(defaults.products(), Accumulation::kFloat64);  // 4 × 32 wide: at most kExactJointMax, so exact
  run(*m, &c32, a, 6, 30);
  run(*m, &c64, a, 6, 30);
  auto r32 = analyze_capture(c32, m->config, 1e-6), r64 = analyze_capture(c64, m->config, 1e-6);
  for (int l = 0; l < 4; ++l) {
    EXPECT_NEAR(r32.blocks[l].te, r64.blocks[l].te, 5e-3 * std::max(1.0, r64.blocks[l].te)) << l;
    EXPECT_NEAR(r32.blocks[l].te_attn, r64.blocks[l].te_attn, 5e-3 * std::max(1.0, r64.blocks[l].te_attn)) << l;
    EXPECT_NEAR(r32.blocks[l].te_mlp, r64.blocks[l].te_mlp, 5e-3 * std::max(1.0, r64.blocks[l].te_mlp)) << l;
    ASSERT_EQ(r32.blocks[l].head_entropy.size(), r64.blocks[l].head_entropy.size());
    for (size_t h = 0; h < r32.blocks[l].head_entropy.size(); ++h) EXPECT_EQ(r32.blocks[l].head_entropy[h], r64.blocks[l].head_entropy[h]);
  }
}

TEST(Capture, TransferEntropiesMatchAnIndependentComputation) {
  test::TempDir t;
  auto m = synthetic(t);
  auto a = tokens(6 * 30, 2);
  StatisticsCapture cap(m->config, CaptureOptions{});
  run(*m, &cap, a, 6, 30);
  Explicit ex(4, 32);
  run(*m, &ex, a, 6, 30);
  auto res = analyze_capture(cap, m->config, 1e-6);
  const int d = 32;
  const int64_t N = 180;
  for (int l = 0; l < 4; ++l) {
    // rows (y, h, Δ) and (y, u, m_l), built explicitly and accumulated from scratch
    Moments yhd(3 * d), yum(3 * d), yha(3 * d);
    std::vector<double> row(3 * d);
    for (int64_t r = 0; r < N; ++r) {
      for (int j = 0; j < d; ++j) {
        const double y = ex.y[r * d + j], h = ex.h[l][r * d + j], aa = ex.a[l][r * d + j], mm = ex.m[l][r * d + j];
        row[j] = y; row[d + j] = h; row[2 * d + j] = aa + mm;
      }
      yhd.add(row.data(), 1, 3 * d);
      for (int j = 0; j < d; ++j) { row[d + j] = ex.h[l][r * d + j] + ex.a[l][r * d + j]; row[2 * d + j] = ex.m[l][r * d + j]; }
      yum.add(row.data(), 1, 3 * d);
      for (int j = 0; j < d; ++j) { row[d + j] = ex.h[l][r * d + j]; row[2 * d + j] = ex.a[l][r * d + j]; }
      yha.add(row.data(), 1, 3 * d);
    }
    std::vector<int> Y, X, Z;
    for (int j = 0; j < d; ++j) { Y.push_back(j); Z.push_back(d + j); X.push_back(2 * d + j); }
    const auto& s = m->config.layers[l];
    EXPECT_NEAR(res.blocks[l].te, conditional_mutual_information(yhd.covariance(), 3 * d, Y, X, Z), 1e-4) << l;
    if (s.ffn > 0) EXPECT_NEAR(res.blocks[l].te_mlp, conditional_mutual_information(yum.covariance(), 3 * d, Y, X, Z), 1e-4) << l;
    else EXPECT_EQ(res.blocks[l].te_mlp, 0.0);
    if (s.n_head > 0) EXPECT_NEAR(res.blocks[l].te_attn, conditional_mutual_information(yha.covariance(), 3 * d, Y, X, Z), 1e-4) << l;
    else EXPECT_EQ(res.blocks[l].te_attn, 0.0);
    EXPECT_GT(res.blocks[l].te, 0.0);
  }
}

TEST(Capture, MeansAreConsistentWithTheWeights) {
  test::TempDir t;
  auto m = synthetic(t);
  auto a = tokens(3 * 25, 3);
  StatisticsCapture cap(m->config, CaptureOptions{});
  run(*m, &cap, a, 3, 25);
  auto res = analyze_capture(cap, m->config, 1e-6);
  const int d = 32;
  for (int l = 0; l < 4; ++l) {
    const auto& s = m->config.layers[l];
    const auto& w = m->layers[l];
    const auto& b = res.blocks[l];
    if (s.n_head > 0) {  // E[a] = Wo·E[heads] + bo, by linearity
      const int q = s.n_head * 8;
      for (int o = 0; o < d; ++o) {
        double v = w.bo ? w.bo[o] : 0;
        for (int j = 0; j < q; ++j) v += w.wo[o * q + j] * b.head_mean[j];
        EXPECT_NEAR(b.attn_out_mean[o], v, 1e-4);
      }
    }
    if (s.ffn > 0) {  // E[m] = Wdown·E[act] + b_down
      for (int o = 0; o < d; ++o) {
        double v = w.b_down ? w.b_down[o] : 0;
        for (int j = 0; j < s.ffn; ++j) v += w.w_down[o * s.ffn + j] * b.channel_mean[j];
        EXPECT_NEAR(b.mlp_out_mean[o], v, 1e-4);
      }
    }
    EXPECT_EQ(b.head_entropy.size(), static_cast<size_t>(s.n_head));
    EXPECT_EQ(b.channel_entropy.size(), static_cast<size_t>(s.ffn));
  }
}

TEST(Capture, ProjectionIsOrthonormalAndDeterministic) {
  test::TempDir t;
  auto m = synthetic(t);
  CaptureOptions o;
  o.max_dim = 16;
  o.proj_dim = 12;
  o.seed = 5;
  StatisticsCapture c1(m->config, o), c2(m->config, o);
  ASSERT_TRUE(c1.projected());
  ASSERT_EQ(c1.joint_dim(), 12);
  EXPECT_EQ(c1.projection(), c2.projection());
  const auto& R = c1.projection();  // 32×12
  for (int i = 0; i < 12; ++i)
    for (int j = 0; j < 12; ++j) {
      double s = 0;
      for (int k = 0; k < 32; ++k) s += static_cast<double>(R[k * 12 + i]) * R[k * 12 + j];
      EXPECT_NEAR(s, i == j ? 1.0 : 0.0, 1e-5);
    }
  auto a = tokens(2 * 20, 4);
  run(*m, &c1, a, 2, 20);
  run(*m, &c2, a, 2, 20);
  auto r1 = analyze_capture(c1, m->config, 1e-6), r2 = analyze_capture(c2, m->config, 1e-6);
  for (int l = 0; l < 4; ++l) EXPECT_EQ(r1.blocks[l].te, r2.blocks[l].te);
}

// Fewer tokens than the joint dimension (48 rows, 128 wide) make every joint covariance singular; with a
// ridge far below the rounding noise, Cholesky fails and analyze_capture raises each block's ridge 10× at a
// time until it succeeds, records it, and keeps the three TE terms of a block on that one ridge.
TEST(Capture, SingularJointCovarianceRaisesTheRidge) {
  test::TempDir t;
  auto m = synthetic(t);
  auto a = tokens(3 * 16, 9);
  CaptureOptions o;
  o.products = Accumulation::kBlockedFloat32;
  StatisticsCapture cap(m->config, o);
  run(*m, &cap, a, 3, 16);
  const double tiny = 1e-16;
  auto res = analyze_capture(cap, m->config, tiny);
  bool raised = false;
  for (const BlockAnalysis& b : res.blocks) {
    EXPECT_GE(b.ridge, tiny);
    EXPECT_LE(b.ridge, kMaxRidge);
    raised = raised || b.ridge > tiny;
    EXPECT_TRUE(std::isfinite(b.te));
  }
  EXPECT_TRUE(raised);
  // the requested ridge when it suffices
  for (const BlockAnalysis& b : analyze_capture(cap, m->config, 1e-2).blocks) EXPECT_EQ(b.ridge, 1e-2);
}

// The way the GPU's fused capture hands back a block: block_statistics(l) of one capture absorbed into
// another, block by block, is exactly merge() — same numbers, same order — and statistics of the wrong
// shape are refused.
TEST(Capture, AbsorbedBlockStatisticsEqualMerge) {
  test::TempDir t;
  auto m = synthetic(t);
  auto a = tokens(4 * 20, 3);
  std::vector<int32_t> a1(a.begin(), a.begin() + 40), a2(a.begin() + 40, a.end());
  CaptureOptions o;
  o.max_dim = 16;  // project (d = 32) so the joint vectors and the projection both take part
  o.proj_dim = 8;
  StatisticsCapture merged(m->config, o), absorbed(m->config, o), second(m->config, o);
  run(*m, &merged, a1, 2, 20);
  run(*m, &absorbed, a1, 2, 20);
  run(*m, &second, a2, 2, 20);
  merged.merge(second);
  for (int l = 0; l < m->config.n_layers(); ++l) absorbed.absorb_block(l, second.block_statistics(l));
  absorbed.add_tokens(second.tokens());
  ASSERT_EQ(absorbed.tokens(), merged.tokens());
  for (int l = 0; l < m->config.n_layers(); ++l) {
    SCOPED_TRACE(l);
    EXPECT_EQ(absorbed.block_moments(l).covariance(), merged.block_moments(l).covariance());
    EXPECT_EQ(absorbed.block_moments(l).mean(), merged.block_moments(l).mean());
    ASSERT_EQ(absorbed.head_moments(l).size(), merged.head_moments(l).size());
    for (size_t h = 0; h < merged.head_moments(l).size(); ++h)
      EXPECT_EQ(absorbed.head_moments(l)[h].covariance(), merged.head_moments(l)[h].covariance());
    EXPECT_EQ(absorbed.channel_stats(l).variance(), merged.channel_stats(l).variance());
    EXPECT_EQ(absorbed.channel_stats(l).mean(), merged.channel_stats(l).mean());
    EXPECT_EQ(absorbed.attn_output_mean(l), merged.attn_output_mean(l));
    EXPECT_EQ(absorbed.mlp_output_mean(l), merged.mlp_output_mean(l));
    EXPECT_EQ(absorbed.block_cosine(l), merged.block_cosine(l));
  }
  // a block's statistics into a block of another shape (the synthetic model's blocks differ in heads)
  int with_heads = -1, other = -1;
  for (int l = 0; l < m->config.n_layers(); ++l) {
    if (with_heads < 0 && m->config.layers[l].n_head > 0) with_heads = l;
    if (with_heads >= 0 && m->config.layers[l].n_head != m->config.layers[with_heads].n_head) other = l;
  }
  ASSERT_GE(other, 0) << "the synthetic model should mix head counts";
  EXPECT_THROW(absorbed.absorb_block(other, second.block_statistics(with_heads)), std::invalid_argument);
}
