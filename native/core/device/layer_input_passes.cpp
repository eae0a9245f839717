#include "core/device/layer_input_passes.h"

#include "core/capture/layer_inputs.h"
#include "core/error.h"

namespace ep {

int capture_layer_inputs(const Model& model, const std::vector<LayerInputTarget>& targets_in, const TokenBatches& in, uint64_t memory_budget,
                         const std::atomic<bool>* cancel, const StageProgress& progress,
                         const std::function<void(const LayerInputTarget&, const Moments&)>& use) {
  const ModelConfig& c = model.config;
  const int L = c.n_layers();
  std::vector<std::vector<LayerInputTarget>> groups;
  uint64_t used = 0;
  for (LayerInputTarget t : targets_in) {
    if (t.layer < 0 || t.layer >= L) throw Error(ErrorCode::kInvalidArgument, model.path, "layer input capture: no block " + std::to_string(t.layer));
    t.dim = t.mlp ? c.layers[t.layer].ffn : static_cast<int64_t>(c.layers[t.layer].n_head) * c.head_dim;
    if (t.dim <= 0) continue;
    const uint64_t bytes = LayerInputCapture::bytes_for(t.dim);
    if (groups.empty() || used + bytes > memory_budget) {
      groups.emplace_back();
      used = 0;
    }
    groups.back().push_back(t);
    used += bytes;
  }
  if (groups.empty()) return 0;
  if (in.n_seqs <= 0 || in.seq_len <= 0 || in.batch_seqs <= 0 || !in.tokens)
    throw Error(ErrorCode::kInvalidArgument, model.path, "layer input capture needs calibration windows");
  const int64_t total = static_cast<int64_t>(in.n_seqs) * static_cast<int64_t>(groups.size());
  int passes = 0;
  for (const auto& group : groups) {
    std::vector<char> ga(L, 0), gm(L, 0);
    for (const LayerInputTarget& t : group) (t.mlp ? gm : ga)[t.layer] = 1;
    LayerInputCapture capture(c, ga, gm);
    const int64_t before = static_cast<int64_t>(passes) * in.n_seqs;
    forward_batches(model, in, capture, cancel, [&](int done) {
      if (progress) progress(before + done, total);
    });
    ++passes;
    for (const LayerInputTarget& t : group) use(t, t.mlp ? *capture.mlp_input(t.layer) : *capture.attn_input(t.layer));
  }
  return passes;
}

}  // namespace ep
