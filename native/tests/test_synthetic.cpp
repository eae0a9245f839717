// The synthetic-model generator: preset shapes against the published parameter counts, the same function
// written as GGUF and as a Hugging Face directory, BF16 storage, and determinism.
#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "core/forward/forward.h"
#include "core/load/model.h"
#include "core/synthetic/synthetic_model.h"
#include "test_util.h"

using namespace ep;

namespace {

uint64_t params(const ModelConfig& c) {
  Model m;
  m.config = c;
  return m.parameter_count();
}

SyntheticSpec small_spec() {
  SyntheticSpec spec;
  spec.config = synthetic_preset("llama3-8b", 2);  // GQA 32/8, real head size 128
  spec.config.dim = 256, spec.config.head_dim = 64, spec.config.vocab = 512;
  for (LayerShape& s : spec.config.layers) s = {4, 1, 384, false, false, false};
  spec.seed = 7;
  return spec;
}

std::vector<float> logits(const Model& m, int T) {
  std::vector<int32_t> toks(T);
  for (int t = 0; t < T; ++t) toks[t] = (t * 37 + 5) % m.config.vocab;
  std::vector<float> out(static_cast<size_t>(T) * m.config.vocab);
  ForwardRequest r;
  r.tokens = toks.data(), r.n_seqs = 1, r.seq_len = T, r.logits = out.data();
  forward(m, r);
  return out;
}

}  // namespace

TEST(Synthetic, PresetsHaveThePublishedParameterCounts) {
  EXPECT_EQ(params(synthetic_preset("llama2-7b")), 6738415616ull);
  EXPECT_EQ(params(synthetic_preset("llama2-13b")), 13015864320ull);
  EXPECT_EQ(params(synthetic_preset("llama2-70b")), 68976648192ull);
  EXPECT_EQ(params(synthetic_preset("llama3-8b")), 8030261248ull);
  EXPECT_EQ(params(synthetic_preset("mistral-7b")), 7241732096ull);
  EXPECT_EQ(synthetic_preset("llama2-70b", 1).n_layers(), 1);
  try {
    synthetic_preset("gpt-5");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("known: llama2-7b"), std::string::npos) << e.what();
  }
}

TEST(Synthetic, GgufAndHuggingFaceHoldTheSameFunction) {
  test::TempDir t;
  SyntheticSpec spec = small_spec();
  write_synthetic_gguf(spec, t.file("m.gguf"));
  std::filesystem::create_directory(t.file("hf"));
  write_synthetic_hf(spec, t.file("hf"));
  auto g = load_model(t.file("m.gguf")), h = load_model(t.file("hf"));
  EXPECT_EQ(h->config.rope_layout, RopeLayout::kHalf);
  EXPECT_EQ(h->config.layers[0].n_kv_head, 1);
  auto a = logits(*g, 12), b = logits(*h, 12);
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_TRUE(std::isfinite(a[i]));
    worst = std::max(worst, static_cast<double>(std::abs(a[i] - b[i])));
  }
  EXPECT_LT(worst, 1e-4);
}

TEST(Synthetic, Bf16MatricesAndDeterminism) {
  test::TempDir t;
  SyntheticSpec spec = small_spec();
  spec.dtype = DType::BF16;
  write_synthetic_gguf(spec, t.file("a.gguf"));
  write_synthetic_gguf(spec, t.file("b.gguf"));
  EXPECT_EQ(test::read_all(t.file("a.gguf")), test::read_all(t.file("b.gguf")));
  auto m = load_model(t.file("a.gguf"));
  EXPECT_EQ(m->tensors.at("blk.0.ffn_up").dtype, DType::BF16);
  EXPECT_EQ(m->tensors.at("blk.0.ffn_norm").dtype, DType::F32);
  // the weights follow their distribution: ffn_up ~ N(0, 1/dim)
  const LayerWeights& w = m->layers[0];
  double sum = 0, sq = 0;
  const int64_t n = 384 * 256;
  for (int64_t i = 0; i < n; ++i) sum += w.w_up[i], sq += double(w.w_up[i]) * w.w_up[i];
  EXPECT_NEAR(sum / n, 0.0, 4.0 / 16 / std::sqrt(double(n)));
  EXPECT_NEAR(sq / n, 1.0 / 256, 0.03 / 256);  // 7σ of the sample variance, plus BF16 rounding
  spec.seed = 8;
  write_synthetic_gguf(spec, t.file("c.gguf"));
  EXPECT_NE(test::read_all(t.file("a.gguf")), test::read_all(t.file("c.gguf")));
}
