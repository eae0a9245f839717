// Activation capture for the measure stage: a ForwardHooks implementation that streams every statistic
// docs/METHOD.md needs into float64 accumulators during the forward pass, never holding all activations:
//
//   per block l   joint moments of (y, h_{l−1}, a_l, m_l) — projected to r dims by one shared random
//                 orthogonal matrix when d > maxDim — for TE_l, TE_l^attn, TE_l^mlp (section 2);
//                 mean cosine(h_{l−1}, h_l) for the block-influence baseline;
//                 E[a_l], E[m_l] (unprojected) for bias compensation of removed layers (section 6)
//   per head      moments of its attention output (before o_proj): entropy (section 4) and the mean
//                 the o_proj compensation needs
//   per channel   mean and variance of silu(gate)·up: entropy and the down_proj compensation mean
//
// y (the final normalised hidden state) is known only at the end of a forward call, so the projected
// per-block vectors of the current batch are kept until final_hidden() and then folded in. A block-major
// driver that already knows y folds each block in right after it instead (fold_block).
// Captures merge: one per thread / device / batch, summed at the end, equals one pass over everything.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "core/capture/block_statistics.h"
#include "core/error.h"
#include "core/forward/forward.h"
#include "core/model_config.h"
#include "core/capture/moments.h"

namespace ep {

struct CaptureOptions {
  int max_dim = 1024;   // project hidden states when d > max_dim ...
  int proj_dim = 512;   // ... to this many dimensions
  uint64_t seed = 0;    // seeds the projection (the calibration seed)
  // Cross-products of the joint (y, h, a, m) moments: blocked float32 (ssyrk, ~0.9× its speed) or float64
  // (dsyrk, ~0.4×). Unset = float64 while the joint vector is at most kExactJointMax wide (the products then
  // cost little next to the forward pass) and float32 above (7B-class models at the default projection:
  // 4 × 512). float32 moves log-determinants of near-singular covariances by ~1e-3 relative; see the
  // README's "Covariance precision" note.
  std::optional<Accumulation> products;
  static constexpr int kExactJointMax = 1024;
};

// Thrown from block_output when a block's output holds NaN or infinity, so no statistic is computed from
// it; the caller names the culprit with Model::nonfinite_report(layer).
class NonFiniteActivations : public Error {
 public:
  explicit NonFiniteActivations(int layer)
      : Error(ErrorCode::kFormat, "", "the activations became NaN or infinite in block " + std::to_string(layer)), layer_(layer) {}
  int layer() const { return layer_; }

 private:
  int layer_;
};

class StatisticsCapture : public ForwardHooks {
 public:
  StatisticsCapture(const ModelConfig& config, const CaptureOptions& options);

  // ForwardHooks
  void block_input(int layer, const float* h, int64_t rows, int dim) override;
  void attn_heads(int layer, const float* o, int64_t rows, int n_head, int head_dim) override;
  void attn_output(int layer, const float* a, int64_t rows, int dim) override;
  void mlp_act(int layer, const float* act, int64_t rows, int ffn) override;
  void mlp_output(int layer, const float* m, int64_t rows, int dim) override;
  void block_output(int layer, const float* h, int64_t rows, int dim) override;
  void final_hidden(const float* y, int64_t rows, int dim) override;

  void merge(const StatisticsCapture& other);
  // An empty capture with this one's configuration and projection, to be merged back (one per device).
  std::unique_ptr<StatisticsCapture> empty_like() const { return std::make_unique<StatisticsCapture>(config_, options_); }

  // For drivers that run the model block by block and know y before the blocks (calibrate_streamed):
  // project y rows as final_hidden would, fold block l's current batch in with those rows of y, and count
  // the tokens once at the end. final_hidden(y) is exactly project + fold_block for every block + add_tokens.
  void project_output(const float* y, int64_t rows, float* out) const { project(y, rows, out); }
  void fold_block(int l, const float* y_projected, int64_t rows);
  void add_tokens(int64_t rows) { tokens_ += rows; }

  // Block l's accumulators as raw state (shift, sums) — and the way back in: absorb_block merges statistics
  // summed elsewhere (the GPU's fused capture) into block l as merge() would, leaving the token count to
  // add_tokens.
  BlockStatistics block_statistics(int l) const;
  void absorb_block(int l, const BlockStatistics& s);

  int joint_dim() const { return r_; }       // r: dimension of each projected vector
  bool projected() const { return projected_; }
  Accumulation products() const { return products_; }  // what the joint moments use (resolved from the options)
  int64_t tokens() const { return tokens_; }
  const std::vector<float>& projection() const { return proj_; }  // d×r row-major (empty when not projected)

  // Joint (y, h, a, m) moments of block l, each part r wide; layers without attention/MLP contribute zeros.
  const Moments& block_moments(int l) const { return block_[l]; }
  const std::vector<Moments>& head_moments(int l) const { return heads_[l]; }
  const ChannelStats& channel_stats(int l) const { return channels_[l]; }
  std::vector<double> attn_output_mean(int l) const;  // E[a_l] (d)
  std::vector<double> mlp_output_mean(int l) const;   // E[m_l] (d)
  double block_cosine(int l) const { return tokens_ ? cos_sum_[l] / static_cast<double>(tokens_) : 0; }

 private:
  void project(const float* x, int64_t rows, float* out) const;  // [rows, d] -> [rows, r]

  ModelConfig config_;
  CaptureOptions options_;
  int d_, r_;
  bool projected_;
  Accumulation products_ = Accumulation::kFloat64;
  std::vector<float> proj_;
  int64_t tokens_ = 0;
  std::vector<Moments> block_;
  std::vector<std::vector<Moments>> heads_;
  std::vector<ChannelStats> channels_;
  std::vector<std::vector<double>> a_sum_, m_sum_;
  std::vector<double> cos_sum_;
  // batch buffers: per layer projected h, a, m [rows, r] (zeros where a layer is absent), raw h_in for cosine
  int64_t rows_ = 0;
  std::vector<std::vector<float>> h_buf_, a_buf_, m_buf_;
  std::vector<float> h_in_;
  std::vector<float> joint_;  // one batch of (y, h, a, m) rows for block_[l].add
};

}  // namespace ep
