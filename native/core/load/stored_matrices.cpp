#include "core/load/stored_matrices.h"

#include <string>

namespace ep {

namespace {
// The stored bytes of tensor `name` when they are bfloat16, 2-byte aligned in the mapping; else null.
// (float16 is left to the float32 copies: forward/gemv.h has no fast float16 kernel.)
const uint16_t* stored_bf16(const Model& m, const std::string& name) {
  const auto it = m.tensors.find(name);
  if (it == m.tensors.end()) return nullptr;
  const TensorRef& t = it->second;
  if (t.dtype != DType::BF16 || t.offset % 2) return nullptr;
  return reinterpret_cast<const uint16_t*>(t.file->range(t.offset, t.numel() * dtype_size(t.dtype), "tensor '" + t.stored_name + "'"));
}
}  // namespace

StoredMatrices stored_matrices(const Model& model, int l) {
  StoredMatrices m;
  const std::string b = "blk." + std::to_string(l) + ".";
  const LayerShape& s = model.config.layers[l];
  if (s.n_head > 0) {
    m.wq = stored_bf16(model, b + "attn_q");
    m.wk = stored_bf16(model, b + "attn_k");
    m.wv = stored_bf16(model, b + "attn_v");
    m.wo = stored_bf16(model, b + "attn_output");
  }
  if (s.ffn > 0) {
    m.w_gate = stored_bf16(model, b + "ffn_gate");
    m.w_up = stored_bf16(model, b + "ffn_up");
    m.w_down = stored_bf16(model, b + "ffn_down");
  }
  return m;
}

const uint16_t* stored_output(const Model& model) {
  // a tied head is the token embedding table
  return stored_bf16(model, model.tensors.count("output") ? "output" : "tok_embd");
}

}  // namespace ep
