// One description of a LLaMA-family model, whatever file it came from. Shapes are per layer because pruned
// models are heterogeneous: every layer has its own query/KV head counts and MLP width (0 = layer absent)
// and may carry biases that bias compensation added.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ep {

// Which pairs of a head's dimensions RoPE rotates together.
enum class RopeLayout {
  kInterleaved,  // (2i, 2i+1): llama2.c, GGUF (llama.cpp's converter permutes HF q/k into this)
  kHalf,         // (i, i + head_dim/2): Hugging Face "rotate_half"
};

struct LayerShape {
  int n_head = 0;      // query heads (0: attention layer removed)
  int n_kv_head = 0;   // KV heads; n_head % n_kv_head == 0, query head h reads KV head h / (n_head / n_kv_head)
  int ffn = 0;         // MLP width (0: MLP layer removed)
  bool attn_qkv_bias = false;
  bool attn_out_bias = false;
  bool ffn_down_bias = false;
};

struct ModelConfig {
  std::string arch = "llama";
  int dim = 0;
  int vocab = 0;
  int head_dim = 0;
  int context = 0;             // trained context length (0 = unknown)
  int sliding_window = 0;      // Mistral-style local attention (0 = full causal)
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeLayout rope_layout = RopeLayout::kInterleaved;
  std::string rope_scaling = "none";  // none | linear | llama3 (llama3 is folded into rope_freq_factors)
  float rope_linear_factor = 1.0f;
  std::vector<float> rope_freq_factors;  // per frequency divisor (head_dim/2 entries) or empty
  bool tied_output = false;
  int bos = 1;
  int eos = 2;
  std::vector<LayerShape> layers;

  int n_layers() const { return static_cast<int>(layers.size()); }
  // Throws a format error naming `file` when a field is missing, non-positive or inconsistent.
  void validate(const std::string& file) const;
  // Llama-3 rope scaling as Hugging Face/llama.cpp define it, expressed as per-frequency divisors.
  void set_llama3_rope_scaling(float factor, float low_freq_factor, float high_freq_factor, int original_context);
};

}  // namespace ep
