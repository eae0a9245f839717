// From captured statistics to the numbers the planner uses (docs/METHOD.md sections 2 and 3):
// per-block transfer entropies TE_l = I(y; Δ_l | h_{l−1}), TE_l^attn = I(y; a_l | h_{l−1}),
// TE_l^mlp = I(y; m_l | u_l); per-head and per-channel Gaussian entropies; energies for the
// activation-magnitude ablation; the means bias compensation needs.
#pragma once
#include <cstdint>
#include <vector>

#include "core/capture/capture.h"
#include "core/load/model.h"

namespace ep {

struct BlockAnalysis {
  bool has_attn = false, has_mlp = false;
  double te = 0, te_attn = 0, te_mlp = 0;  // output-targeted TE (docs/METHOD.md's first reading; kept as an option)
  // stream-targeted TE of the block update, its attention and its MLP output, each given h_{l−1} (analysis.cpp)
  double te_stream = 0, te_stream_attn = 0, te_stream_mlp = 0;
  double cosine = 0;            // mean cos(h_{l−1}, h_l): ShortGPT block influence = 1 − cosine
  double ridge = 0;             // relative ridge the TE terms used (the requested one, or raised 10× at a time)
  double max_ridge_effect = 0;  // largest relative change the ridge made to a log det of this block
  std::vector<double> head_entropy, head_energy;        // [n_head]: ½log((2πe)^hd det Σ_q), E‖o_q‖²
  std::vector<double> channel_entropy, channel_energy;  // [ffn]: ½log(2πe σ²), E[x²]
  std::vector<double> head_mean;                        // [n_head·head_dim] E[o] (o_proj input)
  std::vector<double> channel_mean;                     // [ffn] E[silu(gate)·up] (down_proj input)
  std::vector<double> attn_out_mean, mlp_out_mean;      // [dim] E[a_l], E[m_l]
  // [n_head] tr(W_o,hᵀW_o,h Σ_h) and [ffn] Var(x_j)·‖W_down[:,j]‖²: variance each unit adds to the stream
  // (filled when analyze_capture is given the model)
  std::vector<double> head_contribution, channel_contribution;
};

struct AnalysisResult {
  int64_t tokens = 0;
  int joint_dim = 0;
  bool projected = false;
  bool float32_products = false;  // the joint moments' cross-products (CaptureOptions::products, resolved)
  double ridge = 0;
  std::vector<BlockAnalysis> blocks;
};

// The largest relative ridge analyze_capture raises a block's to before giving up.
constexpr double kMaxRidge = 1e-2;
// ρ of the stream-targeted TE's noise floor, as a share of the stream's mean variance per dimension. The
// ranking it gives was the same for ρ from 0.01 to 1 in the study behind it; 0.1 sits in the middle.
constexpr double kStreamNoise = 0.1;

// With a model, also the unit contributions (its block weights are read, converted one block at a time).
AnalysisResult analyze_capture(const StatisticsCapture& capture, const ModelConfig& config, double ridge, const Model* model = nullptr);

}  // namespace ep
