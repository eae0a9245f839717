#include "core/apply/apply.h"
#include "core/load/model.h"
#include "core/apply/save_hf.h"
#include "core/synthetic/synthetic_model.h"

namespace ep {

void write_synthetic_hf(const SyntheticSpec& spec, const std::string& dir) {
  spec.config.validate(dir);
  // The Hugging Face writer takes a pruned model (canonical names + lazy fills) and a source for metadata:
  // a synthetic model is a pruned model that kept everything, from a source that has no files to copy. The
  // config's layout stays interleaved, as in the GGUF: save_hf then permutes q/k into Hugging Face's half
  // layout, so both files hold the same function.
  PrunedModel m;
  m.config = spec.config;
  for (SyntheticTensor& t : synthetic_tensors(spec)) m.tensors.push_back({std::move(t.name), std::move(t.shape), std::move(t.fill)});
  for (int l = 0; l < m.config.n_layers(); ++l) m.source_block.push_back(l);
  Model source;
  source.config = m.config;
  source.path = dir;
  source.format = "synthetic";
  HfSaveOptions o;
  o.dtype = spec.dtype;
  save_hf(m, source, dir, o);
}

}  // namespace ep
