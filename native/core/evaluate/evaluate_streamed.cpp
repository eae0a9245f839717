#include "core/evaluate/evaluate_streamed.h"

#include <algorithm>

#include "core/device/block_major.h"
#include "core/error.h"

namespace ep {

namespace {

// [first, last) ranges of consecutive batches whose hidden states stay within group_bytes (a batch larger
// than that forms a group of its own).
std::vector<std::pair<size_t, size_t>> group_batches(const std::vector<BatchShape>& shapes, uint64_t row_bytes, uint64_t group_bytes) {
  std::vector<std::pair<size_t, size_t>> groups;
  uint64_t bytes = 0;
  for (size_t i = 0; i < shapes.size(); ++i) {
    const uint64_t b = static_cast<uint64_t>(shapes[i].n_seqs) * shapes[i].seq_len * row_bytes;
    if (groups.empty() || bytes + b > group_bytes) {
      groups.push_back({i, i});
      bytes = 0;
    }
    groups.back().second = i + 1;
    bytes += b;
  }
  return groups;
}

uint64_t row_bytes(const Model& m) { return static_cast<uint64_t>(m.config.dim) * sizeof(float); }

void note_run(const BlockMajorRun& run, EvaluationReport& report) {
  report.device = run.description();
  report.peak_device_bytes = std::max(report.peak_device_bytes, run.peak_device_bytes());
}

}  // namespace

EvaluationReport next_token_nll_streamed(const Model& model, const TokenBatches& windows, float* nll, const std::atomic<bool>* cancel,
                                         const StageProgress& progress, const RunDevices& device, uint64_t group_bytes) {
  if (windows.n_seqs <= 0 || windows.batch_seqs <= 0) throw Error(ErrorCode::kInvalidArgument, model.path, "empty batch");
  if (windows.seq_len < 2) throw Error(ErrorCode::kInvalidArgument, model.path, "the loss needs windows of at least 2 tokens");
  const std::vector<BatchShape> shapes = equal_batches(windows);
  const int64_t total = (model.config.n_layers() + 1) * static_cast<int64_t>(shapes.size());
  int64_t done = 0;
  const auto on_batch = [&](int64_t n) {
    done += n;
    if (progress) progress(done, total);
  };
  EvaluationReport report;
  const int T = windows.seq_len;
  int64_t seq0 = 0;  // the group's first window
  for (const auto& [first, last] : group_batches(shapes, row_bytes(model), group_bytes)) {
    const std::vector<BatchShape> group(shapes.begin() + first, shapes.begin() + last);
    BlockMajorRun run(model, windows.tokens + seq0 * T, group, device, nullptr);
    run.pass(nullptr, nullptr, false, cancel, on_batch);
    run.next_token_nll(nll + seq0 * (T - 1), nullptr, cancel, on_batch);
    note_run(run, report);
    for (const BatchShape& s : group) seq0 += s.n_seqs;
  }
  return report;
}

std::vector<SpanScore> score_spans_streamed(const Model& model, const int32_t* tokens, const std::vector<ScoreSpan>& spans,
                                            const ScoreOptions& options, const RunDevices& device, EvaluationReport* report,
                                            uint64_t group_bytes) {
  const ScorePlan plan = plan_score_batches(model, spans, options.batch_tokens);
  std::vector<SpanScore> out(spans.size());
  std::vector<BatchShape> shapes;
  for (const ScoreBatch& b : plan.batches) shapes.push_back({static_cast<int>(b.count), b.seq_len});
  EvaluationReport seen;
  const int64_t n_spans = static_cast<int64_t>(spans.size());
  for (const auto& [first, last] : group_batches(shapes, row_bytes(model), group_bytes)) {
    std::vector<int32_t> padded;
    for (size_t i = first; i < last; ++i) pad_score_batch(tokens, spans, plan, plan.batches[i], padded);
    const std::vector<BatchShape> group(shapes.begin() + first, shapes.begin() + last);
    BlockMajorRun run(model, padded.data(), group, device, nullptr);
    // progress in sequences, as score_spans reports it: this group's share in proportion to its steps
    const int64_t seqs_before = static_cast<int64_t>(plan.batches[first].first);
    const int64_t seqs_in_group = static_cast<int64_t>(plan.batches[last - 1].first + plan.batches[last - 1].count) - seqs_before;
    const int64_t steps = (model.config.n_layers() + 1) * static_cast<int64_t>(group.size());
    int64_t step = 0;
    const auto on_batch = [&](int64_t n) {
      step += n;
      if (options.on_progress) options.on_progress(seqs_before + seqs_in_group * step / steps, n_spans);
    };
    run.pass(nullptr, nullptr, false, options.cancel, on_batch);
    std::vector<float> nll(run.losses());
    std::vector<int32_t> argmax(run.losses());
    run.next_token_nll(nll.data(), argmax.data(), options.cancel, on_batch);
    for (size_t i = first; i < last; ++i) {
      const Batch& b = run.batches()[i - first];
      fold_score_batch(spans, plan, plan.batches[i], padded.data() + b.row0, nll.data() + b.loss0, argmax.data() + b.loss0, out);
    }
    note_run(run, seen);
  }
  if (report) *report = seen;
  return out;
}

}  // namespace ep
