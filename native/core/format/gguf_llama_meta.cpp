#include "core/format/gguf_llama_meta.h"

namespace ep {

std::string write_llama_hparams(GgufWriter& w, const ModelConfig& c) {
  bool uniform = true;
  for (const LayerShape& s : c.layers)
    if (s.n_head != c.layers[0].n_head || s.n_kv_head != c.layers[0].n_kv_head || s.ffn != c.layers[0].ffn || s.n_head == 0 || s.ffn == 0)
      uniform = false;
  const std::string arch = uniform ? "llama" : "deci";
  const std::string a = arch + ".";
  w.set_string("general.architecture", arch);
  w.set_u32(a + "context_length", static_cast<uint32_t>(c.context > 0 ? c.context : 2048));
  w.set_u32(a + "embedding_length", static_cast<uint32_t>(c.dim));
  w.set_u32(a + "block_count", static_cast<uint32_t>(c.n_layers()));
  w.set_u32(a + "vocab_size", static_cast<uint32_t>(c.vocab));
  w.set_f32(a + "attention.layer_norm_rms_epsilon", c.norm_eps);
  w.set_f32(a + "rope.freq_base", c.rope_theta);
  // Always written: when n_embd / head_count is no longer the head size, llama.cpp needs them.
  w.set_u32(a + "rope.dimension_count", static_cast<uint32_t>(c.head_dim));
  w.set_u32(a + "attention.key_length", static_cast<uint32_t>(c.head_dim));
  w.set_u32(a + "attention.value_length", static_cast<uint32_t>(c.head_dim));
  if (c.rope_scaling == "linear") {
    w.set_string(a + "rope.scaling.type", "linear");
    w.set_f32(a + "rope.scaling.factor", c.rope_linear_factor);
  }
  if (uniform) {
    w.set_u32(a + "attention.head_count", c.layers[0].n_head);
    w.set_u32(a + "attention.head_count_kv", c.layers[0].n_kv_head);
    w.set_u32(a + "feed_forward_length", c.layers[0].ffn);
  } else {
    std::vector<int32_t> h, kv, f;
    for (const LayerShape& s : c.layers) {
      h.push_back(s.n_head);
      kv.push_back(s.n_kv_head);
      f.push_back(s.ffn);
    }
    w.set_i32_array(a + "attention.head_count", h);
    w.set_i32_array(a + "attention.head_count_kv", kv);
    w.set_i32_array(a + "feed_forward_length", f);
  }
  return arch;
}

void write_spm_vocab(GgufWriter& w, const std::vector<std::string>& tokens, const std::vector<float>& scores,
                     const std::vector<int32_t>& types, int bos, int eos) {
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  w.set_f32_array("tokenizer.ggml.scores", scores);
  w.set_i32_array("tokenizer.ggml.token_type", types);
  w.set_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(bos));
  w.set_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(eos));
}

}  // namespace ep
