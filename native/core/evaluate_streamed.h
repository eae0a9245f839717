// The loss of every window, computed block-major on the devices calibration uses (block_major.h): what
// perplexity needs, on one or more GPUs — the blocks streamed to each GPU one at a time, the windows' hidden
// states held there when they fit, the output head and the log-softmax on the GPU so the logits never cross
// PCIe. With no cuda_devices the CPU runs the same order (tests; forward() is the CPU's usual path).
#pragma once
#include <atomic>
#include <cstdint>
#include <string>

#include "core/calibrate.h"
#include "core/model.h"

namespace ep {

struct EvaluationReport {
  std::string device = "cpu";      // what ran the blocks
  uint64_t peak_device_bytes = 0;  // GPU memory held at most (0 on the CPU)
};

// nll [n_seqs · (seq_len − 1)]: −log p(token[t+1] | the window up to t), laid out as forward()'s.
// progress(done, total) counts (batch, block) steps and the output head's batches.
EvaluationReport next_token_nll_streamed(const Model& model, const CalibrationBatches& windows, float* nll, const std::atomic<bool>* cancel,
                                         const CalibrationProgress& progress, const CalibrationDevice& device);

}  // namespace ep
