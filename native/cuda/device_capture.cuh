// The measure stage's capture fused into the GPU forward pass: the twin of ep::StatisticsCapture
// (native/core/capture/capture.cpp), summing the same accumulators with kernels on the runner's stream while the
// activations are still on the device, so that a calibration run on the GPU moves no hook tensor over PCIe.
//
// Per batch of block l (rows of one run() call):
//   joint (y, h, a, m)  the four r-wide parts assembled in one [rows, 4r] buffer — y from the host (the
//                       driver projected it after pass 1), h, a, m projected here with the capture's own
//                       projection — then shifted second moments: float64 products (grouped_cross, the twin
//                       of dsyrk) or float32 GEMMs over 4096-row chunks added into float64 (the twin of the
//                       blocked ssyrk), as the host capture's products() says
//   heads               float64 shifted moments of each head's columns of the attention output
//   channels            shifted sums and sums of squares of silu(gate)·up per channel
//   a, m sums           column sums of the attention and MLP outputs (bias compensation means)
//   cosines             cos(h_{l−1}, h_l) per row, summed on the host in row order (the CPU's order);
//                       a NaN or infinity throws NonFiniteActivations(l), as block_output does
// Shifts are the first batch's column means (the CPU's Moments use the same, its ChannelStats the first row;
// any shift merges exactly).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "core/capture/block_statistics.h"
#include "core/model_config.h"
#include "core/device/block_runner.h"
#include "cuda/cublas_runtime.cuh"
#include "cuda/device_memory.cuh"

namespace ep::cuda {

class DeviceCapture {
 public:
  // Buffers for batches of up to max_rows rows come from `arena`; GEMMs use `blas` (may be empty) on `stream`.
  DeviceCapture(const ModelConfig& c, const CaptureLayout& layout, int64_t max_rows, DeviceArena& arena, const Cublas::Handle* blas,
                cudaStream_t stream);

  void begin_block(int l);  // the accumulators start empty for block l
  // The hook points of one batch, in forward order; every pointer is device memory of `rows` rows.
  void block_input(const float* h, int64_t rows, const float* y_projected_host);
  void attn_heads(const float* att, int64_t rows);
  void attn_output(const float* a, int64_t rows);
  void mlp_act(const float* act, int64_t rows);
  void mlp_output(const float* m, int64_t rows);
  void block_output(const float* h, int64_t rows);
  // Block l's statistics summed so far, downloaded; the accumulators are left empty.
  BlockStatistics take();

 private:
  struct Accumulator {  // shifted moments of `dim`-wide vectors (cross: groups × g × g when grouped)
    int dim = 0, group = 0;
    int64_t n = 0;
    double *shift = nullptr, *sum = nullptr, *cross = nullptr;
  };
  void project_into_joint(const float* x, int64_t rows, int part);
  void set_shift_if_first(Accumulator& acc, const float* x, int64_t rows, int64_t ld);
  void accumulate_grouped(Accumulator& acc, const float* x, int64_t rows, int64_t ld);
  void accumulate_chunked_f32(Accumulator& acc, const float* x, int64_t rows);
  MomentState download(const Accumulator& acc, int group_index) const;  // queued; valid after a stream sync
  std::vector<double> fetch(const double* dev, int64_t n) const;         // likewise
  void clear(Accumulator& acc);

  ModelConfig c_;
  int r_, l_ = -1;
  bool f64_products_;
  int64_t max_rows_;
  const Cublas::Handle* blas_;
  cudaStream_t stream_;
  float* projection_t_ = nullptr;  // r×d (the host projection transposed), null when not projected
  float *joint_rows_, *h_in_, *proj_out_, *chunk_t_, *gram_;
  double *cos_rows_, *attn_sum_, *mlp_sum_, *channel_shift_, *channel_sum_, *channel_sumsq_;
  int64_t channel_n_ = 0;
  Accumulator joint_, heads_;
  std::vector<double> cos_host_;
  double cos_sum_ = 0;
  int64_t rows_ = 0;
};

}  // namespace ep::cuda
