// The per-unit weight magnitudes (the `--importance weight` ablation) against a direct computation that
// walks each matrix once in storage order and adds every squared weight to the unit it belongs to: query
// head h owns rows h·hd.. of W_q and columns h·hd.. of W_o; channel j owns row j of W_gate and W_up and
// column j of W_down.
#include <cmath>

#include "core/load/model.h"
#include "core/measure/unit_weights.h"
#include "core/synthetic/synthetic_model.h"
#include "test_util.h"

using namespace ep;

TEST(UnitWeights, MagnitudesEqualEachUnitsSquaredWeights) {
  test::TempDir t;
  SyntheticSpec spec;
  ModelConfig& c = spec.config;
  c.dim = 24;
  c.vocab = 50;
  c.head_dim = 4;
  c.layers = {LayerShape{6, 2, 10, false, false, false}, LayerShape{0, 0, 7, false, true, false}, LayerShape{2, 1, 0, false, false, true}};
  spec.seed = 13;
  write_synthetic_gguf(spec, t.file("u.gguf"));
  auto m = load_model(t.file("u.gguf"));
  const UnitWeightMagnitudes got = unit_weight_magnitudes(*m);
  const int d = c.dim, hd = c.head_dim;
  ASSERT_EQ(got.heads.size(), 3u);
  for (int l = 0; l < 3; ++l) {
    const LayerShape& s = m->config.layers[l];
    const LayerWeights& w = m->layers[l];
    std::vector<double> heads(s.n_head, 0.0), channels(s.ffn, 0.0);
    const int q = s.n_head * hd;
    for (int r = 0; r < q; ++r)
      for (int k = 0; k < d; ++k) heads[r / hd] += std::pow(w.wq[r * d + k], 2);
    for (int o = 0; o < d; ++o)
      for (int k = 0; k < q; ++k) heads[k / hd] += std::pow(w.wo[o * q + k], 2);
    for (int j = 0; j < s.ffn; ++j)
      for (int k = 0; k < d; ++k) channels[j] += std::pow(w.w_gate[j * d + k], 2) + std::pow(w.w_up[j * d + k], 2);
    for (int o = 0; o < d; ++o)
      for (int j = 0; j < s.ffn; ++j) channels[j] += std::pow(w.w_down[o * s.ffn + j], 2);
    ASSERT_EQ(got.heads[l].size(), heads.size());
    ASSERT_EQ(got.channels[l].size(), channels.size());
    for (size_t h = 0; h < heads.size(); ++h) EXPECT_NEAR(got.heads[l][h], heads[h], 1e-9 * heads[h]) << l << "/" << h;
    for (size_t j = 0; j < channels.size(); ++j) EXPECT_NEAR(got.channels[l][j], channels[j], 1e-9 * channels[j]) << l << "/" << j;
  }
}
