// The plan loss (core/apply/plan_loss.h) against the pruned models themselves: each figure must equal the
// mean next-token loss of the model apply writes — sliced, saved as GGUF, loaded back — for the plan and for the
// plan with one partly cut layer restored, under bias and under least-squares compensation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "core/apply/apply.h"
#include "core/apply/refit.h"
#include "core/apply/save_gguf.h"
#include "core/error.h"
#include "core/forward/forward.h"
#include "core/load/model.h"
#include "core/apply/plan_loss.h"
#include "cpu_block_runner.h"
#include "forward_util.h"
#include "sample_util.h"
#include "synthetic_util.h"
#include "test_util.h"

using namespace ep;

namespace {

// Every kind of cut at once: block 0's attention whole (its mean lands in the token embeddings) and some of its
// channels; block 1 whole (folded into block 0); a KV group and channels of block 2; block 3's MLP whole, some
// of its heads.
std::vector<PlanBlock> mixed_plan(const Model& m) {
  std::vector<PlanBlock> p = test::keep_everything_plan(m);
  p[0].kept_kv.clear(), p[0].kept_heads.clear(), p[0].attn_removed = true;
  p[0].kept_channels = {0, 2, 3, 5, 8, 13, 21, 22, 30, 34, 39};
  p[1] = PlanBlock{true, true, true, {}, {}, {}, true};
  p[2].kept_kv = {1}, p[2].kept_heads = {3, 4, 5};
  p[2].kept_channels.resize(25);
  p[3].kept_heads = {0, 1, 3, 5};
  p[3].kept_channels.clear(), p[3].mlp_removed = true;
  return p;
}

// log-softmax of one row, in double
std::vector<double> log_probs(const float* row, int V) {
  double mx = row[0];
  for (int i = 1; i < V; ++i) mx = std::max(mx, static_cast<double>(row[i]));
  double z = 0;
  for (int i = 0; i < V; ++i) z += std::exp(row[i] - mx);
  std::vector<double> out(V);
  for (int i = 0; i < V; ++i) out[i] = row[i] - mx - std::log(z);
  return out;
}

// The mean next-token NLL of the model apply writes for `plan` — sliced and loaded back from GGUF, each window
// run alone — and its mean KL from the source model's next-token distribution over every position, in double.
PlanLoss written_loss(const Model& m, const std::vector<PlanBlock>& plan, const std::vector<BlockMeans>& means, const std::vector<LayerRefit>* refits,
                      const std::vector<int32_t>& toks, int seqs, int T, const test::TempDir& t, const std::string& tag) {
  ApplyOptions o;
  o.refits = refits;
  save_gguf(prune_model(m, plan, means, o), m, t.file(tag + ".gguf"), {});
  auto pruned = load_model(t.file(tag + ".gguf"));
  const int V = m.config.vocab;
  double nll = 0, kl = 0;
  for (int s = 0; s < seqs; ++s) {
    const std::vector<int32_t> w(toks.begin() + s * T, toks.begin() + (s + 1) * T);
    const auto a = test::full_logits(*pruned, w), b = test::full_logits(m, w);
    for (int r = 0; r < T; ++r) {
      const auto lp = log_probs(&a[static_cast<size_t>(r) * V], V), lq = log_probs(&b[static_cast<size_t>(r) * V], V);
      if (r < T - 1) nll -= lp[w[r + 1]];
      for (int i = 0; i < V; ++i) kl += std::exp(lq[i]) * (lq[i] - lp[i]);
    }
  }
  return {nll / (seqs * (T - 1.0)), kl / (seqs * static_cast<double>(T))};
}

// The case both drivers are measured on (a fixture: its members are the tests' names): mixed_plan on a 4-block
// GQA model, five windows of 24 tokens, random means, and the plan's least-squares refits on other windows.
class PlanLossOnMixedCase : public ::testing::Test {
 protected:
  const test::TempDir t;
  const std::unique_ptr<Model> m = test::small_synthetic_model(t, 48, 300, 8, 4, 6, 2, 40, 31);
  static constexpr int T = 24, seqs = 5;
  const std::vector<int32_t> toks = test::random_tokens(T * seqs, 300, 7);
  const std::vector<int32_t> calib = test::random_tokens(32 * 12, 300, 8);
  const std::vector<BlockMeans> means = test::random_means(*m, 3);
  const std::vector<PlanBlock> plan = mixed_plan(*m);
  const std::vector<LayerRefit> refits = refit_plan(*m, plan, TokenBatches{calib.data(), 12, 32, 4}, {}, nullptr, {});
};

}  // namespace

TEST_F(PlanLossOnMixedCase, EqualsTheWrittenModelsForThePlanAndEachRestoredLayer) {
  for (const std::vector<LayerRefit>* r : {static_cast<const std::vector<LayerRefit>*>(nullptr), &refits}) {
    const std::string mode = r ? "ls" : "bias";
    PlanLossRequest req{plan, means, r, true};
    req.memory_budget = 1;  // one window per group: the group loop runs five times
    const PlanLosses got = measure_plan_losses(*m, TokenBatches{toks.data(), seqs, T, 1}, req, nullptr, {});
    const PlanLoss intact = written_loss(*m, test::keep_everything_plan(*m), means, nullptr, toks, seqs, T, t, mode + "-intact");
    EXPECT_NEAR(got.intact_nll, intact.nll, 2e-5);
    EXPECT_NEAR(intact.kl, 0.0, 1e-9);  // the reference's KL is what it says
    const PlanLoss want_plan = written_loss(*m, plan, means, r, toks, seqs, T, t, mode + "-plan");
    EXPECT_NEAR(got.plan.nll, want_plan.nll, 2e-5) << mode;
    EXPECT_NEAR(got.plan.kl, want_plan.kl, 2e-5) << mode;
    EXPECT_GT(got.plan.kl, 1e-3);
    EXPECT_GT(std::abs(got.plan.nll - got.intact_nll), 1e-3) << "the cuts change the loss: the comparisons above mean something";
    // the partly cut layers, each restored: block 0's MLP, block 2's attention and MLP, block 3's attention
    const std::vector<std::pair<int, bool>> partly = {{0, false}, {2, true}, {2, false}, {3, true}};
    for (int l = 0; l < 4; ++l)
      for (bool attn : {true, false}) {
        const bool cut = std::find(partly.begin(), partly.end(), std::make_pair(l, attn)) != partly.end();
        const PlanLoss got_v = (attn ? got.attn_restored : got.mlp_restored)[l];
        const double v = got_v.nll;
        ASSERT_EQ(cut, !std::isnan(v)) << "block " << l << (attn ? " attention" : " MLP");
        if (!cut) continue;
        std::vector<PlanBlock> variant = plan;
        std::vector<LayerRefit> variant_refits = r ? *r : std::vector<LayerRefit>{};
        if (attn) variant[l].kept_kv = test::keep_everything_plan(*m)[l].kept_kv, variant[l].kept_heads = test::keep_everything_plan(*m)[l].kept_heads;
        else variant[l].kept_channels = test::keep_everything_plan(*m)[l].kept_channels;
        if (r) (attn ? variant_refits[l].attn : variant_refits[l].mlp) = false;
        const PlanLoss want = written_loss(*m, variant, means, r ? &variant_refits : nullptr, toks, seqs, T, t, mode + "-v" + std::to_string(l) + (attn ? "a" : "m"));
        EXPECT_NEAR(v, want.nll, 2e-5) << mode << " block " << l << (attn ? " attention" : " MLP") << " restored";
        EXPECT_NEAR(got_v.kl, want.kl, 2e-5) << mode << " block " << l << (attn ? " attention" : " MLP") << " restored";
        EXPECT_GT(std::abs(v - got.plan.nll), 1e-5) << "restoring a cut layer changes the loss";
      }
    // without leave-one-out, all windows in one group: the same plan loss (up to the rounding of other batch
    // shapes), no variants
    PlanLossRequest plain{plan, means, r, false};
    const PlanLosses p = measure_plan_losses(*m, TokenBatches{toks.data(), seqs, T, 1}, plain, nullptr, {});
    EXPECT_NEAR(p.plan.nll, got.plan.nll, 1e-6);
    for (int l = 0; l < 4; ++l) EXPECT_TRUE(std::isnan(p.attn_restored[l].nll) && std::isnan(p.mlp_restored[l].kl));
  }
}

TEST(PlanLoss, RefusesBadInput) {
  test::TempDir t;
  auto m = test::small_synthetic_model(t, 48, 300, 8, 2, 6, 2, 40, 31);
  std::vector<int32_t> toks = test::random_tokens(16, 300, 1);
  PlanLossRequest req{test::keep_everything_plan(*m), {}, nullptr, false};
  EXPECT_THROW(measure_plan_losses(*m, TokenBatches{toks.data(), 1, 1, 1}, req, nullptr, {}), Error);  // windows of one token
  toks[3] = 300;  // outside the vocabulary
  EXPECT_THROW(measure_plan_losses(*m, TokenBatches{toks.data(), 1, 16, 1}, req, nullptr, {}), Error);
  toks[3] = 1;
  req.plan.pop_back();  // a plan for another model
  EXPECT_THROW(measure_plan_losses(*m, TokenBatches{toks.data(), 1, 16, 1}, req, nullptr, {}), Error);
}

TEST_F(PlanLossOnMixedCase, BlockMajorDriverOnARunnerEqualsTheCpuDriver) {
  // The GPU path's logic on a CPU runner: every figure as the CPU driver gives it, with the hidden states held by
  // the runner and with a budget too small to hold them (host states, groups of one window).
  const PlanLossRequest req{plan, means, &refits, true};
  const TokenBatches windows{toks.data(), seqs, T, 1};
  const PlanLosses cpu = measure_plan_losses(*m, windows, req, nullptr, {});
  for (int64_t budget : {int64_t{1} << 30, int64_t{T}}) {
    std::atomic<int> loads{0};
    int64_t rows_asked = 0;
    const PlanLosses got = measure_plan_losses_block_major(*m, windows, req, nullptr, {}, [&](int64_t rows) {
      rows_asked = rows;
      return std::make_unique<test::CpuBlockRunner>(*m, T, rows, budget, &loads);
    });
    EXPECT_NEAR(got.intact_nll, cpu.intact_nll, 1e-5);
    EXPECT_NEAR(got.plan.nll, cpu.plan.nll, 1e-5);
    EXPECT_NEAR(got.plan.kl, cpu.plan.kl, 1e-5);
    for (int l = 0; l < 4; ++l)
      for (bool attn : {true, false}) {
        const PlanLoss a = (attn ? got.attn_restored : got.mlp_restored)[l], b = (attn ? cpu.attn_restored : cpu.mlp_restored)[l];
        EXPECT_EQ(std::isnan(a.nll), std::isnan(b.nll));
        if (std::isnan(b.nll)) continue;
        EXPECT_NEAR(a.nll, b.nll, 1e-5);
        EXPECT_NEAR(a.kl, b.kl, 1e-5);
      }
    // per group and block: the source, the plan, and each variant branching off there (4 partly cut layers)
    const int groups = budget > T * seqs * 6 ? 1 : seqs;
    EXPECT_EQ(rows_asked, budget > T * seqs * 6 ? int64_t{T} * seqs : int64_t{T});
    EXPECT_EQ(loads.load(), groups * (2 * 4 + 4));
  }
}
