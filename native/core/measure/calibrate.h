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

#include "core/capture/capture.h"
#include "core/device/batches.h"
#include "core/load/model.h"

namespace ep {

struct CalibrationReport {
  std::string device = "cpu";       // what ran the blocks (the GPU runners' descriptions, where the hidden states lived)
  uint64_t peak_device_bytes = 0;   // GPU memory held at most (0 on the CPU)
  double forward_seconds = 0;       // pass 1: every token through every block, no capture (a plain forward pass)
  double capture_seconds = 0;       // pass 2: the same forward with the capture
};

void calibrate(const Model& model, const TokenBatches& in, StatisticsCapture& capture, const std::atomic<bool>* cancel,
               const StageProgress& progress);
CalibrationReport calibrate_streamed(const Model& model, const TokenBatches& in, StatisticsCapture& capture,
                                     const std::atomic<bool>* cancel, const StageProgress& progress,
                                     const RunDevices& device = {});


}  // namespace ep
