// Incremental decoding with a KV cache: feed a prompt (any number of tokens at once), then one token at a
// time, each step costing one row per layer instead of the whole sequence. Used to measure decode speed
// and to generate text; the batched forward pass (forward.h) is its reference — same layer arithmetic.
#pragma once
#include <atomic>
#include <cstdint>
#include <vector>

#include "core/load/model.h"
#include "core/load/stored_matrices.h"

namespace ep {

class DecodeSession {
 public:
  // Room for max_len positions (prompt + generated); the KV cache is allocated once.
  DecodeSession(const Model& model, int max_len);

  // Runs tokens[0..n) at positions pos()..pos()+n-1 and appends their keys and values to the cache.
  // logits (optional, [vocab]) receives the next-token logits after the last of them.
  void step(const int32_t* tokens, int n, float* logits, const std::atomic<bool>* cancel = nullptr);

  int pos() const { return pos_; }
  int max_len() const { return max_len_; }
  // Bytes held by the KV cache.
  int64_t cache_bytes() const;

 private:
  const Model& model_;
  int max_len_;
  int pos_ = 0;
  std::vector<std::vector<float>> k_, v_;  // per layer [max_len, n_kv_head*head_dim], RoPE already applied to k
  std::vector<StoredMatrices> stored_;     // per layer: the bfloat16 matrices as stored, read by one-token steps
  const uint16_t* stored_head_ = nullptr;  // the output head's, likewise
};

}  // namespace ep
