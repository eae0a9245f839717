#include "core/score.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "core/error.h"
#include "core/forward.h"

namespace ep {

std::vector<SpanScore> score_spans(const Model& model, const int32_t* tokens, const std::vector<ScoreSpan>& spans,
                                   const ScoreOptions& options) {
  for (size_t i = 0; i < spans.size(); ++i) {
    const ScoreSpan& s = spans[i];
    if (s.length < 2 || s.target < 1 || s.target >= s.length || s.begin < 0)
      throw Error(ErrorCode::kInvalidArgument, model.path,
                  "score span " + std::to_string(i) + " is malformed (length " + std::to_string(s.length) + ", target " +
                      std::to_string(s.target) + ")");
  }
  // Longest first: the first batch is the most expensive, so an out-of-memory or a slow model shows at once,
  // and each batch pads to its own first (longest) member.
  std::vector<size_t> order(spans.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return spans[a].length > spans[b].length; });

  std::vector<SpanScore> out(spans.size());
  std::vector<int32_t> batch, argmax;
  std::vector<float> nll;
  const int64_t budget = std::max<int64_t>(1, options.batch_tokens);
  size_t next = 0;
  while (next < order.size()) {
    const int T = spans[order[next]].length;
    const size_t n = std::clamp<size_t>(static_cast<size_t>(budget / T), 1, order.size() - next);
    batch.assign(n * T, 0);
    for (size_t j = 0; j < n; ++j) {
      const ScoreSpan& s = spans[order[next + j]];
      std::copy_n(tokens + s.begin, s.length, &batch[j * T]);
      // Padding repeats the last token: any in-vocabulary id works, since causal attention never lets a
      // position see the positions after it.
      std::fill(&batch[j * T + s.length], &batch[(j + 1) * T], tokens[s.begin + s.length - 1]);
    }
    nll.resize(n * (T - 1));
    argmax.resize(n * (T - 1));
    ForwardRequest r;
    r.tokens = batch.data();
    r.n_seqs = static_cast<int>(n);
    r.seq_len = T;
    r.nll = nll.data();
    r.argmax = argmax.data();
    r.cancel = options.cancel;
    forward(model, r);
    for (size_t j = 0; j < n; ++j) {
      const ScoreSpan& s = spans[order[next + j]];
      SpanScore& o = out[order[next + j]];
      o.greedy = true;
      // nll[t] scores token t+1 from the prefix ending at t.
      for (int t = s.target - 1; t < s.length - 1; ++t) {
        o.logprob -= nll[j * (T - 1) + t];
        o.greedy = o.greedy && argmax[j * (T - 1) + t] == batch[j * T + t + 1];
      }
    }
    next += n;
    if (options.on_progress) options.on_progress(static_cast<int64_t>(next), static_cast<int64_t>(order.size()));
  }
  return out;
}

}  // namespace ep
