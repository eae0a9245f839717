#include "core/evaluate/evaluate.h"

#include <algorithm>

#include "core/forward/forward.h"

namespace ep {

EvaluationReport evaluate_windows(const Model& model, const EvaluateRequest& request, float* out, const std::atomic<bool>* cancel, const StageProgress& progress) {
  const TokenBatches& in = request.windows;
  if (!request.logits && !request.device.cuda_devices.empty()) return next_token_nll_streamed(model, in, out, cancel, progress, request.device);
  const size_t per_seq = request.logits ? static_cast<size_t>(in.seq_len) * model.config.vocab : static_cast<size_t>(in.seq_len - 1);
  const int batch = std::max(1, in.batch_seqs);
  for (int s0 = 0; s0 < in.n_seqs; s0 += batch) {
    const int n = std::min(batch, in.n_seqs - s0);
    ForwardRequest r;
    r.tokens = in.tokens + static_cast<size_t>(s0) * in.seq_len;
    r.n_seqs = n;
    r.seq_len = in.seq_len;
    (request.logits ? r.logits : r.nll) = out + per_seq * s0;
    r.cancel = cancel;
    forward(model, r);
    if (progress) progress(s0 + n, in.n_seqs);
  }
  return {};
}

std::vector<SpanScore> score_spans_on(const Model& model, const int32_t* tokens, const std::vector<ScoreSpan>& spans, const ScoreOptions& options,
                                      const RunDevices& device) {
  return device.cuda_devices.empty() ? score_spans(model, tokens, spans, options) : score_spans_streamed(model, tokens, spans, options, device);
}

}  // namespace ep
