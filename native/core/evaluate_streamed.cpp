#include "core/evaluate_streamed.h"

#include "core/block_major.h"
#include "core/error.h"

namespace ep {

EvaluationReport next_token_nll_streamed(const Model& model, const CalibrationBatches& windows, float* nll, const std::atomic<bool>* cancel,
                                         const CalibrationProgress& progress, const CalibrationDevice& device) {
  if (windows.seq_len < 2) throw Error(ErrorCode::kInvalidArgument, model.path, "the loss needs windows of at least 2 tokens");
  BlockMajorRun run(model, windows, device, nullptr);
  const int64_t batches = static_cast<int64_t>(run.batches().size());
  const int64_t total = (model.config.n_layers() + 1) * batches;
  int64_t done = 0;
  run.pass(nullptr, nullptr, false, cancel, [&](int64_t n) {
    done += n;
    if (progress) progress(done, total);
  });
  run.next_token_nll(nll, cancel);
  if (progress) progress(total, total);
  EvaluationReport report;
  report.device = run.description();
  report.peak_device_bytes = run.peak_device_bytes();
  return report;
}

}  // namespace ep
