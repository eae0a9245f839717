// Random-weight models of any shape, written as GGUF: for tests (small heterogeneous shapes with biases)
// and for timing runs at real LLaMA shapes, where quality does not matter but sizes do.
#pragma once
#include <cstdint>
#include <string>

#include "core/model_config.h"

namespace ep {

struct SyntheticSpec {
  ModelConfig config;   // per-layer shapes; arch is written as "llama" when uniform, else "deci"
  uint64_t seed = 1;
  float weight_scale = 0;  // std of linear weights; 0 = 1/sqrt(fan_in)
  bool with_vocab = true;  // embed a byte-level SentencePiece vocab (needs vocab >= 259)
};

// Writes the model to `path`. Deterministic for a given seed on every machine (own xorshift generator).
void write_synthetic_gguf(const SyntheticSpec& spec, const std::string& path);

}  // namespace ep
