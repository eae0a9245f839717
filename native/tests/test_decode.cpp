// Incremental decoding with the KV cache against the batched forward pass (its reference): the logits after
// every step equal the full forward's logits at that position, for GQA, biases and heterogeneous layers
// (a removed attention layer carrying a compensation bias, a removed MLP).
#include <cmath>
#include <random>

#include "core/evaluate/decode.h"
#include "core/error.h"
#include "core/forward/forward.h"
#include "core/forward/gemm_bf16.h"
#include "core/load/model.h"
#include "core/load/stored_matrices.h"
#include "core/synthetic/synthetic_model.h"
#include "forward_util.h"
#include "test_util.h"

using namespace ep;

namespace {

std::unique_ptr<Model> heterogeneous(const test::TempDir& t, DType dtype = DType::F32) {
  SyntheticSpec spec;
  spec.dtype = dtype;
  ModelConfig& c = spec.config;
  c.dim = 48;
  c.vocab = 300;
  c.head_dim = 8;
  c.layers = {LayerShape{6, 2, 40, true, true, true}, LayerShape{0, 0, 24, false, true, true}, LayerShape{4, 4, 0, false, true, true},
              LayerShape{6, 3, 32, false, false, false}};
  spec.seed = 23;
  const std::string file = t.file(std::string("h-") + dtype_name(dtype) + ".gguf");
  write_synthetic_gguf(spec, file);
  return load_model(file);
}

}  // namespace

TEST(Decode, EveryStepMatchesTheFullForward) {
  test::TempDir t;
  auto m = heterogeneous(t);
  const int V = m->config.vocab, T = 19;
  std::mt19937 g(4);
  std::vector<int32_t> toks(T);
  for (int32_t& x : toks) x = static_cast<int32_t>(g() % V);
  const std::vector<float> full = test::full_logits(*m, toks);

  // A 6-token prompt in one step, then chunks of 1, 2 and 1 tokens, then single tokens to the end.
  DecodeSession s(*m, T);
  std::vector<float> lg(V);
  std::vector<int> chunks = {6, 1, 2, 1};
  while (s.pos() < T) {
    const int n = chunks.empty() ? 1 : chunks.front();
    if (!chunks.empty()) chunks.erase(chunks.begin());
    s.step(&toks[s.pos()], n, lg.data());
    const int last = s.pos() - 1;
    double worst = 0;
    for (int v = 0; v < V; ++v) worst = std::max(worst, static_cast<double>(std::fabs(lg[v] - full[static_cast<size_t>(last) * V + v])));
    EXPECT_LT(worst, 1e-4) << "position " << last;
  }
  EXPECT_EQ(s.cache_bytes(), int64_t{T} * (2 + 0 + 4 + 3) * 8 * 2 * 4);
  EXPECT_THROW(s.step(toks.data(), 1, lg.data()), Error);  // full
}

// A BF16 file: one-token steps read the stored bfloat16 matrices (forward/gemv.h), the batched pass their
// float32 copies — the same values, so the logits agree to summation order. F16 and F32 files store none.
TEST(Decode, StepsOnStoredBf16WeightsMatchTheFullForward) {
  test::TempDir t;
  for (DType dt : {DType::BF16}) {
    auto m = heterogeneous(t, dt);
    ASSERT_EQ(m->tensors.at("blk.0.attn_q").dtype, dt);
    const StoredMatrices st = stored_matrices(*m, 0);
    ASSERT_NE(st.wq, nullptr);
    ASSERT_NE(st.w_down, nullptr);
    ASSERT_NE(stored_output(*m), nullptr);
    const int V = m->config.vocab, T = 12;
    std::vector<int32_t> toks;
    for (int i = 0; i < T; ++i) toks.push_back((i * 37 + 3) % V);
    const std::vector<float> full = test::full_logits(*m, toks);
    DecodeSession s(*m, T);
    std::vector<float> lg(V);
    s.step(toks.data(), 3, lg.data());  // a short prompt: also few rows
    while (s.pos() < T) {
      s.step(&toks[s.pos()], 1, lg.data());
      const int last = s.pos() - 1;
      double worst = 0;
      for (int v = 0; v < V; ++v) worst = std::max(worst, static_cast<double>(std::fabs(lg[v] - full[static_cast<size_t>(last) * V + v])));
      EXPECT_LT(worst, 1e-4) << dtype_name(dt) << " position " << last;
    }
  }
  for (DType dt : {DType::F32, DType::F16}) {
    auto f = heterogeneous(t, dt);
    EXPECT_EQ(stored_matrices(*f, 0).wq, nullptr);
    EXPECT_EQ(stored_output(*f), nullptr);
  }
}

// A BF16 file's prompt pass of more than kGemvMaxRows tokens: where the CPU has AMX-BF16 its products run on
// the tile unit over bfloat16-rounded activations (forward/gemm_bf16.h), as llama.cpp rounds them for BF16
// weights; the logits then agree with the float32 forward to that rounding, not to summation order.
TEST(Decode, LongPromptOnStoredBf16WeightsMatchesTheFullForward) {
  test::TempDir t;
  auto m = heterogeneous(t, DType::BF16);
  const int V = m->config.vocab, T = 20;
  std::vector<int32_t> toks;
  for (int i = 0; i < T; ++i) toks.push_back((i * 37 + 3) % V);
  const std::vector<float> full = test::full_logits(*m, toks);
  DecodeSession s(*m, T);
  std::vector<float> lg(V);
  s.step(toks.data(), T, lg.data());
  double worst = 0, spread = 0;
  for (int v = 0; v < V; ++v) {
    const float want = full[static_cast<size_t>(T - 1) * V + v];
    worst = std::max(worst, static_cast<double>(std::fabs(lg[v] - want)));
    spread = std::max(spread, static_cast<double>(std::fabs(want)));
  }
  std::printf("bf16 prompt pass: worst logit difference %.3g (largest logit %.3g, AMX %s)\n", worst, spread, gemm_bf16_available() ? "on" : "off");
  EXPECT_LT(worst, gemm_bf16_available() ? 2e-2 * std::max(1.0, spread) : 1e-4);
}

// A sliding window (Mistral-style): the prompt step uses the batched attention, the one-token steps the
// cache loop — both must see exactly the last `window` positions, as the full forward does.
TEST(Decode, SlidingWindowStepsMatchTheFullForward) {
  test::TempDir t;
  auto m = heterogeneous(t);
  m->config.sliding_window = 4;  // (llama GGUF metadata has no window: set on the loaded config)
  const int V = m->config.vocab, T = 14;
  std::vector<int32_t> toks;
  for (int i = 0; i < T; ++i) toks.push_back((i * 53 + 11) % V);
  const std::vector<float> full = test::full_logits(*m, toks);
  m->config.sliding_window = 0;
  const std::vector<float> unwindowed = test::full_logits(*m, toks);
  m->config.sliding_window = 4;
  DecodeSession s(*m, T);
  std::vector<float> lg(V);
  s.step(toks.data(), 6, lg.data());  // longer than the window: the batched path windows too
  double farthest_from_unwindowed = 0;
  while (s.pos() < T) {
    s.step(&toks[s.pos()], 1, lg.data());
    const int last = s.pos() - 1;
    double worst = 0, other = 0;
    for (int v = 0; v < V; ++v) {
      worst = std::max(worst, static_cast<double>(std::fabs(lg[v] - full[static_cast<size_t>(last) * V + v])));
      other = std::max(other, static_cast<double>(std::fabs(lg[v] - unwindowed[static_cast<size_t>(last) * V + v])));
    }
    EXPECT_LT(worst, 1e-4) << "position " << last;
    farthest_from_unwindowed = std::max(farthest_from_unwindowed, other);
  }
  EXPECT_GT(farthest_from_unwindowed, 1e-2);  // the window changes these logits: the check can fail
}

TEST(Decode, RejectsOutOfVocabularyTokens) {
  test::TempDir t;
  auto m = heterogeneous(t);
  DecodeSession s(*m, 4);
  const int32_t bad = m->config.vocab;
  EXPECT_THROW(s.step(&bad, 1, nullptr), Error);
  EXPECT_EQ(s.pos(), 0);
}
