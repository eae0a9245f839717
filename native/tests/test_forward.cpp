// The batched float32 engine against an independent reference written differently: token by token with a
// KV cache (as llama2.c's run.c), in double precision, RoPE through complex rotations. Plus real-model
// anchors from shared/data/README.md and the hook points' consistency.
#include <cmath>
#include <complex>
#include <functional>

#include "core/error.h"
#include "core/forward/forward.h"
#include "core/load/model.h"
#include "core/synthetic/synthetic_model.h"
#include "forward_util.h"
#include "test_util.h"

using namespace ep;
using ep::test::data_dir;

namespace {

using Vec = std::vector<double>;

Vec matvec(const float* w, const Vec& x, int out, int in, const float* bias = nullptr) {
  Vec y(out, 0.0);
  for (int o = 0; o < out; ++o) {
    double s = bias ? bias[o] : 0.0;
    for (int i = 0; i < in; ++i) s += static_cast<double>(w[static_cast<int64_t>(o) * in + i]) * x[i];
    y[o] = s;
  }
  return y;
}

Vec rms(const Vec& x, const float* w, double eps) {
  double ss = 0;
  for (double v : x) ss += v * v;
  double k = 1.0 / std::sqrt(ss / x.size() + eps);
  Vec y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * k * w[i];
  return y;
}

void rotate(const ModelConfig& c, double* head, int pos) {
  const int hd = c.head_dim;
  for (int i = 0; i < hd / 2; ++i) {
    double freq = std::pow(static_cast<double>(c.rope_theta), -2.0 * i / hd);
    if (!c.rope_freq_factors.empty()) freq /= c.rope_freq_factors[i];
    const std::complex<double> r = std::polar(1.0, pos * freq);
    const int a = c.rope_layout == RopeLayout::kInterleaved ? 2 * i : i;
    const int b = c.rope_layout == RopeLayout::kInterleaved ? 2 * i + 1 : i + hd / 2;
    std::complex<double> z(head[a], head[b]);
    z *= r;
    head[a] = z.real();
    head[b] = z.imag();
  }
}

// Logits of every position of one sequence, [T][vocab].
std::vector<Vec> reference_logits(const Model& m, const std::vector<int32_t>& toks) {
  const ModelConfig& c = m.config;
  const int d = c.dim, hd = c.head_dim, L = c.n_layers(), T = static_cast<int>(toks.size());
  std::vector<std::vector<Vec>> kcache(L), vcache(L);
  std::vector<Vec> out;
  for (int t = 0; t < T; ++t) {
    Vec x(d);
    for (int i = 0; i < d; ++i) x[i] = m.tok_embd[static_cast<int64_t>(toks[t]) * d + i];
    for (int l = 0; l < L; ++l) {
      const LayerShape& s = c.layers[l];
      const LayerWeights& w = m.layers[l];
      if (s.n_head > 0) {
        Vec xn = rms(x, w.attn_norm, c.norm_eps);
        Vec q = matvec(w.wq, xn, s.n_head * hd, d, w.bq);
        Vec k = matvec(w.wk, xn, s.n_kv_head * hd, d, w.bk);
        Vec v = matvec(w.wv, xn, s.n_kv_head * hd, d, w.bv);
        for (int h = 0; h < s.n_head; ++h) rotate(c, &q[h * hd], t);
        for (int h = 0; h < s.n_kv_head; ++h) rotate(c, &k[h * hd], t);
        kcache[l].push_back(k);
        vcache[l].push_back(v);
        Vec att(s.n_head * hd, 0.0);
        for (int h = 0; h < s.n_head; ++h) {
          const int g = h / (s.n_head / s.n_kv_head);
          Vec sc(t + 1);
          double mx = -1e300;
          for (int j = 0; j <= t; ++j) {
            double dot = 0;
            for (int i = 0; i < hd; ++i) dot += q[h * hd + i] * kcache[l][j][g * hd + i];
            sc[j] = dot / std::sqrt(static_cast<double>(hd));
            mx = std::max(mx, sc[j]);
          }
          double z = 0;
          for (double& e : sc) z += (e = std::exp(e - mx));
          for (int j = 0; j <= t; ++j)
            for (int i = 0; i < hd; ++i) att[h * hd + i] += sc[j] / z * vcache[l][j][g * hd + i];
        }
        Vec a = matvec(w.wo, att, d, s.n_head * hd, w.bo);
        for (int i = 0; i < d; ++i) x[i] += a[i];
      } else if (w.bo) {
        for (int i = 0; i < d; ++i) x[i] += w.bo[i];
      }
      if (s.ffn > 0) {
        Vec xn = rms(x, w.ffn_norm, c.norm_eps);
        Vec g = matvec(w.w_gate, xn, s.ffn, d), u = matvec(w.w_up, xn, s.ffn, d);
        for (int i = 0; i < s.ffn; ++i) g[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
        Vec mo = matvec(w.w_down, g, d, s.ffn, w.b_down);
        for (int i = 0; i < d; ++i) x[i] += mo[i];
      } else if (w.b_down) {
        for (int i = 0; i < d; ++i) x[i] += w.b_down[i];
      }
    }
    out.push_back(matvec(m.output, rms(x, m.output_norm, c.norm_eps), c.vocab, d));
  }
  return out;
}

ModelConfig hetero_config(RopeLayout layout) {
  ModelConfig c;
  c.dim = 48;
  c.vocab = 300;
  c.head_dim = 8;
  c.norm_eps = 1e-5f;
  c.rope_theta = 10000;
  c.rope_layout = layout;
  c.tied_output = false;
  // Every kind of shape a pruned model has: GQA, fewer heads, no attention, no MLP, biases.
  c.layers = {{6, 2, 40, false, false, false}, {4, 2, 17, false, true, true}, {0, 0, 33, false, true, false},
              {2, 1, 0, false, false, true},   {6, 3, 40, false, false, false}};
  return c;
}

// The largest |reference − engine| over one sequence's logits (the engine's [T, vocab] row-major).
double max_logit_diff(const std::vector<std::vector<double>>& ref, const std::vector<float>& logits, int vocab) {
  double worst = 0;
  for (size_t t = 0; t < ref.size(); ++t)
    for (int j = 0; j < vocab; ++j) worst = std::max(worst, std::abs(ref[t][j] - logits[t * vocab + j]));
  return worst;
}

std::vector<int32_t> some_tokens(int n, int vocab, int seed) {
  std::vector<int32_t> t(n);
  uint32_t s = 12345u + seed;
  for (int& x : t) { s = s * 1664525u + 1013904223u; x = static_cast<int>((s >> 8) % vocab); }
  return t;
}

}  // namespace

TEST(Forward, HeterogeneousModelMatchesDoubleReference) {
  test::TempDir tmp;
  SyntheticSpec spec;
  spec.config = hetero_config(RopeLayout::kInterleaved);
  spec.seed = 7;
  write_synthetic_gguf(spec, tmp.file("m.gguf"));
  auto m = load_model(tmp.file("m.gguf"));
  ASSERT_EQ(m->config.arch, "deci");
  ASSERT_EQ(m->config.layers[2].n_head, 0);
  ASSERT_EQ(m->config.layers[3].ffn, 0);
  ASSERT_NE(m->layers[2].bo, nullptr);
  const int T = 37, B = 3;
  std::vector<int32_t> toks;
  for (int b = 0; b < B; ++b) { auto t = some_tokens(T, 300, b); toks.insert(toks.end(), t.begin(), t.end()); }
  std::vector<float> logits(static_cast<size_t>(B) * T * 300), nll(static_cast<size_t>(B) * (T - 1));
  ForwardRequest r;
  r.tokens = toks.data();
  r.n_seqs = B;
  r.seq_len = T;
  r.logits = logits.data();
  r.nll = nll.data();
  forward(*m, r);
  double max_diff = 0;
  for (int b = 0; b < B; ++b) {
    std::vector<int32_t> seq(toks.begin() + b * T, toks.begin() + (b + 1) * T);
    auto ref = reference_logits(*m, seq);
    for (int t = 0; t < T; ++t) {
      double mx = -1e300, z = 0;
      for (int j = 0; j < 300; ++j) {
        max_diff = std::max(max_diff, std::abs(ref[t][j] - logits[(static_cast<size_t>(b) * T + t) * 300 + j]));
        mx = std::max(mx, ref[t][j]);
      }
      for (int j = 0; j < 300; ++j) z += std::exp(ref[t][j] - mx);
      if (t + 1 < T) {
        double ref_nll = std::log(z) + mx - ref[t][seq[t + 1]];
        EXPECT_NEAR(nll[b * (T - 1) + t], ref_nll, 2e-4 * std::max(1.0, std::abs(ref_nll)));
      }
    }
  }
  EXPECT_LT(max_diff, 2e-4) << "max |logit - reference|";
}

namespace {

// A model written with a setting `set` gives, read back from the file (`check` asserts the loaded value), the
// double reference's logits within 2e-4; with the setting undone by `unset` in the loaded config — what an engine
// ignoring the file's value would compute — the reference is off by more than 1e-2, so the first check means
// something.
void expect_setting_read(const std::string& name, uint64_t seed, int T, int token_seed, const std::function<void(ModelConfig&)>& set,
                         const std::function<void(const ModelConfig&)>& check, const std::function<void(ModelConfig&)>& unset) {
  test::TempDir tmp;
  SyntheticSpec spec;
  spec.config = hetero_config(RopeLayout::kInterleaved);
  set(spec.config);
  spec.seed = seed;
  write_synthetic_gguf(spec, tmp.file(name + ".gguf"));
  auto m = load_model(tmp.file(name + ".gguf"));
  check(m->config);
  if (::testing::Test::HasFatalFailure()) return;  // the file did not carry the setting
  const int V = m->config.vocab;
  const std::vector<int32_t> seq = some_tokens(T, V, token_seed);
  const std::vector<float> logits = test::full_logits(*m, seq);
  EXPECT_LT(max_logit_diff(reference_logits(*m, seq), logits, V), 2e-4);
  unset(m->config);
  EXPECT_GT(max_logit_diff(reference_logits(*m, seq), logits, V), 1e-2);
}

}  // namespace

// An RMSNorm epsilon other than 1e-5 (read from the file) against the double reference, which uses the
// same one: an engine that ignored it would be off by far more than the tolerance (checked here too).
TEST(Forward, OtherNormEpsilonMatchesReference) {
  expect_setting_read(
      "eps", 9, 20, 4, [](ModelConfig& c) { c.norm_eps = 0.02f; }, [](const ModelConfig& c) { ASSERT_FLOAT_EQ(c.norm_eps, 0.02f); },
      [](ModelConfig& c) { c.norm_eps = 1e-5f; });
}

// A RoPE base other than 10,000 (Llama-3's 500,000, read from the file) against the double reference, which
// uses the same one: an engine that hard-coded 10,000 would be off by far more than the tolerance (checked
// here too). The TypeScript forward test checks the same through the addon; this one is what the C++ mutant
// driver (scripts/mutate-core.sh) runs.
TEST(Forward, OtherRopeThetaMatchesReference) {
  expect_setting_read(
      "theta", 11, 24, 6, [](ModelConfig& c) { c.rope_theta = 500000; }, [](const ModelConfig& c) { ASSERT_FLOAT_EQ(c.rope_theta, 500000.0f); },
      [](ModelConfig& c) { c.rope_theta = 10000; });
}

TEST(Forward, HalfRopeLayoutMatchesReference) {
  test::TempDir tmp;
  SyntheticSpec spec;
  spec.config = hetero_config(RopeLayout::kHalf);
  write_synthetic_gguf(spec, tmp.file("m.gguf"));
  auto m = load_model(tmp.file("m.gguf"));
  m->config.rope_layout = RopeLayout::kHalf;  // GGUF is always interleaved; flip to exercise the HF path
  auto toks = some_tokens(20, 300, 9);
  std::vector<float> logits(20 * 300);
  ForwardRequest r;
  r.tokens = toks.data();
  r.n_seqs = 1;
  r.seq_len = 20;
  r.logits = logits.data();
  forward(*m, r);
  EXPECT_LT(max_logit_diff(reference_logits(*m, toks), logits, 300), 2e-4);
}

namespace {
struct Recorder : ForwardHooks {
  std::map<std::string, std::vector<std::vector<float>>> seen;
  void keep(const std::string& k, const float* p, int64_t n) { seen[k].emplace_back(p, p + n); }
  void block_input(int l, const float* h, int64_t rows, int d) override { keep("in", h, rows * d); }
  void block_output(int l, const float* h, int64_t rows, int d) override { keep("out", h, rows * d); }
  void attn_heads(int l, const float* o, int64_t rows, int nh, int hd) override { keep("heads" + std::to_string(l), o, rows * nh * hd); }
  void attn_output(int l, const float* a, int64_t rows, int d) override { keep("a" + std::to_string(l), a, rows * d); }
  void mlp_act(int l, const float* a, int64_t rows, int f) override { keep("act" + std::to_string(l), a, rows * f); }
  void mlp_output(int l, const float* m, int64_t rows, int d) override { keep("m" + std::to_string(l), m, rows * d); }
  void final_hidden(const float* y, int64_t rows, int d) override { keep("y", y, rows * d); }
};
}  // namespace

TEST(Forward, HookPointsAreConsistent) {
  test::TempDir tmp;
  SyntheticSpec spec;
  spec.config = hetero_config(RopeLayout::kInterleaved);
  write_synthetic_gguf(spec, tmp.file("m.gguf"));
  auto m = load_model(tmp.file("m.gguf"));
  const int T = 11, d = 48;
  auto toks = some_tokens(T, 300, 3);
  std::vector<float> logits_hooked(T * 300), logits_plain(T * 300);
  Recorder rec;
  ForwardRequest r;
  r.tokens = toks.data();
  r.n_seqs = 1;
  r.seq_len = T;
  r.logits = logits_plain.data();
  forward(*m, r);
  r.logits = logits_hooked.data();
  r.hooks = &rec;
  forward(*m, r);
  EXPECT_EQ(logits_plain, logits_hooked) << "hooks must not change the result";
  ASSERT_EQ(rec.seen["in"].size(), 5u);
  ASSERT_EQ(rec.seen["out"].size(), 5u);
  EXPECT_EQ(rec.seen.count("heads2"), 0u) << "attention-free layer has no head outputs";
  EXPECT_EQ(rec.seen.count("act3"), 0u) << "MLP-free layer has no MLP activations";
  for (int l = 0; l < 5; ++l) {
    const auto& in = rec.seen["in"][l];
    const auto& out = rec.seen["out"][l];
    if (l + 1 < 5) EXPECT_EQ(out, rec.seen["in"][l + 1]) << "block " << l << " output feeds block " << l + 1;
    // h_l = h_{l-1} + a_l + m_l, with a/m the hooked layer outputs (or the bias constants of removed layers).
    const LayerWeights& w = m->layers[l];
    for (int i = 0; i < T * d; ++i) {
      double a = rec.seen.count("a" + std::to_string(l)) ? rec.seen["a" + std::to_string(l)][0][i] : (w.bo ? w.bo[i % d] : 0);
      double mm = rec.seen.count("m" + std::to_string(l)) ? rec.seen["m" + std::to_string(l)][0][i] : (w.b_down ? w.b_down[i % d] : 0);
      ASSERT_NEAR(out[i], in[i] + a + mm, 1e-4) << "layer " << l << " element " << i;
    }
    // a_l = Wo · heads + bo : recompute from the per-head outputs.
    if (rec.seen.count("heads" + std::to_string(l))) {
      const auto& heads = rec.seen["heads" + std::to_string(l)][0];
      const int qd = m->config.layers[l].n_head * 8;
      for (int t = 0; t < T; ++t)
        for (int o = 0; o < d; ++o) {
          double s = w.bo ? w.bo[o] : 0;
          for (int j = 0; j < qd; ++j) s += static_cast<double>(w.wo[o * qd + j]) * heads[t * qd + j];
          ASSERT_NEAR(rec.seen["a" + std::to_string(l)][0][t * d + o], s, 1e-4);
        }
    }
    if (rec.seen.count("act" + std::to_string(l))) {
      const auto& act = rec.seen["act" + std::to_string(l)][0];
      const int f = m->config.layers[l].ffn;
      for (int t = 0; t < T; ++t)
        for (int o = 0; o < d; ++o) {
          double s = w.b_down ? w.b_down[o] : 0;
          for (int j = 0; j < f; ++j) s += static_cast<double>(w.w_down[o * f + j]) * act[t * f + j];
          ASSERT_NEAR(rec.seen["m" + std::to_string(l)][0][t * d + o], s, 1e-4);
        }
    }
  }
  ASSERT_EQ(rec.seen["y"].size(), 1u);
}

TEST(Forward, BatchedEqualsOneByOne) {
  test::TempDir tmp;
  SyntheticSpec spec;
  spec.config = hetero_config(RopeLayout::kInterleaved);
  write_synthetic_gguf(spec, tmp.file("m.gguf"));
  auto m = load_model(tmp.file("m.gguf"));
  const int T = 16;
  auto a = some_tokens(T, 300, 1), b = some_tokens(T, 300, 2);
  std::vector<int32_t> both(a);
  both.insert(both.end(), b.begin(), b.end());
  std::vector<float> nll_both(2 * (T - 1)), nll_a(T - 1), nll_b(T - 1);
  ForwardRequest r;
  r.seq_len = T;
  r.n_seqs = 2; r.tokens = both.data(); r.nll = nll_both.data(); forward(*m, r);
  r.n_seqs = 1; r.tokens = a.data(); r.nll = nll_a.data(); forward(*m, r);
  r.tokens = b.data(); r.nll = nll_b.data(); forward(*m, r);
  for (int t = 0; t < T - 1; ++t) {
    EXPECT_NEAR(nll_both[t], nll_a[t], 1e-5);
    EXPECT_NEAR(nll_both[T - 1 + t], nll_b[t], 1e-5);
  }
}

TEST(Forward, RejectsOutOfVocabTokens) {
  test::TempDir tmp;
  SyntheticSpec spec;
  spec.config = hetero_config(RopeLayout::kInterleaved);
  write_synthetic_gguf(spec, tmp.file("m.gguf"));
  auto m = load_model(tmp.file("m.gguf"));
  std::vector<int32_t> toks{1, 2, 300};
  ForwardRequest r;
  r.tokens = toks.data();
  r.n_seqs = 1;
  r.seq_len = 3;
  EXPECT_THROW(forward(*m, r), Error);
}

TEST(Forward, CancelStopsTheRun) {
  test::TempDir tmp;
  SyntheticSpec spec;
  spec.config = hetero_config(RopeLayout::kInterleaved);
  write_synthetic_gguf(spec, tmp.file("m.gguf"));
  auto m = load_model(tmp.file("m.gguf"));
  auto toks = some_tokens(8, 300, 1);
  std::atomic<bool> cancel{true};
  ForwardRequest r;
  r.tokens = toks.data();
  r.n_seqs = 1;
  r.seq_len = 8;
  r.cancel = &cancel;
  try {
    forward(*m, r);
    FAIL() << "expected cancellation";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCancelled);
  }
}

// Anchors from shared/data/README.md (independent float64 NumPy re-implementation).
TEST(Forward, Stories260KFirstStepAfterBos) {
  REQUIRE_DATA("models/stories260K/stories260K.bin");
  for (const char* f : {"models/stories260K/stories260K.bin", "models/stories260K/stories260K.gguf"}) {
    auto m = load_model(data_dir() + "/" + f);
    int32_t bos = 1;
    std::vector<float> logits(512);
    ForwardRequest r;
    r.tokens = &bos;
    r.n_seqs = 1;
    r.seq_len = 1;
    r.logits = logits.data();
    forward(*m, r);
    const int top = static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    EXPECT_EQ(top, 403) << f;
    EXPECT_NEAR(logits[403], 17.0235, 1e-3) << f;
    EXPECT_NEAR(logits[385], 15.4062, 1e-3) << f;
  }
}

static std::vector<int32_t> greedy(const Model& m, int steps) {
  std::vector<int32_t> toks{1};
  for (int s = 0; s < steps; ++s) {
    const std::vector<float> logits = test::full_logits(m, toks);
    const float* last = &logits[(toks.size() - 1) * m.config.vocab];
    toks.push_back(static_cast<int32_t>(std::max_element(last, last + m.config.vocab) - last));
  }
  return std::vector<int32_t>(toks.begin() + 1, toks.end());
}

TEST(Forward, GreedyDecodingReproducesReferenceStories) {
  REQUIRE_DATA("models/stories260K/stories260K.gguf");
  REQUIRE_DATA("models/tinystories-656K/config.json");
  auto a = load_model(data_dir() + "/models/stories260K/stories260K.gguf");
  EXPECT_EQ(greedy(*a, 20), (std::vector<int32_t>{403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338,
                                                  401, 396, 267, 337}));
  auto b = load_model(data_dir() + "/models/tinystories-656K");
  EXPECT_EQ(greedy(*b, 20), (std::vector<int32_t>{147, 201, 282, 215, 286, 598, 1662, 356, 499, 826, 1363, 1145, 1652, 615, 242,
                                                  1482, 951, 628, 499, 826}));
}
