#include "core/load/stored_matrices.h"

#include <string>

namespace ep {

namespace {
// The stored bytes of tensor `name` when they are bfloat16, 2-byte aligned in the mapping; else null.
// (float16 is left to the float32 copies: forward/gemv.h has no fast float16 kernel.)
const void* stored_half(const Model& m, const std::string& name, DType& dtype) {
  const auto it = m.tensors.find(name);
  if (it == m.tensors.end()) return nullptr;
  const TensorRef& t = it->second;
  if (t.dtype != DType::BF16 || t.offset % 2) return nullptr;
  dtype = t.dtype;
  return t.file->range(t.offset, t.numel() * dtype_size(t.dtype), "tensor '" + t.stored_name + "'");
}
}  // namespace

StoredMatrices stored_matrices(const Model& model, int l) {
  StoredMatrices m;
  const std::string b = "blk." + std::to_string(l) + ".";
  const LayerShape& s = model.config.layers[l];
  if (s.n_head > 0) {
    m.wq = stored_half(model, b + "attn_q", m.dtype);
    m.wk = stored_half(model, b + "attn_k", m.dtype);
    m.wv = stored_half(model, b + "attn_v", m.dtype);
    m.wo = stored_half(model, b + "attn_output", m.dtype);
  }
  if (s.ffn > 0) {
    m.w_gate = stored_half(model, b + "ffn_gate", m.dtype);
    m.w_up = stored_half(model, b + "ffn_up", m.dtype);
    m.w_down = stored_half(model, b + "ffn_down", m.dtype);
  }
  return m;
}

StoredMatrix stored_output(const Model& model) {
  StoredMatrix m;
  // a tied head is the token embedding table
  m.w = stored_half(model, model.tensors.count("output") ? "output" : "tok_embd", m.dtype);
  return m;
}

}  // namespace ep
