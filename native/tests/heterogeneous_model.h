// The small heterogeneous model the capture and calibration suites share: d = 32, vocab 300, head size 8;
// GQA, an attention-output bias, an attention-free block, and an MLP-free block with a down bias.
#pragma once
#include <memory>
#include <string>

#include "core/load/model.h"
#include "core/synthetic/synthetic_model.h"

namespace ep::test {

inline std::string write_heterogeneous_model(const std::string& path, uint64_t seed) {
  SyntheticSpec spec;
  ModelConfig& c = spec.config;
  c.dim = 32;
  c.vocab = 300;
  c.head_dim = 8;
  c.layers = {{4, 2, 24, false, false, false}, {4, 4, 16, false, true, false}, {0, 0, 20, false, false, false}, {2, 1, 0, false, false, true}};
  spec.seed = seed;
  write_synthetic_gguf(spec, path);
  return path;
}

}  // namespace ep::test
