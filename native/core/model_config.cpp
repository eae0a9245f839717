#include "core/model_config.h"

#include <cmath>

#include "core/error.h"

namespace ep {

void ModelConfig::validate(const std::string& file) const {
  auto need = [&](bool ok, const std::string& what) {
    if (!ok) fail_format(file, "invalid model configuration: " + what);
  };
  need(dim > 0, "hidden size must be positive (got " + std::to_string(dim) + ")");
  need(vocab > 0, "vocabulary size must be positive (got " + std::to_string(vocab) + ")");
  need(head_dim > 0 && head_dim % 2 == 0, "head size must be a positive even number (got " + std::to_string(head_dim) + ")");
  need(!layers.empty(), "the model has no layers");
  // RMSNorm epsilon: a stabiliser far below the activations' mean square; 1e30 would silently flatten
  // every normalised vector.
  need(norm_eps > 0 && std::isfinite(norm_eps) && norm_eps <= 1e-1f, "RMSNorm epsilon must lie in (0, 0.1] (got " + std::to_string(norm_eps) + ")");
  need(context >= 0, "context length must not be negative (got " + std::to_string(context) + ")");
  need(sliding_window >= 0, "sliding window must not be negative (got " + std::to_string(sliding_window) + ")");
  need(rope_linear_factor > 0 && std::isfinite(rope_linear_factor), "RoPE scaling factor must be a positive number (got " + std::to_string(rope_linear_factor) + ")");
  for (float f : rope_freq_factors) need(f > 0 && std::isfinite(f), "RoPE frequency factors must be positive numbers");
  need(rope_theta > 0 && std::isfinite(rope_theta), "RoPE theta must be positive");
  need(rope_freq_factors.empty() || static_cast<int>(rope_freq_factors.size()) == head_dim / 2,
       "rope frequency factors must have head_dim/2 entries");
  need(dim < (1 << 20) && vocab < (1 << 24) && head_dim < (1 << 14) && layers.size() < 4096,
       "sizes are implausibly large");
  for (size_t l = 0; l < layers.size(); ++l) {
    const LayerShape& s = layers[l];
    std::string at = "layer " + std::to_string(l) + ": ";
    need(s.n_head >= 0 && s.n_kv_head >= 0 && s.ffn >= 0, at + "negative size");
    need(s.n_head < (1 << 14) && s.ffn < (1 << 22), at + "sizes are implausibly large");
    need(s.n_head > 0 || s.n_kv_head == 0, at + "KV heads (" + std::to_string(s.n_kv_head) + ") without query heads");
    if (s.n_head > 0) {
      need(s.n_kv_head > 0, at + "query heads (" + std::to_string(s.n_head) + ") but a KV head count of 0");
      need(s.n_head % s.n_kv_head == 0,
           at + "query heads (" + std::to_string(s.n_head) + ") must be a multiple of KV heads (" +
               std::to_string(s.n_kv_head) + ")");
    }
  }
}

void ModelConfig::set_llama3_rope_scaling(float factor, float low_freq_factor, float high_freq_factor,
                                          int original_context) {
  // Frequencies whose wavelength is short stay; long ones are divided by `factor`; a smooth ramp between.
  const double pi = 3.14159265358979323846;
  const double low_wavelen = original_context / static_cast<double>(low_freq_factor);
  const double high_wavelen = original_context / static_cast<double>(high_freq_factor);
  rope_freq_factors.assign(head_dim / 2, 1.0f);
  for (int i = 0; i < head_dim / 2; ++i) {
    double freq = std::pow(static_cast<double>(rope_theta), -2.0 * i / head_dim);
    double wavelen = 2 * pi / freq;
    double scaled;
    if (wavelen < high_wavelen) {
      scaled = freq;
    } else if (wavelen > low_wavelen) {
      scaled = freq / factor;
    } else {
      double smooth = (original_context / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
      scaled = (1 - smooth) * freq / factor + smooth * freq;
    }
    rope_freq_factors[i] = static_cast<float>(freq / scaled);
  }
  rope_scaling = "llama3";
}

}  // namespace ep
