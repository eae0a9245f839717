// The measured sensitivities against an independent path: each single removal sliced and compensated by
// apply (prune_model + save_gguf, loaded back), its logits from the plain forward pass, and the loss increase
// and KL divergence computed here in double precision.
#include <cmath>
#include <memory>
#include <random>
#include <tuple>

#include "core/apply/apply.h"
#include "core/error.h"
#include "core/forward/forward.h"
#include "core/load/model.h"
#include "core/apply/save_gguf.h"
#include "core/measure/removal_parts.h"
#include "core/measure/sensitivity.h"
#include "core/synthetic/synthetic_model.h"
#include "cpu_block_runner.h"
#include "forward_util.h"
#include "synthetic_util.h"
#include "test_util.h"

using namespace ep;

namespace {

std::vector<std::vector<double>> log_softmax_rows(const std::vector<float>& logits, int V) {
  std::vector<std::vector<double>> out;
  for (size_t r = 0; r * V < logits.size(); ++r) {
    double mx = -1e300;
    for (int v = 0; v < V; ++v) mx = std::max(mx, static_cast<double>(logits[r * V + v]));
    double s = 0;
    for (int v = 0; v < V; ++v) s += std::exp(logits[r * V + v] - mx);
    std::vector<double> row(V);
    for (int v = 0; v < V; ++v) row[v] = logits[r * V + v] - mx - std::log(s);
    out.push_back(row);
  }
  return out;
}

// Each window's log-probabilities [window][position][vocab] from the plain forward pass, in double.
using WindowLogProbs = std::vector<std::vector<std::vector<double>>>;
WindowLogProbs window_log_probs(const Model& m, const std::vector<int32_t>& toks, int n_seqs, int T) {
  WindowLogProbs out;
  for (int s = 0; s < n_seqs; ++s)
    out.push_back(log_softmax_rows(test::full_logits(m, {toks.begin() + s * T, toks.begin() + (s + 1) * T}), m.config.vocab));
  return out;
}

// Mean next-token NLL over the predicted positions.
double mean_nll(const WindowLogProbs& lp, const std::vector<int32_t>& toks, int T) {
  double nll = 0;
  for (size_t s = 0; s < lp.size(); ++s)
    for (int p = 0; p + 1 < T; ++p) nll -= lp[s][p][toks[s * T + p + 1]];
  return nll / (lp.size() * (T - 1));
}

// What the driver reports for a removal, computed directly: the NLL increase and the mean KL(base ‖ cut)
// over every position.
struct Damage {
  double nll, kl;
};
Damage damage_of(const WindowLogProbs& base, const WindowLogProbs& cut, const std::vector<int32_t>& toks, int T) {
  double kl = 0;
  for (size_t s = 0; s < base.size(); ++s)
    for (int pos = 0; pos < T; ++pos)
      for (size_t v = 0; v < base[s][pos].size(); ++v) kl += std::exp(base[s][pos][v]) * (base[s][pos][v] - cut[s][pos][v]);
  return {mean_nll(cut, toks, T) - mean_nll(base, toks, T), kl / (base.size() * T)};
}

// A plan that keeps every unit of every block (the tests then cut what they measure).
std::vector<PlanBlock> keep_everything(const ModelConfig& c) {
  std::vector<PlanBlock> plan(c.n_layers());
  for (int l = 0; l < c.n_layers(); ++l) {
    const LayerShape& s = c.layers[l];
    for (int k = 0; k < s.n_kv_head; ++k) plan[l].kept_kv.push_back(k);
    for (int h = 0; h < s.n_head; ++h) plan[l].kept_heads.push_back(h);
    for (int j = 0; j < s.ffn; ++j) plan[l].kept_channels.push_back(j);
  }
  return plan;
}

}  // namespace

TEST(Sensitivity, EachRemovalMatchesTheSlicedModel) {
  test::TempDir t;
  auto m = test::small_synthetic_model(t, 32, 200, 8, 3, 4, 2, 24, 5);
  const ModelConfig& c = m->config;
  const int L = 3, T = 12, n_seqs = 3, V = c.vocab;
  std::vector<int32_t> toks;
  for (int i = 0; i < n_seqs * T; ++i) toks.push_back((i * 53 + 7) % V);

  std::mt19937 g(3);
  std::normal_distribution<double> n(0, 0.2);
  SublayerMeans sm;
  std::vector<BlockMeans> bm(L);
  for (int l = 0; l < L; ++l) {
    std::vector<float> a(c.dim), mm(c.dim);
    for (int i = 0; i < c.dim; ++i) {
      a[i] = static_cast<float>(n(g));
      mm[i] = static_cast<float>(n(g));
      bm[l].attn_out_mean.push_back(a[i]);
      bm[l].mlp_out_mean.push_back(mm[i]);
    }
    sm.attn_out.push_back(a);
    sm.mlp_out.push_back(mm);
  }
  const RemovalDamage r = measure_removal_damage(*m, toks.data(), n_seqs, T, sm, nullptr, [](int64_t, int64_t) {});

  // The intact model, window by window.
  const WindowLogProbs base = window_log_probs(*m, toks, n_seqs, T);
  EXPECT_NEAR(r.base_nll, mean_nll(base, toks, T), 1e-5);

  for (int l = 0; l < L; ++l)
    for (int kind = 0; kind < 3; ++kind) {
      std::vector<PlanBlock> plan = keep_everything(c);
      PlanBlock& p = plan[l];
      if (kind != 1) { p.attn_removed = true; p.kept_kv.clear(); p.kept_heads.clear(); }
      if (kind != 0) { p.mlp_removed = true; p.kept_channels.clear(); }
      p.removed = kind == 2;
      const std::string file = t.file("cut-" + std::to_string(l) + "-" + std::to_string(kind) + ".gguf");
      save_gguf(prune_model(*m, plan, bm, {}), *m, file, {});
      const Damage want = damage_of(base, window_log_probs(*load_model(file), toks, n_seqs, T), toks, T);
      const std::vector<double>* nll_of[3] = {&r.nll.attn, &r.nll.mlp, &r.nll.block};
      const std::vector<double>* kl_of[3] = {&r.kl.attn, &r.kl.mlp, &r.kl.block};
      EXPECT_NEAR((*nll_of[kind])[l], want.nll, 2e-5) << "block " << l << " kind " << kind;
      EXPECT_NEAR((*kl_of[kind])[l], want.kl, 2e-5) << "block " << l << " kind " << kind;
      EXPECT_GT((*kl_of[kind])[l], 0.0);
    }
}

// Partial cuts (some KV groups of an attention layer, some MLP channels) against the same independent path:
// apply slices them out and folds W_o[:, h]·μ_h and W_down[:, j]·μ_j into the output biases.
TEST(Sensitivity, PartialCutsMatchTheSlicedModel) {
  test::TempDir t;
  SyntheticSpec spec;
  ModelConfig& c = spec.config;
  c.dim = 32;
  c.vocab = 150;
  c.head_dim = 8;
  c.layers.assign(2, LayerShape{4, 2, 24, false, false, false});
  spec.seed = 9;
  write_synthetic_gguf(spec, t.file("base.gguf"));
  auto m = load_model(t.file("base.gguf"));
  const int L = 2, T = 10, n_seqs = 2, V = c.vocab, hd = c.head_dim;
  std::vector<int32_t> toks;
  for (int i = 0; i < n_seqs * T; ++i) toks.push_back((i * 37 + 11) % V);

  std::mt19937 g(4);
  std::normal_distribution<double> n(0, 0.3);
  const std::vector<int> cut_heads = {2, 3};  // KV group 1 with its two query heads
  const std::vector<int> cut_channels = {0, 3, 4, 10, 17, 23};
  std::vector<BlockMeans> bm(L);
  PartialCuts cuts;
  for (int l = 0; l < L; ++l) {
    for (int i = 0; i < 4 * hd; ++i) bm[l].head_mean.push_back(n(g));
    for (int j = 0; j < 24; ++j) bm[l].channel_mean.push_back(n(g));
    PartialCut a, f;
    a.units = cut_heads;
    for (int h : cut_heads)
      for (int e = 0; e < hd; ++e) a.means.push_back(static_cast<float>(bm[l].head_mean[h * hd + e]));
    f.units = cut_channels;
    for (int j : cut_channels) f.means.push_back(static_cast<float>(bm[l].channel_mean[j]));
    cuts.attn.push_back(a);
    cuts.mlp.push_back(f);
  }
  const RemovalDamage r = measure_removal_damage(*m, toks.data(), n_seqs, T, {}, nullptr, [](int64_t, int64_t) {}, &cuts);
  const WindowLogProbs base = window_log_probs(*m, toks, n_seqs, T);

  for (int l = 0; l < L; ++l)
    for (int kind = 0; kind < 2; ++kind) {
      std::vector<PlanBlock> plan = keep_everything(c);
      PlanBlock& p = plan[l];
      if (kind == 0) { p.kept_kv = {0}; p.kept_heads = {0, 1}; }
      else p.kept_channels = {1, 2, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 18, 19, 20, 21, 22};
      const std::string file = t.file("partial-" + std::to_string(l) + "-" + std::to_string(kind) + ".gguf");
      save_gguf(prune_model(*m, plan, bm, {}), *m, file, {});
      const Damage want = damage_of(base, window_log_probs(*load_model(file), toks, n_seqs, T), toks, T);
      const double got_nll = kind == 0 ? r.partial_nll.attn[l] : r.partial_nll.mlp[l];
      const double got_kl = kind == 0 ? r.partial_kl.attn[l] : r.partial_kl.mlp[l];
      EXPECT_NEAR(got_nll, want.nll, 2e-5) << "block " << l << " kind " << kind;
      EXPECT_NEAR(got_kl, want.kl, 2e-5) << "block " << l << " kind " << kind;
      EXPECT_GT(got_kl, 0.0);
    }
  EXPECT_TRUE(std::isnan(r.partial_kl.block[0]));
  // A cut naming a unit the layer does not have is refused.
  PartialCuts bad = cuts;
  bad.mlp[1].units.push_back(24);
  bad.mlp[1].means.push_back(0.0f);
  EXPECT_THROW(measure_removal_damage(*m, toks.data(), n_seqs, T, {}, nullptr, [](int64_t, int64_t) {}, &bad), Error);
}

// The block-major driver (the GPUs' path) on CPU runners against the CPU driver: the same sums whether the
// group's hidden states are held by the runner, halved into smaller groups to fit, kept on the host, or
// split between two runners; and each block's weights loaded once per group plus once per removal in it.
TEST(Sensitivity, BlockMajorDriverMatchesTheCpuDriver) {
  test::TempDir t;
  SyntheticSpec spec;
  ModelConfig& c = spec.config;
  c.dim = 32;
  c.vocab = 120;
  c.head_dim = 8;
  c.layers.assign(3, LayerShape{4, 2, 24, false, false, false});
  c.layers[1].n_head = 0;  // a block without attention: its attention removals are not measured
  c.layers[1].n_kv_head = 0;
  spec.seed = 21;
  write_synthetic_gguf(spec, t.file("base.gguf"));
  auto m = load_model(t.file("base.gguf"));
  const int L = 3, T = 9, n_seqs = 5, V = c.vocab, hd = c.head_dim;
  std::vector<int32_t> toks;
  for (int i = 0; i < n_seqs * T; ++i) toks.push_back((i * 31 + 5) % V);
  std::mt19937 g(8);
  std::normal_distribution<float> n(0, 0.3f);
  SublayerMeans sm;
  PartialCuts cuts;
  for (int l = 0; l < L; ++l) {
    std::vector<float> a(c.dim), f(c.dim);
    for (float& x : a) x = n(g);
    for (float& x : f) x = n(g);
    sm.attn_out.push_back(a);
    sm.mlp_out.push_back(f);
    PartialCut ha, ch;
    if (c.layers[l].n_head > 0) {
      ha.units = {1, 3};
      for (int e = 0; e < 2 * hd; ++e) ha.means.push_back(n(g));
    }
    ch.units = {2, 7, 19};
    for (int j = 0; j < 3; ++j) ch.means.push_back(n(g));
    cuts.attn.push_back(ha);
    cuts.mlp.push_back(ch);
  }
  const auto none = [](int64_t, int64_t) {};
  const RemovalDamage want = measure_removal_damage(*m, toks.data(), n_seqs, T, sm, nullptr, none, &cuts);
  const int removals = 2 /*attn, attn cut*/ * 2 + 3 /*mlp, block, mlp cut*/ * 3;

  struct Case {
    const char* name;
    int devices;
    int64_t budget_windows;  // held rows the runner accepts, in windows' worth of every slot
    int groups;              // groups of windows the driver should run, over all devices
  };
  // 5 windows: one group; halved 5 → 3 → 2 to fit two windows (groups of 2, 2, 1); halved to one window
  // that still does not fit, so on the host (5 groups); 3 + 2 windows on two runners.
  for (const Case& k : {Case{"held", 1, 100, 1}, Case{"halved to fit", 1, 2, 3}, Case{"host", 1, 0, 5}, Case{"two runners", 2, 100, 2}}) {
    std::atomic<int> loads{0};
    RunDevices dev;
    for (int i = 0; i < k.devices; ++i) dev.cuda_devices.push_back(i);
    const int64_t budget = k.budget_windows * T * (1 + removals);
    const removal::DamageSums sums = removal::measure_block_major(*m, toks.data(), n_seqs, T, sm, nullptr, none, &cuts, dev, [&](int, int64_t rows) {
      return std::make_unique<test::CpuBlockRunner>(*m, T, rows, budget, &loads);
    });
    const RemovalDamage got = removal::to_damage(c, &cuts, sums, n_seqs, T);
    EXPECT_NEAR(got.base_nll, want.base_nll, 1e-6) << k.name;
    auto same = [&](const std::vector<double>& a, const std::vector<double>& b, const char* what) {
      ASSERT_EQ(a.size(), b.size());
      for (size_t l = 0; l < a.size(); ++l) {
        if (std::isnan(b[l])) {
          EXPECT_TRUE(std::isnan(a[l])) << k.name << " " << what << " " << l;
          continue;
        }
        EXPECT_NEAR(a[l], b[l], 1e-6 + 1e-5 * std::abs(b[l])) << k.name << " " << what << " block " << l;
      }
    };
    for (auto [g2, w2, what] : {std::tuple{&got.kl, &want.kl, "kl"}, std::tuple{&got.nll, &want.nll, "nll"}, std::tuple{&got.partial_kl, &want.partial_kl, "partial kl"},
                                std::tuple{&got.partial_nll, &want.partial_nll, "partial nll"}}) {
      same(g2->attn, w2->attn, what);
      same(g2->mlp, w2->mlp, what);
      same(g2->block, w2->block, what);
    }
    // the runners that did not fit load nothing; each group loads every block once and each removal's block
    EXPECT_EQ(loads.load(), k.groups * (L + removals)) << k.name;
  }
}
