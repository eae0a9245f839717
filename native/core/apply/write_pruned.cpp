#include "core/apply/write_pruned.h"

#include <memory>

#include "core/apply/save_gguf.h"
#include "core/apply/save_hf.h"
#include "core/apply/save_llama2c.h"
#include "core/error.h"

namespace ep {

WriteResult write_pruned_model(const Model& model, const std::vector<PlanBlock>& plan, const std::vector<BlockMeans>& means, const WriteRequest& request,
                               const std::atomic<bool>* cancel, const StageProgress& progress) {
  if (request.format != "gguf" && request.format != "hf" && request.format != "llama2c")
    throw Error(ErrorCode::kInvalidArgument, request.output, "unknown output format '" + request.format + "'");
  ApplyOptions o;
  o.zero_instead_of_slice = request.zero_instead_of_slice;
  o.refits = request.refits;
  PrunedModel pm = prune_model(model, plan, means, o);
  WriteResult result{pm.config.n_layers(), static_cast<int>(pm.tensors.size())};
  // Every writer asks each tensor for its data in turn: count them for progress, and stop between tensors
  // when cancelled, whatever the output format.
  auto written = std::make_shared<int>(0);
  for (PrunedTensor& t : pm.tensors) {
    t.fill = [inner = t.fill, written, total = result.tensors, cancel, progress](float* dst) {
      throw_if_cancelled(cancel);
      inner(dst);
      if (progress) progress(++*written, total);
    };
  }
  if (request.format == "gguf") {
    GgufSaveOptions g;
    g.dtype = request.dtype;
    std::unique_ptr<SpmVocab> from_file;
    if (!request.vocab_file.empty()) {
      from_file = std::make_unique<SpmVocab>(SpmVocab::from_llama2c_file(request.vocab_file));
      g.vocab = from_file.get();
    } else {
      g.vocab = request.vocab;
    }
    save_gguf(pm, model, request.output, g);
  } else if (request.format == "hf") {
    HfSaveOptions h;
    h.dtype = request.dtype;
    if (request.shard_bytes) h.shard_bytes = request.shard_bytes;
    save_hf(pm, model, request.output, h);
  } else {
    save_llama2c(pm, request.output);
  }
  return result;
}

}  // namespace ep
