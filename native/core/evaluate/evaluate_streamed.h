// The loss of every window, computed block-major on the devices calibration uses (block_major.h): what
// perplexity and zero-shot scoring need, on one or more GPUs — the blocks streamed to each GPU one at a time,
// the sequences' hidden states held there when they fit, the output head and the log-softmax on the GPU so
// the logits never cross PCIe. With no cuda_devices the CPU runs the same order (tests; forward() and
// score_spans are the CPU's usual paths).
//
// The sequences go through in groups of at most group_bytes of hidden states (every block's weights stream
// once per group), so a long text or a large task set needs bounded host and GPU memory.
#pragma once
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "core/device/batches.h"
#include "core/load/model.h"
#include "core/evaluate/score.h"

namespace ep {

struct EvaluationReport {
  std::string device = "cpu";      // what ran the blocks
  uint64_t peak_device_bytes = 0;  // GPU memory held at most (0 on the CPU)
};

// Hidden-state bytes of one group: 8 GiB by default (524,288 tokens of a 4096-wide model).
constexpr uint64_t kDefaultGroupBytes = uint64_t(8) << 30;

// nll [n_seqs · (seq_len − 1)]: −log p(token[t+1] | the window up to t), laid out as forward()'s.
// progress(done, total) counts the batches through the blocks and the output head.
EvaluationReport next_token_nll_streamed(const Model& model, const TokenBatches& windows, float* nll, const std::atomic<bool>* cancel,
                                         const StageProgress& progress, const RunDevices& device,
                                         uint64_t group_bytes = kDefaultGroupBytes);

// score_spans (score.h) block-major on `device`: the same batches (longest first, each padded to its
// longest member), the same results up to the devices' rounding. progress counts sequences as score_spans'.
std::vector<SpanScore> score_spans_streamed(const Model& model, const int32_t* tokens, const std::vector<ScoreSpan>& spans,
                                            const ScoreOptions& options, const RunDevices& device, EvaluationReport* report = nullptr,
                                            uint64_t group_bytes = kDefaultGroupBytes);

}  // namespace ep
