// The loss block-major (evaluate_streamed.h) against forward(): the order GPUs run perplexity in, checked on
// the CPU — one worker bit for bit, two workers (the multi-GPU split) to rounding — and a GPU request on a
// machine without one failing before any work. test_cuda.cpp checks the GPU's numbers.
#include <cmath>

#include "core/error.h"
#include "core/evaluate/evaluate_streamed.h"
#include "core/forward/forward.h"
#include "core/evaluate/score.h"
#include "core/device/cuda_api.h"
#include "heterogeneous_model.h"
#include "test_util.h"

using namespace ep;

namespace {

std::vector<int32_t> tokens(int n, int vocab, uint32_t s) {
  std::vector<int32_t> t(n);
  for (int32_t& x : t) { s = s * 1664525u + 1013904223u; x = static_cast<int32_t>((s >> 8) % vocab); }
  return t;
}

// forward()'s loss, batch_seqs windows per call — what perplexity computes on the CPU.
std::vector<float> forward_nll(const Model& m, const std::vector<int32_t>& toks, int n_seqs, int T, int batch_seqs) {
  std::vector<float> nll(static_cast<size_t>(n_seqs) * (T - 1));
  for (int s0 = 0; s0 < n_seqs; s0 += batch_seqs) {
    ForwardRequest r;
    r.tokens = toks.data() + static_cast<size_t>(s0) * T;
    r.n_seqs = std::min(batch_seqs, n_seqs - s0);
    r.seq_len = T;
    r.nll = nll.data() + static_cast<size_t>(s0) * (T - 1);
    forward(m, r);
  }
  return nll;
}

}  // namespace

TEST(EvaluateStreamed, BlockMajorLossEqualsForward) {
  test::TempDir t;
  auto m = load_model(test::write_heterogeneous_model(t.file("m.gguf"), 41));  // GQA, biases, removed layers
  const int n_seqs = 5, T = 24, batch = 2;
  const auto toks = tokens(n_seqs * T, m->config.vocab, 3);
  const auto reference = forward_nll(*m, toks, n_seqs, T, batch);
  double mean = 0;
  for (float v : reference) mean += v / reference.size();
  EXPECT_GT(mean, 0.5);  // a real loss, not zeros
  for (int workers : {1, 2}) {
    SCOPED_TRACE(workers);
    RunDevices dev;
    dev.cpu_workers = workers;
    std::vector<float> nll(reference.size(), -1.0f);
    int64_t last_done = 0, last_total = 0;
    const EvaluationReport report = next_token_nll_streamed(*m, {toks.data(), n_seqs, T, batch}, nll.data(), nullptr,
                                                            [&](int64_t d, int64_t n) { last_done = d, last_total = n; }, dev);
    EXPECT_EQ(report.device, "cpu");
    EXPECT_EQ(last_done, last_total);
    EXPECT_EQ(last_total, (m->config.n_layers() + 1) * 3);  // 3 batches through 4 blocks and the head
    if (workers == 1) {
      EXPECT_EQ(nll, reference);  // the same batches, the same arithmetic
    } else {
      for (size_t i = 0; i < nll.size(); ++i) ASSERT_NEAR(nll[i], reference[i], 1e-5 * std::max(1.0f, reference[i])) << i;
    }
  }
}

TEST(EvaluateStreamed, GpuRequestWithoutUsableGpuFailsBeforeAnyWork) {
  if (cuda::probe().available) GTEST_SKIP() << "this machine has a GPU: test_cuda.cpp covers the CUDA path";
  test::TempDir t;
  auto m = load_model(test::write_heterogeneous_model(t.file("m.gguf"), 41));
  const auto toks = tokens(2 * 16, m->config.vocab, 5);
  RunDevices dev;
  dev.cuda_devices = {0};
  std::vector<float> nll(2 * 15, -1.0f);
  int64_t progress_calls = 0;
  try {
    next_token_nll_streamed(*m, {toks.data(), 2, 16, 1}, nll.data(), nullptr, [&](int64_t, int64_t) { ++progress_calls; }, dev);
    FAIL() << "ran without a GPU";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("CUDA requested, but"), std::string::npos) << e.what();
  }
  EXPECT_EQ(progress_calls, 0);
  EXPECT_EQ(nll, std::vector<float>(2 * 15, -1.0f));
}

TEST(EvaluateStreamed, WindowsOfOneTokenAreRefused) {
  test::TempDir t;
  auto m = load_model(test::write_heterogeneous_model(t.file("m.gguf"), 41));
  const auto toks = tokens(3, m->config.vocab, 5);
  std::vector<float> nll(1);
  EXPECT_THROW(next_token_nll_streamed(*m, {toks.data(), 3, 1, 1}, nll.data(), nullptr, nullptr, {}), Error);
}

// Groups bound the memory of a long text: the windows go through in several block-major runs, same losses.
TEST(EvaluateStreamed, GroupsOfWindowsGiveTheSameLoss) {
  test::TempDir t;
  auto m = load_model(test::write_heterogeneous_model(t.file("m.gguf"), 41));
  const int n_seqs = 7, T = 16, batch = 2;
  const auto toks = tokens(n_seqs * T, m->config.vocab, 8);
  const auto reference = forward_nll(*m, toks, n_seqs, T, batch);
  const uint64_t one_batch = static_cast<uint64_t>(batch) * T * m->config.dim * sizeof(float);
  for (uint64_t group_bytes : {one_batch, 2 * one_batch + 1, kDefaultGroupBytes}) {
    std::vector<float> nll(reference.size(), -1.0f);
    int64_t last_done = 0, last_total = 0;
    next_token_nll_streamed(*m, {toks.data(), n_seqs, T, batch}, nll.data(), nullptr, [&](int64_t d, int64_t n) { last_done = d, last_total = n; }, {},
                            group_bytes);
    EXPECT_EQ(nll, reference) << group_bytes;
    EXPECT_EQ(last_done, last_total);
  }
}

// Zero-shot scoring block-major: batches of different lengths (each padded to its longest span) in one run
// or in groups, against score_spans — bit for bit on one CPU worker, to rounding on two.
TEST(EvaluateStreamed, ScoresEqualScoreSpans) {
  test::TempDir t;
  auto m = load_model(test::write_heterogeneous_model(t.file("m.gguf"), 43));
  auto toks = tokens(400, m->config.vocab, 13);
  std::vector<ScoreSpan> spans;
  int64_t at = 0;
  for (int i = 0; i < 11; ++i) {  // lengths 5..35, targets inside
    const int len = 5 + (i * 7) % 31;
    spans.push_back({at, len, 1 + (i % (len - 1))});
    at += len;
  }
  // and one span whose target is the model's own greedy continuation of its prefix (greedy must be true)
  std::vector<int32_t> own(toks.begin(), toks.begin() + 6);
  for (int k = 0; k < 4; ++k) {
    std::vector<int32_t> probe = own;
    probe.push_back(0);  // a placeholder: the prediction after `own` is argmax at its last position
    std::vector<float> nll(probe.size() - 1);
    std::vector<int32_t> argmax(probe.size() - 1);
    ForwardRequest r;
    r.tokens = probe.data();
    r.n_seqs = 1;
    r.seq_len = static_cast<int>(probe.size());
    r.nll = nll.data();
    r.argmax = argmax.data();
    forward(*m, r);
    own.push_back(argmax.back());
  }
  spans.push_back({static_cast<int64_t>(toks.size()), static_cast<int32_t>(own.size()), 6});
  toks.insert(toks.end(), own.begin(), own.end());
  ScoreOptions o;
  o.batch_tokens = 64;  // several batches, of different padded lengths
  const auto reference = score_spans(*m, toks.data(), spans, o);
  EXPECT_TRUE(reference.back().greedy);
  EXPECT_LT(reference[0].logprob, 0);
  for (int workers : {1, 2})
    for (uint64_t group_bytes : {uint64_t(2000) * m->config.dim, kDefaultGroupBytes}) {
      SCOPED_TRACE(std::to_string(workers) + " workers, group " + std::to_string(group_bytes));
      RunDevices dev;
      dev.cpu_workers = workers;
      int64_t last_done = 0, last_total = 0;
      ScoreOptions so = o;
      so.on_progress = [&](int64_t d, int64_t n) { last_done = d, last_total = n; };
      EvaluationReport report;
      const auto got = score_spans_streamed(*m, toks.data(), spans, so, dev, &report, group_bytes);
      EXPECT_EQ(report.device, "cpu");
      EXPECT_EQ(last_done, static_cast<int64_t>(spans.size()));
      EXPECT_EQ(last_total, static_cast<int64_t>(spans.size()));
      ASSERT_EQ(got.size(), reference.size());
      for (size_t i = 0; i < got.size(); ++i) {
        if (workers == 1) EXPECT_EQ(got[i].logprob, reference[i].logprob) << i;
        else EXPECT_NEAR(got[i].logprob, reference[i].logprob, 1e-4 * std::max(1.0, std::abs(reference[i].logprob))) << i;
        EXPECT_EQ(got[i].greedy, reference[i].greedy) << i;
      }
    }
}
