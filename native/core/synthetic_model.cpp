#include "core/synthetic_model.h"

#include <cmath>
#include <deque>
#include <vector>

#include "core/error.h"
#include "core/gguf_llama_meta.h"

namespace ep {

namespace {
// splitmix64 + Box-Muller: portable and reproducible, unlike std::normal_distribution across libstdc++ versions.
struct Rng {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return (next() >> 11) * (1.0 / 9007199254740992.0) + 1e-300; }
  float normal() { return static_cast<float>(std::sqrt(-2 * std::log(uniform())) * std::cos(6.283185307179586 * uniform())); }
};
}  // namespace

void write_synthetic_gguf(const SyntheticSpec& spec, const std::string& path) {
  const ModelConfig& c = spec.config;
  c.validate(path);
  GgufWriter w;
  write_llama_hparams(w, c);
  w.set_string("general.name", "entroprune-synthetic");
  if (spec.with_vocab && c.vocab >= 259) {
    std::vector<std::string> tokens;
    std::vector<float> scores;
    std::vector<int32_t> types;
    tokens = {"<unk>", "<s>", "</s>"};
    scores = {0, 0, 0};
    types = {2, 3, 3};
    for (int b = 0; b < 256; ++b) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
      tokens.push_back(buf);
      scores.push_back(0);
      types.push_back(6);
    }
    for (int i = 259; i < c.vocab; ++i) {  // filler pieces that never match real text
      tokens.push_back("<extra_" + std::to_string(i) + ">");
      scores.push_back(-1e9f);
      types.push_back(4);
    }
    write_spm_vocab(w, tokens, scores, types, 1, 2);
  }
  Rng rng{spec.seed};
  std::deque<std::vector<float>> store;
  auto tensor = [&](const std::string& name, std::vector<int64_t> shape, float std_dev, float mean = 0) {
    uint64_t n = 1;
    for (int64_t d : shape) n *= d;
    store.emplace_back(n);
    for (float& x : store.back()) x = mean + std_dev * rng.normal();
    w.add_tensor(name, shape, DType::F32, store.back().data());
  };
  const int64_t d = c.dim, hd = c.head_dim;
  auto scale = [&](int64_t fan_in) { return spec.weight_scale > 0 ? spec.weight_scale : 1.0f / std::sqrt(static_cast<float>(fan_in)); };
  tensor("token_embd.weight", {c.vocab, d}, 1.0f);
  for (int l = 0; l < c.n_layers(); ++l) {
    const LayerShape& s = c.layers[l];
    const std::string b = "blk." + std::to_string(l) + ".";
    if (s.n_head > 0) {
      tensor(b + "attn_norm.weight", {d}, 0.1f, 1.0f);
      tensor(b + "attn_q.weight", {s.n_head * hd, d}, scale(d));
      tensor(b + "attn_k.weight", {s.n_kv_head * hd, d}, scale(d));
      tensor(b + "attn_v.weight", {s.n_kv_head * hd, d}, scale(d));
      tensor(b + "attn_output.weight", {d, s.n_head * hd}, scale(s.n_head * hd));
    }
    if (s.attn_out_bias) tensor(b + "attn_output.bias", {d}, 0.1f);
    if (s.ffn > 0) {
      tensor(b + "ffn_norm.weight", {d}, 0.1f, 1.0f);
      tensor(b + "ffn_gate.weight", {s.ffn, d}, scale(d));
      tensor(b + "ffn_up.weight", {s.ffn, d}, scale(d));
      tensor(b + "ffn_down.weight", {d, s.ffn}, scale(s.ffn));
    }
    if (s.ffn_down_bias) tensor(b + "ffn_down.bias", {d}, 0.1f);
  }
  tensor("output_norm.weight", {d}, 0.1f, 1.0f);
  if (!c.tied_output) tensor("output.weight", {c.vocab, d}, scale(d));
  w.write(path);
}

}  // namespace ep
