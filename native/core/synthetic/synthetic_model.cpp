#include "core/synthetic/synthetic_model.h"

#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>

#include "core/error.h"
#include "core/format/gguf_llama_meta.h"
#include "core/format/gguf_writer.h"
#include "core/random.h"

namespace ep {

namespace {

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// mean + std·N(0,1) into x[0..n). Chunks of 2^16 values each have their own generator (seeded by the tensor's
// seed and the chunk index), so the values do not depend on how many threads fill them.
void fill_normal(float* x, uint64_t n, uint64_t seed, float std_dev, float mean) {
  constexpr uint64_t kChunk = 1u << 16;
  const int64_t chunks = static_cast<int64_t>((n + kChunk - 1) / kChunk);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    SplitMix64 rng{seed ^ (0x9e3779b97f4a7c15ull * static_cast<uint64_t>(c + 1))};
    const uint64_t end = std::min<uint64_t>(n, (c + 1) * kChunk);
    for (uint64_t i = c * kChunk; i < end; i += 2) {
      const double r = std::sqrt(-2 * std::log(rng.uniform())), t = 6.283185307179586 * rng.uniform();
      x[i] = mean + std_dev * static_cast<float>(r * std::cos(t));
      if (i + 1 < end) x[i + 1] = mean + std_dev * static_cast<float>(r * std::sin(t));
    }
  }
}

struct Recipe {
  std::string name;  // canonical (GGUF) name
  std::vector<int64_t> shape;
  float std_dev, mean;
};

// Every tensor of the model with the distribution it is drawn from.
std::vector<Recipe> recipes(const SyntheticSpec& spec) {
  const ModelConfig& c = spec.config;
  const int64_t d = c.dim, hd = c.head_dim;
  auto scale = [&](int64_t fan_in) { return spec.weight_scale > 0 ? spec.weight_scale : 1.0f / std::sqrt(static_cast<float>(fan_in)); };
  std::vector<Recipe> r;
  r.push_back({"tok_embd", {c.vocab, d}, 1.0f, 0});
  for (int l = 0; l < c.n_layers(); ++l) {
    const LayerShape& s = c.layers[l];
    const std::string b = "blk." + std::to_string(l) + ".";
    if (s.n_head > 0) {
      r.push_back({b + "attn_norm", {d}, 0.1f, 1.0f});
      r.push_back({b + "attn_q", {s.n_head * hd, d}, scale(d), 0});
      r.push_back({b + "attn_k", {s.n_kv_head * hd, d}, scale(d), 0});
      r.push_back({b + "attn_v", {s.n_kv_head * hd, d}, scale(d), 0});
      r.push_back({b + "attn_output", {d, s.n_head * hd}, scale(s.n_head * hd), 0});
    }
    if (s.attn_out_bias) r.push_back({b + "attn_output.bias", {d}, 0.1f, 0});
    if (s.ffn > 0) {
      r.push_back({b + "ffn_norm", {d}, 0.1f, 1.0f});
      r.push_back({b + "ffn_gate", {s.ffn, d}, scale(d), 0});
      r.push_back({b + "ffn_up", {s.ffn, d}, scale(d), 0});
      r.push_back({b + "ffn_down", {d, s.ffn}, scale(s.ffn), 0});
    }
    if (s.ffn_down_bias) r.push_back({b + "ffn_down.bias", {d}, 0.1f, 0});
  }
  r.push_back({"output_norm", {d}, 0.1f, 1.0f});
  if (!c.tied_output) r.push_back({"output", {c.vocab, d}, scale(d), 0});
  return r;
}

std::function<void(float*)> producer(const SyntheticSpec& spec, const Recipe& t) {
  uint64_t n = 1;
  for (int64_t d : t.shape) n *= static_cast<uint64_t>(d);
  const uint64_t seed = spec.seed * 0x100000001b3ull ^ fnv1a(t.name);
  return [n, seed, t](float* dst) { fill_normal(dst, n, seed, t.std_dev, t.mean); };
}

void write_byte_vocab(GgufWriter& w, int vocab) {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<float> scores = {0, 0, 0};
  std::vector<int32_t> types = {2, 3, 3};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
    tokens.push_back(buf);
    scores.push_back(0);
    types.push_back(6);
  }
  for (int i = 259; i < vocab; ++i) {  // filler pieces that never match real text
    tokens.push_back("<extra_" + std::to_string(i) + ">");
    scores.push_back(-1e9f);
    types.push_back(4);
  }
  write_spm_vocab(w, tokens, scores, types, 1, 2);
}

ModelConfig uniform_shape(int dim, int n_layers, int heads, int kv_heads, int ffn, int vocab, int context, float theta, float eps) {
  ModelConfig c;
  c.dim = dim, c.vocab = vocab, c.head_dim = dim / heads, c.context = context, c.rope_theta = theta, c.norm_eps = eps;
  c.layers.assign(n_layers, LayerShape{heads, kv_heads, ffn, false, false, false});
  return c;
}

}  // namespace

std::vector<std::string> synthetic_preset_names() { return {"llama2-7b", "llama2-13b", "llama2-70b", "llama3-8b", "llama3-70b", "mistral-7b"}; }

ModelConfig synthetic_preset(const std::string& name, int layers) {
  ModelConfig c;
  if (name == "llama2-7b") c = uniform_shape(4096, 32, 32, 32, 11008, 32000, 4096, 10000, 1e-5f);
  else if (name == "llama2-13b") c = uniform_shape(5120, 40, 40, 40, 13824, 32000, 4096, 10000, 1e-5f);
  else if (name == "llama2-70b") c = uniform_shape(8192, 80, 64, 8, 28672, 32000, 4096, 10000, 1e-5f);
  else if (name == "llama3-8b") c = uniform_shape(4096, 32, 32, 8, 14336, 128256, 8192, 500000, 1e-5f);
  else if (name == "llama3-70b") c = uniform_shape(8192, 80, 64, 8, 28672, 128256, 8192, 500000, 1e-5f);
  else if (name == "mistral-7b") {
    c = uniform_shape(4096, 32, 32, 8, 14336, 32000, 32768, 10000, 1e-5f);
    c.sliding_window = 4096;
  } else {
    std::string known;
    for (const auto& n : synthetic_preset_names()) known += (known.empty() ? "" : ", ") + n;
    throw Error(ErrorCode::kInvalidArgument, name, "unknown model shape; known: " + known);
  }
  if (layers > 0 && layers < c.n_layers()) c.layers.resize(layers);
  return c;
}

std::vector<SyntheticTensor> synthetic_tensors(const SyntheticSpec& spec) {
  std::vector<SyntheticTensor> out;
  const std::vector<Recipe> all = recipes(spec);
  const int total = static_cast<int>(all.size());
  auto done = std::make_shared<int>(0);
  for (const Recipe& t : all) {
    auto fill = producer(spec, t);
    if (spec.on_tensor) fill = [fill, done, total, cb = spec.on_tensor](float* dst) { cb((*done)++, total); fill(dst); };
    out.push_back({t.name, t.shape, fill});
  }
  return out;
}

void write_synthetic_gguf(const SyntheticSpec& spec, const std::string& path) {
  const ModelConfig& c = spec.config;
  c.validate(path);
  GgufWriter w;
  write_llama_hparams(w, c);
  w.set_string("general.name", "entroprune-synthetic");
  if (spec.with_vocab && c.vocab >= 259) write_byte_vocab(w, c.vocab);
  for (SyntheticTensor& t : synthetic_tensors(spec)) {
    const bool bias = t.name.size() > 5 && t.name.compare(t.name.size() - 5, 5, ".bias") == 0;
    const std::string name = t.name == "tok_embd" ? "token_embd.weight" : bias ? t.name : t.name + ".weight";
    w.add_tensor_f32(name, t.shape, t.shape.size() == 2 ? spec.dtype : DType::F32, std::move(t.fill));
  }
  w.write(path);
}

}  // namespace ep
