// The evaluate stage's entry points: next-token losses (perplexity) or logits of token windows, and the
// log-likelihood of target spans (zero-shot tasks), each on the device asked for. Callers (the addon's
// evaluate and score jobs, native/tools/timing) convert arguments and call these; the choice between the
// batch-major forward pass and the block-major GPU driver is made here.
#pragma once
#include <atomic>
#include <vector>

#include "core/device/batches.h"
#include "core/evaluate/evaluate_streamed.h"
#include "core/evaluate/score.h"
#include "core/load/model.h"

namespace ep {

struct EvaluateRequest {
  TokenBatches windows;
  // logits: [n_seqs · seq_len, vocab]; otherwise −log p(next token): [n_seqs · (seq_len − 1)]
  bool logits = false;
  // GPUs for the losses (block-major); logits are computed on the CPU
  RunDevices device;
};

// Fills `out` (sized as EvaluateRequest says). progress(done, total) in windows, or in the GPU driver's steps.
// Returns what ran it ("cpu" and no device memory, or the GPU driver's report).
EvaluationReport evaluate_windows(const Model& model, const EvaluateRequest& request, float* out, const std::atomic<bool>* cancel, const StageProgress& progress);

// score_spans, or score_spans_streamed when `device` names GPUs.
std::vector<SpanScore> score_spans_on(const Model& model, const int32_t* tokens, const std::vector<ScoreSpan>& spans, const ScoreOptions& options,
                                      const RunDevices& device);

}  // namespace ep
