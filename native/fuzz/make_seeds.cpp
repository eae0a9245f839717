// Small valid inputs for the seed corpus: a synthetic GGUF with an embedded vocabulary, the same model as
// a llama2.c checkpoint, and a safetensors model (config.json NUL model.safetensors, as fuzz_safetensors
// splits its input). Usage: make_seeds <dir>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "core/load/model.h"
#include "core/synthetic/synthetic_model.h"

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const std::string dir = argv[1];
  ep::SyntheticSpec spec;
  spec.config.dim = 16;
  spec.config.vocab = 260;
  spec.config.head_dim = 4;
  spec.config.layers.assign(2, ep::LayerShape{4, 2, 24, false, false, false});
  spec.config.layers[1] = ep::LayerShape{0, 0, 12, false, true, false};
  write_synthetic_gguf(spec, dir + "/gguf/synthetic.gguf");

  // llama2.c: dim 8, hidden 12, 1 layer, 2 heads, 1 kv head, vocab 4 (shared), seq_len 4
  {
    const int32_t h[7] = {8, 12, 1, 2, 1, 4, 4};
    const size_t floats = 4 * 8 + 1 * (8 + 8 * 8 + 4 * 8 * 2 + 8 * 8 + 8 + 3 * 12 * 8) + 8 + 4 * 4;
    std::vector<float> w(floats, 0.01f);
    std::ofstream f(dir + "/llama2c/tiny.bin", std::ios::binary);
    f.write(reinterpret_cast<const char*>(h), sizeof(h));
    f.write(reinterpret_cast<const char*>(w.data()), w.size() * 4);
  }
  // safetensors: config.json NUL model.safetensors with one F32 tensor set per name the loader needs
  {
    const std::string cfg = R"({"hidden_size":4,"vocab_size":3,"num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,"intermediate_size":4,"tie_word_embeddings":true})";
    std::string hdr = "{";
    uint64_t off = 0;
    auto add = [&](const std::string& n, std::vector<int> shape) {
      uint64_t k = 1;
      for (int s : shape) k *= s;
      if (hdr.size() > 1) hdr += ",";
      hdr += "\"" + n + "\":{\"dtype\":\"F32\",\"shape\":[";
      for (size_t i = 0; i < shape.size(); ++i) hdr += (i ? "," : "") + std::to_string(shape[i]);
      hdr += "],\"data_offsets\":[" + std::to_string(off) + "," + std::to_string(off + 4 * k) + "]}";
      off += 4 * k;
    };
    add("model.embed_tokens.weight", {3, 4});
    add("model.norm.weight", {4});
    const std::string p = "model.layers.0.";
    add(p + "input_layernorm.weight", {4});
    add(p + "self_attn.q_proj.weight", {4, 4});
    add(p + "self_attn.k_proj.weight", {2, 4});
    add(p + "self_attn.v_proj.weight", {2, 4});
    add(p + "self_attn.o_proj.weight", {4, 4});
    add(p + "post_attention_layernorm.weight", {4});
    add(p + "mlp.gate_proj.weight", {4, 4});
    add(p + "mlp.up_proj.weight", {4, 4});
    add(p + "mlp.down_proj.weight", {4, 4});
    hdr += "}";
    std::ofstream f(dir + "/safetensors/tiny.in", std::ios::binary);
    f.write(cfg.data(), cfg.size());
    f.put('\0');
    const uint64_t n = hdr.size();
    f.write(reinterpret_cast<const char*>(&n), 8);
    f.write(hdr.data(), hdr.size());
    std::vector<float> data(off / 4, 0.1f);
    f.write(reinterpret_cast<const char*>(data.data()), off);
  }
  return 0;
}
