// The layer-input capture's two orders (device/layer_input_passes.h): batch-major passes and the block-major
// sweep give bit-identical moments, and the automatic choice takes the sweep only when the layers need more
// than one pass and every token's hidden state fits beside one block's accumulators.
#include <gtest/gtest.h>

#include <map>

#include "core/capture/layer_inputs.h"
#include "core/device/layer_input_passes.h"
#include "cpu_block_runner.h"
#include "sample_util.h"
#include "synthetic_util.h"

using namespace ep;

namespace {

using Captured = std::map<std::pair<int, bool>, std::pair<std::vector<double>, std::vector<double>>>;  // (layer, mlp) → mean, covariance

Captured capture(const Model& m, const TokenBatches& in, uint64_t budget, LayerInputOrder order, int* passes, int64_t* last_progress = nullptr) {
  Captured out;
  const std::vector<LayerInputTarget> targets{{0, false}, {1, true}, {1, false}};
  *passes = capture_layer_inputs(
      m, targets, in, budget, nullptr,
      [&](int64_t done, int64_t total) {
        if (last_progress) *last_progress = done == total ? total : -1;
      },
      [&](const LayerInputTarget& t, const Moments& mo) { out[{t.layer, t.mlp}] = {mo.mean(), mo.covariance()}; }, order);
  return out;
}

}  // namespace

TEST(LayerInputPasses, BlockMajorSweepEqualsBatchMajorPassesBitForBit) {
  test::TempDir t;
  // 2 blocks, GQA (6 query heads, 3 KV groups, head_dim 8: o_proj input 48 wide), 20 channels
  auto m = test::small_synthetic_model(t, 48, 300, 8, 2, 6, 3, 20, 7);
  const int T = 8, seqs = 4;
  const std::vector<int32_t> tokens = test::random_tokens(T * seqs, 300, 3);
  TokenBatches in{tokens.data(), seqs, T, 3};  // batches of 3 and 1 sequences
  int p_batch = 0, p_block = 0, p_auto = 0, p_one = 0;
  int64_t progress = 0;
  const Captured batch = capture(*m, in, 1, LayerInputOrder::kBatchMajor, &p_batch);
  const Captured block = capture(*m, in, 1, LayerInputOrder::kBlockMajor, &p_block, &progress);
  EXPECT_EQ(p_batch, 3);  // one layer per pass under a 1-byte budget
  EXPECT_EQ(p_block, 1);
  EXPECT_GT(progress, 0);  // the sweep's progress ends at its total
  ASSERT_EQ(batch.size(), 3u);
  ASSERT_EQ(block.size(), 3u);
  for (const auto& [key, moments] : batch) {
    EXPECT_EQ(block.at(key).first, moments.first) << "mean of layer " << key.first << (key.second ? " MLP" : " attention");
    EXPECT_EQ(block.at(key).second, moments.second) << "covariance of layer " << key.first << (key.second ? " MLP" : " attention");
  }
  // automatic: accumulators 48²·8 · 2 + 20²·8 = 40,064 bytes; hidden states 4·8·48·4 = 6,144; block 1 holds
  // 18,432 + 3,200. A budget of 30,000 needs two batch-major passes but fits the sweep: one pass.
  const Captured automatic = capture(*m, in, 30'000, LayerInputOrder::kAuto, &p_auto);
  EXPECT_EQ(p_auto, 1);
  EXPECT_EQ(automatic.at({1, true}).second, batch.at({1, true}).second);
  // everything in one batch-major pass: no sweep needed
  capture(*m, in, 1 << 20, LayerInputOrder::kAuto, &p_one);
  EXPECT_EQ(p_one, 1);
  // below the sweep's need: batch-major passes
  int p_tight = 0;
  capture(*m, in, 20'000, LayerInputOrder::kAuto, &p_tight);
  EXPECT_EQ(p_tight, 3);
}

TEST(LayerInputPasses, SweepOnABlockRunnerEqualsTheCpuSweep) {
  // The GPU path's logic on a CPU runner: the runner runs each block, the capture reads its hook tensors; the
  // moments are the CPU sweep's bit for bit. With a runner the sweep is taken even where one batch-major pass
  // would hold every layer, and not where the hidden states do not fit the budget.
  test::TempDir t;
  auto m = test::small_synthetic_model(t, 48, 300, 8, 2, 6, 3, 20, 7);
  const int T = 8, seqs = 4;
  const std::vector<int32_t> tokens = test::random_tokens(T * seqs, 300, 3);
  TokenBatches in{tokens.data(), seqs, T, 3};
  int p_cpu = 0;
  const Captured cpu = capture(*m, in, 1, LayerInputOrder::kBlockMajor, &p_cpu);
  const std::vector<LayerInputTarget> targets{{0, false}, {1, true}, {1, false}};
  auto on_runner = [&](uint64_t budget, int* runners, int* passes) {
    Captured out;
    *passes = capture_layer_inputs(
        *m, targets, in, budget, nullptr, {}, [&](const LayerInputTarget& tg, const Moments& mo) { out[{tg.layer, tg.mlp}] = {mo.mean(), mo.covariance()}; },
        LayerInputOrder::kAuto, [&](int64_t rows) {
          ++*runners;
          EXPECT_EQ(rows, 3 * T);  // one batch of batch_seqs windows
          return std::make_unique<test::CpuBlockRunner>(*m, T, rows, 0);
        });
    return out;
  };
  int runners = 0, passes = 0;
  const Captured got = on_runner(1 << 20, &runners, &passes);  // one batch-major pass would hold all three layers
  EXPECT_EQ(runners, 1);
  EXPECT_EQ(passes, 1);
  for (const auto& [key, moments] : cpu) {
    EXPECT_EQ(got.at(key).first, moments.first) << "mean of layer " << key.first;
    EXPECT_EQ(got.at(key).second, moments.second) << "covariance of layer " << key.first;
  }
  runners = 0;
  on_runner(1, &runners, &passes);  // the hidden states do not fit: the CPU's passes, no runner
  EXPECT_EQ(runners, 0);
  EXPECT_EQ(passes, 3);
}
