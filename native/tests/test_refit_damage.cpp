// The refit-aware damage of partial cuts (measure/refit_damage.h): each step of a removal order against the
// residual of the least-squares refit computed from the samples themselves, its closed-form special cases,
// and the per-block driver on a synthetic GQA model.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <algorithm>

#include "core/apply/least_squares.h"
#include "core/error.h"
#include "core/capture/layer_inputs.h"
#include "core/forward/forward.h"
#include "core/measure/refit_damage.h"
#include "sample_util.h"
#include "synthetic_util.h"

using namespace ep;

namespace {

using test::Samples;

// E‖W x − W' x_K − b‖² over the samples, the refit (undamped) computed by the compensation's own solve
double refit_residual(const Samples& s, const std::vector<float>& w, int64_t rows, const std::vector<int64_t>& kept) {
  if (kept.empty()) {  // nothing kept: the mean is the best stand-in, the residual the output variance
    double e = 0;
    for (int64_t o = 0; o < rows; ++o)
      for (int64_t i = 0; i < s.cols; ++i)
        for (int64_t j = 0; j < s.cols; ++j) e += w[o * s.cols + i] * s.cov[i * s.cols + j] * w[o * s.cols + j];
    return e;
  }
  const ColumnRefit f = refit_kept_columns(w.data(), rows, s.cols, kept, s.mean, s.cov, 0.0);
  EXPECT_TRUE(f.refitted);
  const int64_t k = static_cast<int64_t>(kept.size());
  double e = 0;
  for (int64_t t = 0; t < s.n; ++t)
    for (int64_t o = 0; o < rows; ++o) {
      double v = -f.shift[o];
      for (int64_t j = 0; j < s.cols; ++j) v += w[o * s.cols + j] * s.x[t * s.cols + j];
      for (int64_t i = 0; i < k; ++i) v -= static_cast<double>(f.weight[o * k + i]) * s.x[t * s.cols + kept[i]];
      e += v * v;
    }
  return e / s.n;
}

}  // namespace

TEST(RefitDamage, StepsAreTheRefitResidualsGrowthAlongTheOrder) {
  const int64_t rows = 5, cols = 8;
  const Samples s = test::correlated_samples(4000, cols, 3);
  const std::vector<float> w = test::random_weight(rows, cols, 4);
  // units: {6}, {1, 3} (a two-column unit, like a head), {0}, {7}, {2, 4, 5}
  const std::vector<std::vector<int64_t>> units{{6}, {1, 3}, {0}, {7}, {2, 4, 5}};
  const std::vector<double> steps = refit_removal_steps(w.data(), rows, cols, s.cov, units);
  ASSERT_EQ(steps.size(), units.size());
  std::vector<char> removed(cols, 0);
  double cumulative = 0;
  for (size_t k = 0; k < units.size(); ++k) {
    for (int64_t j : units[k]) removed[j] = 1;
    std::vector<int64_t> kept;
    for (int64_t j = 0; j < cols; ++j)
      if (!removed[j]) kept.push_back(j);
    cumulative += steps[k];
    const double residual = refit_residual(s, w, rows, kept);
    EXPECT_NEAR(cumulative, residual, 1e-4 * (1 + residual)) << "after unit " << k;
    EXPECT_GE(steps[k], 0);
  }
}

TEST(RefitDamage, UncorrelatedUnitsCostTheirOwnContribution) {
  const int64_t rows = 4, cols = 6;
  const Samples s = test::correlated_samples(200, cols, 9, /*diagonal=*/true);
  std::vector<double> cov(cols * cols, 0);  // exactly diagonal
  for (int64_t j = 0; j < cols; ++j) cov[j * cols + j] = s.cov[j * cols + j];
  const std::vector<float> w = test::random_weight(rows, cols, 10);
  const std::vector<std::vector<int64_t>> units{{3}, {0}, {5}, {1}, {4}, {2}};
  const std::vector<double> steps = refit_removal_steps(w.data(), rows, cols, cov, units);
  for (size_t k = 0; k < units.size(); ++k) {
    const int64_t j = units[k][0];
    double norm = 0;
    for (int64_t o = 0; o < rows; ++o) norm += static_cast<double>(w[o * cols + j]) * w[o * cols + j];
    EXPECT_NEAR(steps[k], cov[j * cols + j] * norm, 1e-6 * cov[j * cols + j] * norm) << "unit " << j;
  }
}

TEST(RefitDamage, AUnitTheKeptOnesReproduceCostsNothingAndItsTwinCarriesBoth) {
  // column 1 is a copy of column 0: removing 1 first costs nothing (0 restores it); removing 0 afterwards costs
  // what both wrote together.
  const int64_t rows = 3, cols = 4;
  Samples s = test::correlated_samples(500, cols, 21);
  for (int64_t i = 0; i < cols; ++i) {
    s.cov[1 * cols + i] = s.cov[0 * cols + i];
    s.cov[i * cols + 1] = s.cov[i * cols + 0];
  }
  s.cov[1 * cols + 1] = s.cov[0];
  std::vector<float> w = test::random_weight(rows, cols, 22);
  // make 0 and 1 uncorrelated with 2 and 3, so the pair's joint contribution is a closed form
  for (int64_t i : {0, 1})
    for (int64_t j : {2, 3}) s.cov[i * cols + j] = s.cov[j * cols + i] = 0;
  const std::vector<double> steps = refit_removal_steps(w.data(), rows, cols, s.cov, {{1}, {0}, {2}, {3}});
  double pair = 0;
  for (int64_t o = 0; o < rows; ++o) pair += std::pow(static_cast<double>(w[o * cols]) + w[o * cols + 1], 2) * s.cov[0];
  EXPECT_NEAR(steps[0], 0, 1e-6 * pair);
  EXPECT_NEAR(steps[1], pair, 1e-6 * pair);
}

TEST(RefitDamage, BadUnitsAreRefused) {
  const std::vector<float> w = test::random_weight(2, 3, 1);
  const std::vector<double> cov{1, 0, 0, 0, 1, 0, 0, 0, 1};
  EXPECT_THROW(refit_removal_steps(w.data(), 2, 3, cov, {{0}, {0}}), std::invalid_argument);
  EXPECT_THROW(refit_removal_steps(w.data(), 2, 3, cov, {{3}}), std::invalid_argument);
  EXPECT_THROW(refit_removal_steps(w.data(), 2, 3, std::vector<double>(4, 0), {{0}}), std::invalid_argument);
  // constant inputs: nothing for a refit (or the mean) to miss
  const std::vector<double> steps = refit_removal_steps(w.data(), 2, 3, std::vector<double>(9, 0), {{0}, {1}, {2}});
  for (double v : steps) EXPECT_EQ(v, 0);
}

TEST(RefitDamage, PerBlockDriverMapsKvGroupsAndChannelsByIndex) {
  test::TempDir t;
  // GQA: 6 query heads in 3 KV groups of 2, head_dim 8, 20 channels, 2 blocks
  auto m = test::small_synthetic_model(t, 48, 300, 8, 2, 6, 3, 20, 7);
  const int T = 16, seqs = 12;
  std::vector<int32_t> calib = test::random_tokens(T * seqs, 300, 5);
  RemovalOrders orders;
  orders.attn_groups = {{2, 0, 1}, {}};
  orders.mlp_channels = {{}, std::vector<int>(20)};
  std::iota(orders.mlp_channels[1].begin(), orders.mlp_channels[1].end(), 0);
  std::reverse(orders.mlp_channels[1].begin(), orders.mlp_channels[1].end());
  TokenBatches in{calib.data(), seqs, T, 4};
  // a second set of orders (another ranking) from the same capture: block 0's groups in index order
  RemovalOrders other = orders;
  other.attn_groups[0] = {0, 1, 2};
  int passes = 0;
  const auto both = measure_refit_damage(*m, {orders, other}, in, 1, nullptr, {}, &passes);  // a tiny budget: one pass per sublayer
  ASSERT_EQ(both.size(), 2u);
  const RefitDamage& r = both[0];
  EXPECT_EQ(passes, 2);
  EXPECT_TRUE(r.attn[1].empty());
  EXPECT_TRUE(r.mlp[0].empty());
  ASSERT_EQ(r.attn[0].size(), 3u);
  ASSERT_EQ(r.mlp[1].size(), 20u);
  // the same steps from the capture and the solve directly
  std::vector<char> want{1, 1};
  LayerInputCapture cap(m->config, want, want);
  ForwardRequest fr;
  fr.tokens = calib.data();
  fr.n_seqs = seqs;
  fr.seq_len = T;
  fr.hooks = &cap;
  forward(*m, fr);
  LayerBuffers b0, b1;
  const LayerWeights w0 = m->layer_weights(0, b0), w1 = m->layer_weights(1, b1);
  auto cols_of_group = [](int gq) {
    std::vector<int64_t> c;
    for (int q = 2 * gq; q < 2 * gq + 2; ++q)
      for (int e = 0; e < 8; ++e) c.push_back(q * 8 + e);
    return c;
  };
  const auto a = refit_removal_steps(w0.wo, 48, 48, cap.attn_input(0)->covariance(), {cols_of_group(2), cols_of_group(0), cols_of_group(1)});
  EXPECT_NEAR(r.attn[0][2], a[0], 1e-6 * (1 + a[0]));
  EXPECT_NEAR(r.attn[0][0], a[1], 1e-6 * (1 + a[1]));
  EXPECT_NEAR(r.attn[0][1], a[2], 1e-6 * (1 + a[2]));
  const auto a2 = refit_removal_steps(w0.wo, 48, 48, cap.attn_input(0)->covariance(), {cols_of_group(0), cols_of_group(1), cols_of_group(2)});
  for (int gq = 0; gq < 3; ++gq) EXPECT_NEAR(both[1].attn[0][gq], a2[gq], 1e-6 * (1 + a2[gq]));
  EXPECT_EQ(both[1].mlp[1], r.mlp[1]);
  std::vector<std::vector<int64_t>> ch;
  for (int j = 19; j >= 0; --j) ch.push_back({j});
  const auto c = refit_removal_steps(w1.w_down, 48, 20, cap.mlp_input(1)->covariance(), ch);
  for (int k = 0; k < 20; ++k) EXPECT_NEAR(r.mlp[1][19 - k], c[k], 1e-6 * (1 + c[k]));
  // the steps add up to the whole layer's output variance, what its mean leaves
  const auto& cov = cap.mlp_input(1)->covariance();
  double total = 0;
  for (int o = 0; o < 48; ++o)
    for (int i = 0; i < 20; ++i)
      for (int j = 0; j < 20; ++j) total += static_cast<double>(w1.w_down[o * 20 + i]) * cov[i * 20 + j] * w1.w_down[o * 20 + j];
  EXPECT_NEAR(std::accumulate(r.mlp[1].begin(), r.mlp[1].end(), 0.0), total, 1e-6 * total);
  // orders that are not lists of distinct units are refused
  RemovalOrders bad = orders;
  bad.attn_groups[0] = {0, 0};
  EXPECT_THROW(measure_refit_damage(*m, {bad}, in, 1, nullptr, {}), Error);
  bad.attn_groups[0] = {3};
  EXPECT_THROW(measure_refit_damage(*m, {bad}, in, 1, nullptr, {}), Error);
}
