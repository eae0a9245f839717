#include "core/capture/layer_inputs.h"

namespace ep {

namespace {
// Cross-products as the statistics capture forms them: float64 for narrow inputs, blocked float32 (relative
// error ~1e-6, twice dsyrk's speed) for wide ones such as a 7B model's 11008 MLP channels.
constexpr int kExactMax = 1024;
Accumulation accumulation_for(int64_t dim) { return dim <= kExactMax ? Accumulation::kFloat64 : Accumulation::kBlockedFloat32; }
}  // namespace

LayerInputCapture::LayerInputCapture(const ModelConfig& c, const std::vector<char>& want_attn, const std::vector<char>& want_mlp) {
  const int L = c.n_layers();
  attn_.resize(L);
  mlp_.resize(L);
  for (int l = 0; l < L; ++l) {
    const LayerShape& s = c.layers[l];
    if (l < static_cast<int>(want_attn.size()) && want_attn[l] && s.n_head > 0) {
      const int q = s.n_head * c.head_dim;
      attn_[l] = std::make_unique<Moments>(q, accumulation_for(q));
    }
    if (l < static_cast<int>(want_mlp.size()) && want_mlp[l] && s.ffn > 0) mlp_[l] = std::make_unique<Moments>(s.ffn, accumulation_for(s.ffn));
  }
}

void LayerInputCapture::attn_heads(int layer, const float* o, int64_t rows, int n_head, int head_dim) {
  if (attn_[layer]) attn_[layer]->add(o, rows, static_cast<int64_t>(n_head) * head_dim);
}

void LayerInputCapture::mlp_act(int layer, const float* act, int64_t rows, int ffn) {
  if (mlp_[layer]) mlp_[layer]->add(act, rows, ffn);
}

uint64_t LayerInputCapture::bytes_for(int64_t dim) {
  const uint64_t cross = static_cast<uint64_t>(dim) * dim;
  return cross * sizeof(double) + (dim > kExactMax ? cross * sizeof(float) : 0);
}

}  // namespace ep
