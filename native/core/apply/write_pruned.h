// The apply stage's one entry point: slice a model by a plan, fold bias compensation, and write it in the
// format asked for. Callers (the addon's apply job, native/tools/timing) convert arguments and call this; the
// format dispatch, per-tensor progress and cancellation live here.
#pragma once
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "core/apply/apply.h"
#include "core/device/batches.h"
#include "core/format/dtype.h"
#include "core/format/tokenizer_spm.h"
#include "core/load/model.h"

namespace ep {

struct WriteRequest {
  std::string output;          // written directly: the caller writes to a temporary name and renames
  std::string format = "gguf"; // "gguf", "hf" (a folder that must exist and be empty) or "llama2c"
  DType dtype = DType::F32;    // matrices (gguf, hf); llama2.c is float32 only
  bool zero_instead_of_slice = false;
  std::string vocab_file;           // gguf: a llama2.c tok*.bin to embed ...
  const SpmVocab* vocab = nullptr;  // ... or this vocabulary (a converted tokenizer.json)
  uint64_t shard_bytes = 0;         // hf: safetensors shard size (0: the default)
  const std::vector<LayerRefit>* refits = nullptr;  // least-squares compensation (apply/refit.h); nullptr: bias only
};

struct WriteResult {
  int layers = 0;
  int tensors = 0;
};

// progress(done, total) in tensors written; cancel is checked between tensors.
WriteResult write_pruned_model(const Model& model, const std::vector<PlanBlock>& plan, const std::vector<BlockMeans>& means, const WriteRequest& request,
                               const std::atomic<bool>* cancel, const StageProgress& progress);

}  // namespace ep
