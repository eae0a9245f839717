// Writes a pruned model as a Hugging Face directory: config.json, model.safetensors (sharded with an
// index past `shard_bytes`), and the source's tokenizer files. A model whose blocks share one shape is a
// stock LlamaForCausalLM that transformers loads unmodified (biases from compensation are written with
// attention_bias / mlp_bias and zero biases where Llama expects them). Heterogeneous models are refused
// with the reason: the Nemotron-NAS (DeciLM) layout vLLM runs can only express MLP widths of the form
// multiple-of-256 and a global query-head count (see README, "Output formats").
#pragma once
#include <cstdint>
#include <string>

#include "core/apply.h"

namespace ep {

struct HfSaveOptions {
  DType dtype = DType::F32;
  uint64_t shard_bytes = 5ull << 30;
};

// `dir` must exist and be empty (the caller creates a temporary directory and renames it).
void save_hf(const PrunedModel& pruned, const Model& source, const std::string& dir, const HfSaveOptions& options);

}  // namespace ep
