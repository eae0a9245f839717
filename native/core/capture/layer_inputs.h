// The inputs of o_proj (the attention heads' outputs) and down_proj (silu(gate)·up) of chosen layers, streamed
// into mean and covariance accumulators during the forward pass: what least-squares compensation refits the kept
// columns with (apply/least_squares.h). The measure stage keeps only per-head and per-channel moments; the refit
// needs the full covariance across a layer's units, so it is captured here, only for the layers a plan cuts.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "core/capture/moments.h"
#include "core/forward/forward.h"
#include "core/model_config.h"

namespace ep {

class LayerInputCapture : public ForwardHooks {
 public:
  // want_attn[l] / want_mlp[l]: capture that layer's o_proj / down_proj input (layers without one are skipped).
  LayerInputCapture(const ModelConfig& config, const std::vector<char>& want_attn, const std::vector<char>& want_mlp);

  void attn_heads(int layer, const float* o, int64_t rows, int n_head, int head_dim) override;
  void mlp_act(int layer, const float* act, int64_t rows, int ffn) override;

  // nullptr where not captured
  const Moments* attn_input(int layer) const { return attn_[layer].get(); }
  const Moments* mlp_input(int layer) const { return mlp_[layer].get(); }

  // Bytes the accumulators of these layers hold (cross-products in float64, and the float32 scratch of wide ones).
  static uint64_t bytes_for(int64_t dim);

 private:
  std::vector<std::unique_ptr<Moments>> attn_, mlp_;
};

}  // namespace ep
