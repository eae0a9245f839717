// The loss block-major (evaluate_streamed.h) against forward(): the order GPUs run perplexity in, checked on
// the CPU — one worker bit for bit, two workers (the multi-GPU split) to rounding — and a GPU request on a
// machine without one failing before any work. test_cuda.cpp checks the GPU's numbers.
#include <cmath>

#include "core/evaluate_streamed.h"
#include "core/forward.h"
#include "cuda/cuda_runtime_api.h"
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
    CalibrationDevice dev;
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
  CalibrationDevice dev;
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
