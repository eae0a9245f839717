#include "core/device/batches.h"

#include <algorithm>

namespace ep {

void forward_batches(const Model& model, const TokenBatches& in, ForwardHooks& hooks, const std::atomic<bool>* cancel,
                     const std::function<void(int)>& after_batch) {
  for (int s0 = 0; s0 < in.n_seqs; s0 += in.batch_seqs) {
    ForwardRequest r;
    r.tokens = in.tokens + static_cast<size_t>(s0) * in.seq_len;
    r.n_seqs = std::min(in.batch_seqs, in.n_seqs - s0);
    r.seq_len = in.seq_len;
    r.hooks = &hooks;
    r.cancel = cancel;
    forward(model, r);
    if (after_batch) after_batch(s0 + r.n_seqs);
  }
}

}  // namespace ep
