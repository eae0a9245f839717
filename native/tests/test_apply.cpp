// Apply + save: for every removal kind, the sliced model (written as GGUF and loaded back) gives the logits
// of the full-size model with the removed units zeroed and the same biases; compensation adds exactly
// W[:, removed]·μ.
#include <cmath>

#include "core/apply/apply.h"
#include "core/error.h"
#include "core/forward/forward.h"
#include "core/load/model.h"
#include "core/apply/save_gguf.h"
#include "core/synthetic/synthetic_model.h"
#include "forward_util.h"
#include "synthetic_util.h"
#include "test_util.h"

using namespace ep;

namespace {

// GQA: 3 query heads per KV head
std::unique_ptr<Model> base(const test::TempDir& t) { return test::small_synthetic_model(t, 48, 300, 8, 4, 6, 2, 40, 17); }

double compare(const Model& src, const std::vector<PlanBlock>& plan, const std::vector<BlockMeans>& means, const test::TempDir& t,
               const std::string& tag, ModelConfig* sliced_config = nullptr) {
  PrunedModel sliced = prune_model(src, plan, means, {});
  PrunedModel zeroed = prune_model(src, plan, means, {true});
  save_gguf(sliced, src, t.file(tag + "-sliced.gguf"), {});
  save_gguf(zeroed, src, t.file(tag + "-zeroed.gguf"), {});
  auto a = load_model(t.file(tag + "-sliced.gguf"));
  auto b = load_model(t.file(tag + "-zeroed.gguf"));
  if (sliced_config) *sliced_config = a->config;
  std::vector<int32_t> toks;
  for (int i = 0; i < 24; ++i) toks.push_back((i * 37 + 5) % 300);
  auto la = test::full_logits(*a, toks), lb = test::full_logits(*b, toks);
  double diff = 0;
  for (size_t i = 0; i < la.size(); ++i) diff = std::max(diff, static_cast<double>(std::abs(la[i] - lb[i])));
  return diff;
}

}  // namespace

TEST(Apply, EveryRemovalKindMatchesTheZeroedModel) {
  test::TempDir t;
  auto m = base(t);
  auto means = test::random_means(*m, 1);
  struct Case {
    std::string name;
    std::function<void(std::vector<PlanBlock>&)> edit;
  };
  std::vector<Case> cases = {
      {"heads", [](auto& p) { p[1].kept_heads = {0, 2, 3, 5}; }},  // one query head from each KV group
      {"kv-group", [](auto& p) { p[2].kept_kv = {1}; p[2].kept_heads = {3, 4, 5}; }},
      {"channels", [](auto& p) { p[0].kept_channels = {1, 2, 3, 5, 8, 13, 21, 34}; }},
      {"attention-layer", [](auto& p) { p[2].kept_kv.clear(); p[2].kept_heads.clear(); p[2].attn_removed = true; }},
      {"attention-layer-0", [](auto& p) { p[0].kept_kv.clear(); p[0].kept_heads.clear(); p[0].attn_removed = true; }},
      {"mlp-layer", [](auto& p) { p[1].kept_channels.clear(); p[1].mlp_removed = true; }},
      {"mlp-layer-last", [](auto& p) { p[3].kept_channels.clear(); p[3].mlp_removed = true; }},
      {"block", [](auto& p) { p[2] = PlanBlock{true, true, true, {}, {}, {}, true}; }},
      {"block-0", [](auto& p) { p[0] = PlanBlock{true, true, true, {}, {}, {}, true}; }},
      {"mixed", [](auto& p) {
         p[0].kept_channels = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
         p[1] = PlanBlock{true, true, true, {}, {}, {}, true};
         p[2].kept_kv = {0, 1}; p[2].kept_heads = {1, 2, 4, 5};
         p[3].kept_channels.clear(); p[3].mlp_removed = true;
       }},
  };
  for (const Case& c : cases) {
    for (bool compensate : {true, false}) {
      auto plan = test::keep_everything_plan(*m);
      c.edit(plan);
      for (auto& b : plan) b.compensate = compensate;
      ModelConfig cfg;
      const double diff = compare(*m, plan, means, t, c.name + (compensate ? "-c" : "-n"), &cfg);
      EXPECT_LT(diff, 1e-4) << c.name << (compensate ? " with" : " without") << " compensation";
    }
  }
}

TEST(Apply, ShapesAndRenumbering) {
  test::TempDir t;
  auto m = base(t);
  auto plan = test::keep_everything_plan(*m);
  plan[1] = PlanBlock{true, true, true, {}, {}, {}, true};
  plan[2].kept_kv = {1};
  plan[2].kept_heads = {4, 5};
  plan[3].kept_channels = {0, 1, 2};
  PrunedModel p = prune_model(*m, plan, test::random_means(*m, 2));
  ASSERT_EQ(p.config.n_layers(), 3);
  EXPECT_EQ(p.source_block, (std::vector<int>{0, 2, 3}));
  EXPECT_EQ(p.config.layers[1].n_head, 2);
  EXPECT_EQ(p.config.layers[1].n_kv_head, 1);
  EXPECT_EQ(p.config.layers[2].ffn, 3);
  EXPECT_TRUE(p.config.layers[0].ffn_down_bias);  // the removed block's E[Δ] went upstream
}

TEST(Apply, CompensationAddsTheRemovedUnitsMeanContribution) {
  test::TempDir t;
  auto m = base(t);
  auto means = test::random_means(*m, 3);
  auto plan = test::keep_everything_plan(*m);
  plan[1].kept_channels = {0, 1, 2, 3};  // channels 4..39 removed
  PrunedModel p = prune_model(*m, plan, means);
  std::vector<float> bias(48);
  bool found = false;
  for (auto& tensor : p.tensors)
    if (tensor.name == "blk.1.ffn_down.bias") { tensor.fill(bias.data()); found = true; }
  ASSERT_TRUE(found);
  const LayerWeights& w = m->layers[1];
  for (int o = 0; o < 48; ++o) {
    double expect = 0;
    for (int j = 4; j < 40; ++j) expect += static_cast<double>(w.w_down[o * 40 + j]) * means[1].channel_mean[j];
    EXPECT_NEAR(bias[o], expect, 1e-5);
  }
}

TEST(Apply, RejectsAPlanForAnotherModel) {
  test::TempDir t;
  auto m = base(t);
  auto plan = test::keep_everything_plan(*m);
  plan.pop_back();
  EXPECT_THROW(prune_model(*m, plan, {}), Error);
  plan = test::keep_everything_plan(*m);
  plan[0].kept_channels.push_back(99);
  try {
    prune_model(*m, plan, {});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("plan block 0: kept channel 99 out of range"), std::string::npos) << e.what();
  }
}
