// The plainest use of the forward pass, shared by the tests that compare against it: one sequence, logits at
// every position ([tokens.size(), vocab], row t predicts token t+1).
#pragma once
#include <cstdint>
#include <vector>

#include "core/forward/forward.h"
#include "core/load/model.h"

namespace ep::test {

inline std::vector<float> full_logits(const Model& m, const std::vector<int32_t>& tokens) {
  std::vector<float> out(tokens.size() * static_cast<size_t>(m.config.vocab));
  ForwardRequest r;
  r.tokens = tokens.data();
  r.n_seqs = 1;
  r.seq_len = static_cast<int>(tokens.size());
  r.logits = out.data();
  forward(m, r);
  return out;
}

}  // namespace ep::test
