// Layer streaming: the block-major driver (two passes, hidden states of every calibration token kept between
// blocks) against the batch-major one, and models whose BF16 block matrices are converted on use.
#include <cmath>
#include <cstring>

#include "core/measure/analysis.h"
#include "core/apply/apply.h"
#include "core/measure/calibrate.h"
#include "core/forward/forward.h"
#include "core/apply/save_gguf.h"
#include "core/synthetic/synthetic_model.h"
#include "core/device/cuda_api.h"
#include "heterogeneous_model.h"
#include "test_util.h"

using namespace ep;

namespace {

std::string synthetic_file(const test::TempDir& t) { return test::write_heterogeneous_model(t.file("m.gguf"), 33); }

// The same model with its matrices stored as BF16 (norms and biases stay F32), via an apply that keeps all.
std::string bf16_copy(const Model& m, const test::TempDir& t) {
  std::vector<PlanBlock> keep(m.config.n_layers());
  for (int l = 0; l < m.config.n_layers(); ++l) {
    const LayerShape& s = m.config.layers[l];
    for (int g = 0; g < s.n_kv_head; ++g) keep[l].kept_kv.push_back(g);
    for (int h = 0; h < s.n_head; ++h) keep[l].kept_heads.push_back(h);
    for (int j = 0; j < s.ffn; ++j) keep[l].kept_channels.push_back(j);
    keep[l].compensate = false;
  }
  GgufSaveOptions o;
  o.dtype = DType::BF16;
  save_gguf(prune_model(m, keep, {}), m, t.file("bf16.gguf"), o);
  return t.file("bf16.gguf");
}

std::vector<int32_t> tokens(int n, int seed) {
  std::vector<int32_t> t(n);
  uint32_t s = 99u + seed;
  for (int& x : t) { s = s * 1664525u + 1013904223u; x = static_cast<int>((s >> 8) % 300); }
  return t;
}

// Every accumulator of two captures, compared bit for bit.
void expect_identical(const StatisticsCapture& a, const StatisticsCapture& b, int layers) {
  ASSERT_EQ(a.tokens(), b.tokens());
  for (int l = 0; l < layers; ++l) {
    const Moments &ma = a.block_moments(l), &mb = b.block_moments(l);
    EXPECT_EQ(ma.count(), mb.count());
    EXPECT_EQ(ma.shift(), mb.shift()) << l;
    EXPECT_EQ(ma.shifted_sum(), mb.shifted_sum()) << l;
    EXPECT_EQ(ma.shifted_cross(), mb.shifted_cross()) << l;
    ASSERT_EQ(a.head_moments(l).size(), b.head_moments(l).size());
    for (size_t h = 0; h < a.head_moments(l).size(); ++h) EXPECT_EQ(a.head_moments(l)[h].shifted_cross(), b.head_moments(l)[h].shifted_cross());
    EXPECT_EQ(a.channel_stats(l).sumsq, b.channel_stats(l).sumsq) << l;
    EXPECT_EQ(a.attn_output_mean(l), b.attn_output_mean(l)) << l;
    EXPECT_EQ(a.mlp_output_mean(l), b.mlp_output_mean(l)) << l;
    EXPECT_EQ(a.block_cosine(l), b.block_cosine(l)) << l;
  }
}

}  // namespace

TEST(Calibrate, StreamedEqualsBatchMajorBitForBit) {
  test::TempDir t;
  auto m = load_model(synthetic_file(t));
  const int n_seqs = 5, T = 24;  // batches of 2: the last one partial
  auto toks = tokens(n_seqs * T, 1);
  const TokenBatches in{toks.data(), n_seqs, T, 2};
  for (auto products : {Accumulation::kFloat64, Accumulation::kBlockedFloat32}) {
    CaptureOptions o;
    o.products = products;
    StatisticsCapture batch_major(m->config, o), streamed(m->config, o);
    int64_t last_done = 0, last_total = 0;
    calibrate(*m, in, batch_major, nullptr, nullptr);
    calibrate_streamed(*m, in, streamed, nullptr, [&](int64_t done, int64_t total) {
      EXPECT_EQ(done, last_done + 1);
      last_done = done, last_total = total;
    });
    EXPECT_EQ(last_total, 2 * 4 * 3);  // two passes × 4 blocks × 3 batches
    EXPECT_EQ(last_done, last_total);
    expect_identical(batch_major, streamed, 4);
    auto ra = analyze_capture(batch_major, m->config, 1e-6), rb = analyze_capture(streamed, m->config, 1e-6);
    for (int l = 0; l < 4; ++l) {
      EXPECT_EQ(ra.blocks[l].te, rb.blocks[l].te);
      EXPECT_EQ(ra.blocks[l].head_entropy, rb.blocks[l].head_entropy);
    }
  }
}

TEST(Calibrate, StreamedProjectionEqualsBatchMajor) {
  test::TempDir t;
  auto m = load_model(synthetic_file(t));
  auto toks = tokens(3 * 16, 2);
  const TokenBatches in{toks.data(), 3, 16, 3};
  CaptureOptions o;
  o.max_dim = 16, o.proj_dim = 12, o.seed = 5;  // d = 32 > 16: projected to 12
  StatisticsCapture batch_major(m->config, o), streamed(m->config, o);
  ASSERT_TRUE(batch_major.projected());
  calibrate(*m, in, batch_major, nullptr, nullptr);
  calibrate_streamed(*m, in, streamed, nullptr, nullptr);
  expect_identical(batch_major, streamed, 4);
}

TEST(Calibrate, StreamedModelConvertsBlocksOnUseWithTheSameResults) {
  test::TempDir t;
  auto f32 = load_model(synthetic_file(t));
  const std::string bf16 = bf16_copy(*f32, t);
  auto bound = load_model(bf16);
  LoadOptions stream;
  stream.stream_layers = true;
  auto lazy = load_model(bf16, stream);
  ASSERT_TRUE(lazy->streams_layers());
  EXPECT_GT(bound->converted_bytes, lazy->converted_bytes);  // the block matrices were not converted at load
  EXPECT_EQ(lazy->layers[0].wq, nullptr);
  EXPECT_NE(lazy->layers[0].attn_norm, nullptr);  // vectors are bound at load
  LayerBuffers buffers;
  const LayerWeights w = lazy->layer_weights(0, buffers);
  ASSERT_NE(w.wq, nullptr);
  const int64_t n = 4 * 8 * 32;
  EXPECT_EQ(0, std::memcmp(w.wq, bound->layers[0].wq, n * sizeof(float)));

  // forward logits, the capture in both orders, and apply all agree with the model converted at load
  auto toks = tokens(2 * 20, 3);
  const int V = 300;
  std::vector<float> la(2 * 20 * V), lb(la.size());
  ForwardRequest r;
  r.tokens = toks.data(), r.n_seqs = 2, r.seq_len = 20, r.logits = la.data();
  forward(*bound, r);
  r.logits = lb.data();
  forward(*lazy, r);
  EXPECT_EQ(la, lb);
  const TokenBatches in{toks.data(), 2, 20, 1};
  StatisticsCapture a(bound->config, CaptureOptions{}), b(lazy->config, CaptureOptions{});
  calibrate(*bound, in, a, nullptr, nullptr);
  calibrate_streamed(*lazy, in, b, nullptr, nullptr);
  expect_identical(a, b, 4);

  std::vector<PlanBlock> plan(4);
  plan[0].kept_kv = {1}, plan[0].kept_heads = {2, 3}, plan[0].kept_channels = {0, 5, 7};
  plan[1].kept_kv = {0, 1, 2, 3}, plan[1].kept_heads = {0, 1, 2, 3}, plan[1].kept_channels = {1, 2};
  plan[2].removed = true;
  plan[3].kept_kv = {0}, plan[3].kept_heads = {0, 1};
  auto pa = prune_model(*bound, plan, {}), pb = prune_model(*lazy, plan, {});
  ASSERT_EQ(pa.tensors.size(), pb.tensors.size());
  for (size_t i = 0; i < pa.tensors.size(); ++i) {
    ASSERT_EQ(pa.tensors[i].name, pb.tensors[i].name);
    int64_t k = 1;
    for (int64_t s : pa.tensors[i].shape) k *= s;
    std::vector<float> x(k), y(k);
    pa.tensors[i].fill(x.data());
    pb.tensors[i].fill(y.data());
    EXPECT_EQ(x, y) << pa.tensors[i].name;
  }
}

TEST(Calibrate, StreamedRunStopsWhenCancelled) {
  test::TempDir t;
  auto m = load_model(synthetic_file(t));
  auto toks = tokens(4 * 16, 4);
  std::atomic<bool> cancel{false};
  StatisticsCapture c(m->config, CaptureOptions{});
  int64_t calls = 0;
  try {
    calibrate_streamed(*m, {toks.data(), 4, 16, 1}, c, &cancel, [&](int64_t, int64_t) {
      if (++calls == 3) cancel = true;
    });
    FAIL() << "not cancelled";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCancelled);
  }
  EXPECT_EQ(calls, 3);
}

// Where no GPU can run the blocks (CI: no driver, or a build without nvcc), asking for one is a clear
// kUnsupported error before any work, and the capture is left untouched. (With a GPU: test_cuda.cpp.)
TEST(Calibrate, GpuRequestWithoutUsableGpuFailsBeforeAnyWork) {
  if (cuda::probe().available) GTEST_SKIP() << "this machine has a GPU: test_cuda.cpp covers the CUDA path";
  test::TempDir t;
  auto m = load_model(synthetic_file(t));
  auto toks = tokens(2 * 16, 5);
  StatisticsCapture c(m->config, CaptureOptions{});
  RunDevices dev;
  dev.cuda_devices = {0};
  int64_t progress_calls = 0;
  try {
    calibrate_streamed(*m, {toks.data(), 2, 16, 1}, c, nullptr, [&](int64_t, int64_t) { ++progress_calls; }, dev);
    FAIL() << "ran without a GPU";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("CUDA requested, but"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("using the CPU"), std::string::npos) << e.what();
  }
  EXPECT_EQ(progress_calls, 0);
  EXPECT_EQ(c.tokens(), 0);
}

// Several devices: the batches of each block split round-robin between workers, one capture each, merged.
// CPU workers stand in for GPUs here (test_cuda.cpp runs two GPU runners); the statistics equal one
// worker's up to the rounding of the merge, and the progress still counts every batch of both passes.
TEST(Calibrate, BatchesSplitAcrossWorkersMergeToTheSameStatistics) {
  test::TempDir t;
  auto m = load_model(synthetic_file(t));
  const int n_seqs = 7, T = 20;  // 4 batches of 2 (the last one partial) over 3 workers
  auto toks = tokens(n_seqs * T, 6);
  const TokenBatches in{toks.data(), n_seqs, T, 2};
  StatisticsCapture one(m->config, CaptureOptions{}), split(m->config, CaptureOptions{});
  calibrate_streamed(*m, in, one, nullptr, nullptr);
  RunDevices dev;
  dev.cpu_workers = 3;
  int64_t last_done = 0, last_total = 0;
  calibrate_streamed(*m, in, split, nullptr, [&](int64_t done, int64_t total) {
    EXPECT_GT(done, last_done);
    last_done = done, last_total = total;
  }, dev);
  EXPECT_EQ(last_done, last_total);
  EXPECT_EQ(last_total, 2 * m->config.n_layers() * 4);
  ASSERT_EQ(split.tokens(), one.tokens());
  auto near = [](double a, double b) { return std::abs(a - b) <= 1e-9 * std::max(1.0, std::abs(a)); };
  for (int l = 0; l < m->config.n_layers(); ++l) {
    EXPECT_EQ(split.block_moments(l).count(), one.block_moments(l).count());
    const auto ma = one.attn_output_mean(l), mb = split.attn_output_mean(l);
    for (size_t i = 0; i < ma.size(); ++i) EXPECT_TRUE(near(ma[i], mb[i])) << l;
    const auto va = one.channel_stats(l).variance(), vb = split.channel_stats(l).variance();
    for (size_t j = 0; j < va.size(); ++j) EXPECT_TRUE(near(va[j], vb[j])) << l << "/" << j;
    EXPECT_TRUE(near(one.block_cosine(l), split.block_cosine(l))) << l;
  }
  const AnalysisResult a = analyze_capture(one, m->config, 1e-6), b = analyze_capture(split, m->config, 1e-6);
  for (size_t l = 0; l < a.blocks.size(); ++l) {
    EXPECT_NEAR(a.blocks[l].te, b.blocks[l].te, 1e-7 * std::max(1.0, std::abs(a.blocks[l].te))) << l;
    EXPECT_NEAR(a.blocks[l].te_attn, b.blocks[l].te_attn, 1e-7 * std::max(1.0, std::abs(a.blocks[l].te_attn))) << l;
    EXPECT_NEAR(a.blocks[l].te_mlp, b.blocks[l].te_mlp, 1e-7 * std::max(1.0, std::abs(a.blocks[l].te_mlp))) << l;
    for (size_t h = 0; h < a.blocks[l].head_entropy.size(); ++h)
      EXPECT_NEAR(a.blocks[l].head_entropy[h], b.blocks[l].head_entropy[h], 1e-7 * std::max(1.0, std::abs(a.blocks[l].head_entropy[h])));
  }
}
