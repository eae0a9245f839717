// Log-likelihood scoring of continuations, the primitive behind zero-shot multiple-choice evaluation
// (lm-eval-harness `loglikelihood` requests): for each sequence, the summed log-probability of its
// target span given everything before it, and whether greedy decoding would have produced that span.
//
// Sequences of any length are batched together: they are sorted by length and right-padded to the
// longest in their batch. Attention is causal, so padding after a sequence cannot change its scores.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "core/load/model.h"

namespace ep {

struct ScoreSpan {
  int64_t begin = 0;     // first token of the sequence in the shared token array
  int32_t length = 0;    // tokens in the sequence (>= 2)
  int32_t target = 0;    // first scored position: tokens [target, length) are predicted, 1 <= target < length
};

struct SpanScore {
  double logprob = 0;    // Σ log p(token[t] | tokens[..t-1]) over the target span
  bool greedy = false;   // every target token is the argmax of its predictive distribution
};

struct ScoreOptions {
  int64_t batch_tokens = 8192;  // padded tokens per forward call (a single longer sequence still runs alone)
  const std::atomic<bool>* cancel = nullptr;
  std::function<void(int64_t done, int64_t total)> on_progress;  // after each forward call, in sequences
};

std::vector<SpanScore> score_spans(const Model& model, const int32_t* tokens, const std::vector<ScoreSpan>& spans,
                                   const ScoreOptions& options = {});

// ---- The scorer's batching, shared with score_spans_streamed (evaluate_streamed.h, the GPU's order).

// Batch b scores spans order[first, first + count), each padded to seq_len (its first, longest member).
struct ScoreBatch {
  size_t first = 0, count = 0;
  int seq_len = 0;
};
struct ScorePlan {
  std::vector<size_t> order;  // span indices, longest first (stable)
  std::vector<ScoreBatch> batches;
};
// Validates the spans (throws naming the model and the span) and cuts them into batches of at most
// batch_tokens padded tokens (a single longer sequence still runs alone).
ScorePlan plan_score_batches(const Model& model, const std::vector<ScoreSpan>& spans, int64_t batch_tokens);
// Appends batch b's padded tokens [count · seq_len] to `out`.
void pad_score_batch(const int32_t* tokens, const std::vector<ScoreSpan>& spans, const ScorePlan& plan, const ScoreBatch& b,
                     std::vector<int32_t>& out);
// Folds batch b's losses and greedy predictions (forward()'s layout, [count · (seq_len − 1)]) into the scores
// of its spans; `padded` is the batch's padded tokens.
void fold_score_batch(const std::vector<ScoreSpan>& spans, const ScorePlan& plan, const ScoreBatch& b, const int32_t* padded, const float* nll,
                      const int32_t* argmax, std::vector<SpanScore>& out);

}  // namespace ep
