// The measure stage's driver: calibration sequences through the model with the statistics capture attached.
//
// Two orders, bit-identical results for the same batches:
//   calibrate           batch-major — each batch of sequences through every block (forward() with hooks).
//                       Memory: one batch of activations; every block's weights are read once per batch.
//   calibrate_streamed  block-major (layer streaming) — every sequence through block l before block l+1,
//                       the hidden states of all calibration tokens kept between blocks. Each block's weights
//                       are touched once per pass (a streamed model converts them once per pass, one block in
//                       memory at a time), which is what lets a model larger than memory be analyzed. The joint
//                       moments need y (the final hidden state) with every block's vectors, so it runs two
//                       passes: the first computes y for all tokens (kept projected, r floats per token), the
//                       second captures with y known. Memory: (d + r) floats per calibration token.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/capture.h"
#include "core/model.h"
#include "cuda/block_runner.h"

namespace ep {

struct CalibrationBatches {
  const int32_t* tokens = nullptr;  // [n_seqs * seq_len]
  int n_seqs = 0;
  int seq_len = 0;
  int batch_seqs = 1;  // sequences per forward call
};

// (done, total) in units of work the driver defines; called from the worker thread.
using CalibrationProgress = std::function<void(int64_t done, int64_t total)>;

// Where calibrate_streamed runs the blocks. No cuda_devices: the CPU. Otherwise those GPUs run the blocks
// (cuda/block_runner.h), the batches of every block split round-robin between them; each GPU sums its
// batches' statistics on the device (the fused capture) into a capture of its own, and those merge at the
// end (captures merge by design; the result differs from one device's only by the rounding of that merge).
// Each GPU keeps its batches' hidden states between blocks when they fit, else they live in pinned host memory. The GPU's matrix products take their inputs in `precision`: bfloat16 by
// default for every model, also one stored in float16 — activations rounded to float16 overflow where LLaMA's
// few "massive" activations exceed 65504, which bfloat16's float32 range never does.
// cpu_workers > 1 splits the batches the same way between CPU workers — the multi-device path without GPUs
// (tests); on one machine it only divides the cores.
struct CalibrationDevice {
  std::vector<int> cuda_devices;
  int cpu_workers = 1;
  cuda::Precision precision = cuda::Precision::kBF16;
  cuda::GemmBackend gemm = cuda::GemmBackend::kAuto;
};

struct CalibrationReport {
  std::string device = "cpu";       // what ran the blocks (the GPU runners' descriptions, where the hidden states lived)
  uint64_t peak_device_bytes = 0;   // GPU memory held at most (0 on the CPU)
  double forward_seconds = 0;       // pass 1: every token through every block, no capture (a plain forward pass)
  double capture_seconds = 0;       // pass 2: the same forward with the capture
};

void calibrate(const Model& model, const CalibrationBatches& in, StatisticsCapture& capture, const std::atomic<bool>* cancel,
               const CalibrationProgress& progress);
CalibrationReport calibrate_streamed(const Model& model, const CalibrationBatches& in, StatisticsCapture& capture,
                                     const std::atomic<bool>* cancel, const CalibrationProgress& progress,
                                     const CalibrationDevice& device = {});

// Bytes calibrate_streamed keeps for the whole run besides the capture: hidden states and projected y.
uint64_t streamed_state_bytes(const ModelConfig& c, int64_t tokens, int joint_dim);

}  // namespace ep
