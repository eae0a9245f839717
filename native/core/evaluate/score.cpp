#include "core/evaluate/score.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "core/error.h"
#include "core/forward/forward.h"

namespace ep {

ScorePlan plan_score_batches(const Model& model, const std::vector<ScoreSpan>& spans, int64_t batch_tokens) {
  for (size_t i = 0; i < spans.size(); ++i) {
    const ScoreSpan& s = spans[i];
    if (s.length < 2 || s.target < 1 || s.target >= s.length || s.begin < 0)
      throw Error(ErrorCode::kInvalidArgument, model.path,
                  "score span " + std::to_string(i) + " is malformed (length " + std::to_string(s.length) + ", target " +
                      std::to_string(s.target) + ")");
  }
  // Longest first: the first batch is the most expensive, so an out-of-memory or a slow model shows at once,
  // and each batch pads to its own first (longest) member.
  ScorePlan plan;
  plan.order.resize(spans.size());
  std::iota(plan.order.begin(), plan.order.end(), size_t{0});
  std::stable_sort(plan.order.begin(), plan.order.end(), [&](size_t a, size_t b) { return spans[a].length > spans[b].length; });
  const int64_t budget = std::max<int64_t>(1, batch_tokens);
  for (size_t next = 0; next < plan.order.size();) {
    const int T = spans[plan.order[next]].length;
    const size_t n = std::clamp<size_t>(static_cast<size_t>(budget / T), 1, plan.order.size() - next);
    plan.batches.push_back({next, n, T});
    next += n;
  }
  return plan;
}

void pad_score_batch(const int32_t* tokens, const std::vector<ScoreSpan>& spans, const ScorePlan& plan, const ScoreBatch& b,
                     std::vector<int32_t>& out) {
  const int T = b.seq_len;
  for (size_t j = 0; j < b.count; ++j) {
    const ScoreSpan& s = spans[plan.order[b.first + j]];
    out.insert(out.end(), tokens + s.begin, tokens + s.begin + s.length);
    // Padding repeats the last token: any in-vocabulary id works, since causal attention never lets a
    // position see the positions after it.
    out.insert(out.end(), static_cast<size_t>(T - s.length), tokens[s.begin + s.length - 1]);
  }
}

void fold_score_batch(const std::vector<ScoreSpan>& spans, const ScorePlan& plan, const ScoreBatch& b, const int32_t* padded, const float* nll,
                      const int32_t* argmax, std::vector<SpanScore>& out) {
  const int T = b.seq_len;
  for (size_t j = 0; j < b.count; ++j) {
    const ScoreSpan& s = spans[plan.order[b.first + j]];
    SpanScore& o = out[plan.order[b.first + j]];
    o.logprob = 0;
    o.greedy = true;
    // nll[t] scores token t+1 from the prefix ending at t.
    for (int t = s.target - 1; t < s.length - 1; ++t) {
      o.logprob -= nll[j * (T - 1) + t];
      o.greedy = o.greedy && argmax[j * (T - 1) + t] == padded[j * T + t + 1];
    }
  }
}

std::vector<SpanScore> score_spans(const Model& model, const int32_t* tokens, const std::vector<ScoreSpan>& spans,
                                   const ScoreOptions& options) {
  const ScorePlan plan = plan_score_batches(model, spans, options.batch_tokens);
  std::vector<SpanScore> out(spans.size());
  std::vector<int32_t> batch, argmax;
  std::vector<float> nll;
  for (const ScoreBatch& b : plan.batches) {
    const int T = b.seq_len;
    batch.clear();
    pad_score_batch(tokens, spans, plan, b, batch);
    nll.resize(b.count * (T - 1));
    argmax.resize(b.count * (T - 1));
    ForwardRequest r;
    r.tokens = batch.data();
    r.n_seqs = static_cast<int>(b.count);
    r.seq_len = T;
    r.nll = nll.data();
    r.argmax = argmax.data();
    r.cancel = options.cancel;
    forward(model, r);
    fold_score_batch(spans, plan, b, batch.data(), nll.data(), argmax.data(), out);
    if (options.on_progress) options.on_progress(static_cast<int64_t>(b.first + b.count), static_cast<int64_t>(plan.order.size()));
  }
  return out;
}

}  // namespace ep
