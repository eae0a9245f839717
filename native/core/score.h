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

#include "core/model.h"

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

}  // namespace ep
