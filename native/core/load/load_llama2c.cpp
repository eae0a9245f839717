// llama2.c checkpoints: the legacy "version 0" export — 7 int32 header fields, then float32 arrays with all
// layers of one tensor kind back to back (see shared/data/README.md for the order).
#include <cstring>

#include "core/error.h"
#include "core/load/model.h"

namespace ep {

std::unique_ptr<Model> load_llama2c(const std::string& path, const LoadOptions& options) {
  auto file = std::make_shared<MappedFile>(path);
  int32_t h[7];
  std::memcpy(h, file->range(0, sizeof(h), "llama2.c header (7 int32)"), sizeof(h));
  const int dim = h[0], hidden = h[1], n_layers = h[2], n_heads = h[3], n_kv = h[4], seq_len = h[6];
  const bool shared = h[5] > 0;
  const int64_t vocab64 = shared ? int64_t{h[5]} : -int64_t{h[5]};  // 64-bit: -INT32_MIN must not overflow
  auto bad = [&](const std::string& what) { fail_format(path, "not a llama2.c checkpoint: " + what); };
  if (dim <= 0 || dim > 65536) bad("dim " + std::to_string(dim) + " is invalid");
  if (hidden <= 0 || hidden > (1 << 20)) bad("hidden_dim " + std::to_string(hidden) + " is invalid");
  if (n_layers <= 0 || n_layers > 1024) bad("n_layers " + std::to_string(n_layers) + " is invalid");
  if (n_heads <= 0 || dim % n_heads != 0) bad("n_heads " + std::to_string(n_heads) + " does not divide dim " + std::to_string(dim));
  if (n_kv <= 0 || n_heads % n_kv != 0) bad("n_kv_heads " + std::to_string(n_kv) + " does not divide n_heads");
  if (vocab64 <= 0 || vocab64 > (1 << 24)) bad("vocab_size " + std::to_string(h[5]) + " is invalid");
  const int vocab = static_cast<int>(vocab64);
  if (seq_len <= 0 || seq_len > (1 << 24)) bad("seq_len " + std::to_string(seq_len) + " is invalid");

  auto m = std::make_unique<Model>();
  m->path = path;
  m->format = "llama2c";
  ModelConfig& c = m->config;
  c.arch = "llama";
  c.dim = dim;
  c.vocab = vocab;
  c.head_dim = dim / n_heads;
  c.context = seq_len;
  c.norm_eps = 1e-5f;  // fixed in run.c
  c.rope_theta = 10000.0f;
  c.rope_layout = RopeLayout::kInterleaved;
  c.tied_output = shared;
  c.layers.assign(n_layers, LayerShape{n_heads, n_kv, hidden, false, false, false});
  c.validate(path);

  const int64_t kv_dim = static_cast<int64_t>(n_kv) * c.head_dim, L = n_layers, hs = c.head_dim;
  // Expected total size, checked before any tensor is touched: a truncated file is reported as such.
  const uint64_t per_layer = 2ull * dim + static_cast<uint64_t>(dim) * dim * 2 + 2ull * kv_dim * dim + 3ull * hidden * dim;
  const uint64_t floats = static_cast<uint64_t>(vocab) * dim + L * per_layer + dim + static_cast<uint64_t>(seq_len) * hs +
                          (shared ? 0 : static_cast<uint64_t>(vocab) * dim);
  const uint64_t expected = 28 + floats * 4;
  if (file->size() != expected)
    fail_format(path, "file size " + std::to_string(file->size()) + " does not match the header, which implies " +
                          std::to_string(expected) + " bytes (" + (file->size() < expected ? "truncated" : "trailing data") + ")");
  uint64_t off = 28;
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    TensorRef t;
    t.name = t.stored_name = name;
    t.file = file;
    t.offset = off;
    t.dtype = DType::F32;
    t.shape = std::move(shape);
    off += t.numel() * 4;
    m->tensors[name] = std::move(t);
  };
  auto add_layers = [&](const std::string& kind, std::vector<int64_t> shape) {
    for (int l = 0; l < n_layers; ++l) add("blk." + std::to_string(l) + "." + kind, shape);
  };
  add("tok_embd", {vocab, dim});
  add_layers("attn_norm", {dim});
  add_layers("attn_q", {dim, dim});
  add_layers("attn_k", {kv_dim, dim});
  add_layers("attn_v", {kv_dim, dim});
  add_layers("attn_output", {dim, dim});
  add_layers("ffn_norm", {dim});
  add_layers("ffn_gate", {hidden, dim});
  add_layers("ffn_down", {dim, hidden});
  add_layers("ffn_up", {hidden, dim});
  add("output_norm", {dim});
  off += static_cast<uint64_t>(seq_len) * hs * 4;  // freq_cis_real + freq_cis_imag: unused
  if (!shared) add("output", {vocab, dim});
  m->bind_weights(options);
  return m;
}

}  // namespace ep
