// Random-weight models of any shape, written as GGUF or as a Hugging Face directory: for tests (small
// heterogeneous shapes with biases) and for timing and memory runs at real LLaMA shapes (the presets), where
// quality does not matter but sizes do. Tensors are generated one at a time while the file is written, so a
// 7B-shaped model needs memory for one tensor, not the model.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/format/dtype.h"
#include "core/model_config.h"

namespace ep {

struct SyntheticSpec {
  ModelConfig config;        // per-layer shapes; arch is written as "llama" when uniform, else "deci"
  uint64_t seed = 1;
  float weight_scale = 0;    // std of linear weights; 0 = 1/sqrt(fan_in)
  bool with_vocab = true;    // GGUF: embed a byte-level SentencePiece vocab (needs vocab >= 259)
  DType dtype = DType::F32;  // matrices (and embeddings); norms and biases stay F32
  // Called before each tensor is generated, with (tensors done, total); may throw to stop the write (the
  // caller removes the partial output).
  std::function<void(int, int)> on_tensor;
};

// The published shapes of: llama2-7b, llama2-13b, llama2-70b, llama3-8b, llama3-70b, mistral-7b (GQA and
// a 4096-token sliding window). `layers` > 0 keeps only that many blocks (timing one block of a big shape).
// Throws kInvalidArgument listing the names for an unknown preset.
ModelConfig synthetic_preset(const std::string& name, int layers = 0);
std::vector<std::string> synthetic_preset_names();

// Every tensor of the model (canonical names, as in PrunedTensor) with a fill that draws its values.
struct SyntheticTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::function<void(float*)> fill;
};
std::vector<SyntheticTensor> synthetic_tensors(const SyntheticSpec& spec);

// Writes the model to `path`. Deterministic for a given seed on every machine and thread count: each tensor
// draws from its own generator, seeded by the spec's seed and the tensor's name.
void write_synthetic_gguf(const SyntheticSpec& spec, const std::string& path);
// The same weights as a Hugging Face directory (config.json + model.safetensors, sharded past 5 GiB);
// `dir` must exist and be empty. No tokenizer files: feed token ids. (synthetic_hf.cpp: it needs the save
// stage, which the loader-only fuzz build leaves out.)
void write_synthetic_hf(const SyntheticSpec& spec, const std::string& dir);

}  // namespace ep
