// Writes a pruned model as a Hugging Face directory: config.json, model.safetensors (sharded with an
// index past `shard_bytes`), and the source's tokenizer files. A model whose blocks share one shape is a
// stock LlamaForCausalLM that transformers loads unmodified (biases from compensation are written with
// attention_bias / mlp_bias and zero biases where Llama expects them). A heterogeneous model is written in
// the Nemotron-NAS (DeciLMForCausalLM, block_configs) layout vLLM runs, when that layout can express it:
// whole attention layers kept or removed (one global query-head count), MLP widths multiples of 256;
// otherwise it is refused with the planner options that produce an expressible plan.
#pragma once
#include <cstdint>
#include <string>

#include "core/apply/apply.h"

namespace ep {

struct HfSaveOptions {
  DType dtype = DType::F32;
  uint64_t shard_bytes = 5ull << 30;
};

// `dir` must exist and be empty (the caller creates a temporary directory and renames it).
void save_hf(const PrunedModel& pruned, const Model& source, const std::string& dir, const HfSaveOptions& options);

}  // namespace ep
