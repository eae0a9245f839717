// Writes a pruned model as GGUF that llama.cpp runs directly. A model whose blocks all share one shape is
// written as `llama`; a heterogeneous one as `deci` (per-layer head_count, head_count_kv and
// feed_forward_length arrays, attention-free layers), with the stubs llama.cpp needs (../shared/docs/
// GGUF-NOTES.md): a layer that keeps attention but has no MLP, or the last layer without MLP, gets one
// zero-weight MLP channel; a first layer without attention gets one zero-weight head. Zero weights add
// exactly nothing, so the stubbed model computes the same function.
#pragma once
#include <string>

#include "core/apply/apply.h"
#include "core/format/tokenizer_spm.h"

namespace ep {

struct GgufSaveOptions {
  DType dtype = DType::F32;        // F32, F16 or BF16 for matrices (norms and biases stay F32)
  const SpmVocab* vocab = nullptr;  // embedded when the source carries no GGUF tokenizer metadata
  std::string name = "entroprune-pruned";
};

// `source` supplies metadata (general.*, tokenizer.*) when it is a GGUF file. Writes `path` directly: the
// caller writes to a temporary name and renames.
void save_gguf(const PrunedModel& pruned, const Model& source, const std::string& path, const GgufSaveOptions& options);

}  // namespace ep
