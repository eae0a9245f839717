// The capture's accumulators as raw state, and one block's statistics in that form, so that an accumulator
// outside the CPU capture (the GPU's fused capture, native/cuda/device_capture.cuh) can hand what it summed
// to StatisticsCapture::absorb_block, which merges it exactly as it merges another capture (shifts are
// reconciled: any shift gives the same statistics up to rounding). The GPU side only fills fields — it
// calls nothing defined in the core library.
#pragma once
#include <cstdint>
#include <vector>

namespace ep {

// Σ(x−c), Σ(x−c)(x−c)ᵀ over n observations of a dim-vector, around the shift c.
struct MomentState {
  int64_t n = 0;
  std::vector<double> shift, sum;  // dim each
  std::vector<double> cross;       // dim×dim row-major; the upper triangle is what is read
};

// Per-channel running mean/variance (shifted sums in double), mergeable; methods in capture.cpp.
struct ChannelStats {
  int64_t n = 0;
  std::vector<double> shift, sum, sumsq;
  void init(int k) { shift.assign(k, 0); sum.assign(k, 0); sumsq.assign(k, 0); n = 0; }
  void add(const float* x, int64_t rows, int k);
  void merge(const ChannelStats& o);
  std::vector<double> mean() const;
  std::vector<double> variance() const;
};

struct BlockStatistics {
  MomentState joint;                // (y, h, a, m), 4r wide, zeros where the block has no attention / MLP
  std::vector<MomentState> heads;   // one per attention head, head_dim wide (empty without attention)
  ChannelStats channels;            // silu(gate)·up per channel (empty without MLP)
  std::vector<double> attn_sum, mlp_sum;  // Σ a_l, Σ m_l over the tokens (d each; empty when absent)
  double cosine_sum = 0;            // Σ cos(h_{l−1}, h_l) over the tokens
};

}  // namespace ep
