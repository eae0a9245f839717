// Measured sensitivities (the measure stage's ground truth): the increase in held-out next-token loss when
// one block, one attention layer or one MLP layer is removed alone — replaced by its calibration mean
// output (mean compensation, as apply folds it) or by nothing. Every estimator of importance is checked
// against these numbers, and the planner can use them directly (`--importance measured`).
//
// Block-major: the windows' hidden states h_{l−1} are kept for all windows; each removal at block l runs
// from there (block l changed, blocks l+1.. as they are, the output head) and block l then advances the
// kept states. Cost: about 1.5·L² block passes over the windows, against L for one forward pass.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "core/model.h"

namespace ep {

struct SublayerMeans {
  std::vector<std::vector<float>> attn_out;  // [layer][dim] E[a_l] (bias included); empty: remove plainly
  std::vector<std::vector<float>> mlp_out;   // [layer][dim] E[m_l]
};

struct RemovalDamage {
  double base_nll = 0;                    // mean NLL of the intact model over the predicted positions
  std::vector<double> attn, mlp, block;   // [layer] mean NLL increase (nats); NaN where the part is absent
};

RemovalDamage measure_removal_damage(const Model& model, const int32_t* tokens, int n_seqs, int seq_len, const SublayerMeans& means,
                                     const std::atomic<bool>* cancel, const std::function<void(int64_t, int64_t)>& progress);

}  // namespace ep
