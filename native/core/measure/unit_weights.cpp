#include "core/measure/unit_weights.h"

namespace ep {

UnitWeightMagnitudes unit_weight_magnitudes(const Model& model) {
  const ModelConfig& c = model.config;
  const int64_t d = c.dim, hd = c.head_dim;
  UnitWeightMagnitudes out;
  for (int l = 0; l < c.n_layers(); ++l) {
    const LayerShape& s = c.layers[l];
    LayerBuffers converted;  // a streamed model converts one block at a time
    const LayerWeights w = model.layer_weights(l, converted);
    std::vector<double> heads(s.n_head, 0.0), channels(s.ffn, 0.0);
    const int64_t q = s.n_head * hd;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < s.n_head; ++i) {
      double e = 0;
      for (int64_t r = i * hd; r < (i + 1) * hd; ++r)
        for (int64_t k = 0; k < d; ++k) e += static_cast<double>(w.wq[r * d + k]) * w.wq[r * d + k];
      for (int64_t o = 0; o < d; ++o)
        for (int64_t k = i * hd; k < (i + 1) * hd; ++k) e += static_cast<double>(w.wo[o * q + k]) * w.wo[o * q + k];
      heads[i] = e;
    }
#pragma omp parallel for schedule(static)
    for (int j = 0; j < s.ffn; ++j) {
      double e = 0;
      for (int64_t k = 0; k < d; ++k) {
        e += static_cast<double>(w.w_gate[j * d + k]) * w.w_gate[j * d + k] + static_cast<double>(w.w_up[j * d + k]) * w.w_up[j * d + k];
        e += static_cast<double>(w.w_down[k * s.ffn + j]) * w.w_down[k * s.ffn + j];
      }
      channels[j] = e;
    }
    out.heads.push_back(std::move(heads));
    out.channels.push_back(std::move(channels));
  }
  return out;
}

}  // namespace ep
