// Measured sensitivities (the measure stage's ground truth): what removing one block, one attention layer
// or one MLP layer alone does to the model on held-out windows — the part replaced by its calibration mean
// output (mean compensation, as apply folds it) or by nothing. Two figures per part:
//   kl    E_positions KL(p_model ‖ p_removed): how much the model's next-token distribution changes. Always
//         ≥ 0 and meaningful on any text, so it is what the planner uses by default.
//   nll   the increase of the mean next-token loss on the windows' own tokens. On text unlike the model's
//         training data it can be negative (removing a part can make the model worse at its own domain and
//         better at that text), which is why it is reported but not the default.
// Every estimator of importance is checked against these numbers.
//
// In groups of windows: each removal at block l runs from the group's h_{l−1} (block l changed, blocks l+1..
// as they are, the output head) and is compared with the intact model's log-probabilities of the group.
// Cost: about 1.5·L² block passes over the windows (L·(L+1)/2 per kind of part), against L for one forward
// pass. On the CPU the group's hidden states advance block by block and every removal runs its remaining
// blocks at once. On GPUs (device.cuda_devices, sensitivity_block_major.cpp) the same sums run block-major: every
// changed model's hidden states advance through block l together, so each block's weights are uploaded
// once per group (plus once per removal made in it) instead of once per removal after it; groups are sized
// to what the GPU holds and split between the GPUs. The divergences are the twins in divergence.h.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "core/device/batches.h"
#include "core/load/model.h"

namespace ep {

struct SublayerMeans {
  std::vector<std::vector<float>> attn_out;  // [layer][dim] E[a_l] (bias included); empty: remove plainly
  std::vector<std::vector<float>> mlp_out;   // [layer][dim] E[m_l]
};

struct PartDamage {
  std::vector<double> attn, mlp, block;  // [layer]; NaN where the part is absent
};

// A partial cut of one sublayer, measured beside the whole removal so the planner can see how damage grows
// with the share removed: the units removed (query heads of the attention layer, channels of the MLP) and
// their calibration means — head_dim floats per head, one per channel — for the compensation apply folds in
// (W_o[:, h]·μ_h, W_down[:, j]·μ_j into the layer's output bias). Empty means: removed plainly.
struct PartialCut {
  std::vector<int> units;
  std::vector<float> means;
};
struct PartialCuts {
  std::vector<PartialCut> attn, mlp;  // [layer]; a cut with no units is not measured
};

struct RemovalDamage {
  double base_nll = 0;  // mean NLL of the intact model over the predicted positions
  PartDamage nll;       // mean NLL increase (nats)
  PartDamage kl;        // mean KL(p_model ‖ p_removed) over every position (nats)
  PartDamage partial_nll, partial_kl;  // the same for the partial cuts (attn, mlp; block unused): NaN where none
};

// partial: the partial cuts to measure as well (null: none). device: the CPU (no cuda_devices) or the GPUs
// (their matrix products in device.precision: f32 reproduces the CPU's figures to rounding, bf16 adds its
// rounding of its own to every KL, not yet measured on a GPU).
RemovalDamage measure_removal_damage(const Model& model, const int32_t* tokens, int n_seqs, int seq_len, const SublayerMeans& means,
                                     const std::atomic<bool>* cancel, const std::function<void(int64_t, int64_t)>& progress,
                                     const PartialCuts* partial = nullptr, const RunDevices& device = RunDevices{});

}  // namespace ep
