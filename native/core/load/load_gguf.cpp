// GGUF loader for the `llama` architecture (and `deci`, the heterogeneous layout entroprune writes for
// pruned models). Tensors are used in place from the map when F32.
#include <algorithm>

#include "core/error.h"
#include "core/format/gguf_file.h"
#include "core/load/model.h"
#include "core/format/tokenizer_spm.h"

namespace ep {

namespace {

// A per-layer number: a scalar for every layer, or an array with one entry per layer.
std::vector<int> per_layer(const GgufFile& g, const std::string& key, int n_layers, bool required, int fallback) {
  const GgufValue* v = g.find(key);
  if (!v) {
    if (required) fail_format(g.file->path(), "missing metadata key '" + key + "'");
    return std::vector<int>(n_layers, fallback);
  }
  if (v->type == GgufType::ARRAY) {
    if (static_cast<int>(v->numbers.size()) != n_layers)
      fail_format(g.file->path(), "metadata '" + key + "' has " + std::to_string(v->numbers.size()) + " entries for " +
                                      std::to_string(n_layers) + " layers");
    std::vector<int> r;
    for (double x : v->numbers) r.push_back(g.int_in_range(key, x, -1, INT32_MAX));
    return r;
  }
  return std::vector<int>(n_layers, g.get_i32(key));
}

std::shared_ptr<SpmVocab> embedded_vocab(const GgufFile& g) {
  const GgufValue* model = g.find("tokenizer.ggml.model");
  const GgufValue* tokens = g.find("tokenizer.ggml.tokens");
  if (!model || !tokens || model->str != "llama" || tokens->elem_type != GgufType::STRING) return nullptr;  // e.g. gpt2 BPE: not yet
  std::vector<float> scores;
  if (const GgufValue* s = g.find("tokenizer.ggml.scores")) scores.assign(s->numbers.begin(), s->numbers.end());
  else scores.assign(tokens->strings.size(), 0.0f);
  std::vector<int> types;
  if (const GgufValue* t = g.find("tokenizer.ggml.token_type"))
    for (double x : t->numbers) types.push_back(g.int_in_range("tokenizer.ggml.token_type", x, INT32_MIN, INT32_MAX));
  int bos = g.find("tokenizer.ggml.bos_token_id") ? g.get_i32("tokenizer.ggml.bos_token_id") : 1;
  int eos = g.find("tokenizer.ggml.eos_token_id") ? g.get_i32("tokenizer.ggml.eos_token_id") : 2;
  return std::make_shared<SpmVocab>(SpmVocab::from_pieces(tokens->strings, scores, types, bos, eos, g.file->path()));
}

}  // namespace

std::unique_ptr<Model> load_gguf(const std::string& path, const LoadOptions& options) {
  GgufFile g = read_gguf(path);
  auto m = std::make_unique<Model>();
  m->path = path;
  m->format = "gguf";
  const std::string arch = g.get_string("general.architecture");
  if (arch != "llama" && arch != "deci")
    throw Error(ErrorCode::kUnsupported, path, "architecture '" + arch + "' is not supported (llama or deci)");
  ModelConfig& c = m->config;
  c.arch = arch;
  const std::string a = arch + ".";
  c.dim = g.get_i32(a + "embedding_length");
  const int n_layers = g.get_i32(a + "block_count");
  if (n_layers <= 0 || n_layers > 4096) fail_format(path, a + "block_count " + std::to_string(n_layers) + " is invalid");
  std::vector<int> heads = per_layer(g, a + "attention.head_count", n_layers, true, 0);
  std::vector<int> kv = per_layer(g, a + "attention.head_count_kv", n_layers, false, -1);
  std::vector<int> ffn = per_layer(g, a + "feed_forward_length", n_layers, true, 0);
  const int max_heads = *std::max_element(heads.begin(), heads.end());
  if (max_heads <= 0 && !g.find(a + "attention.key_length"))
    fail_format(path, a + "attention.head_count is 0 in every layer: the head size cannot be derived (and no layer would have attention)");
  c.head_dim = g.find(a + "attention.key_length") ? g.get_i32(a + "attention.key_length")
                                                   : (max_heads > 0 ? c.dim / max_heads : 0);
  if (g.find(a + "attention.value_length") && g.get_int(a + "attention.value_length") != c.head_dim)
    throw Error(ErrorCode::kUnsupported, path, "key_length and value_length differ");
  if (g.find(a + "rope.dimension_count") && g.get_int(a + "rope.dimension_count") != c.head_dim)
    throw Error(ErrorCode::kUnsupported, path, "partial RoPE (rope.dimension_count != head size) is not supported");
  c.norm_eps = static_cast<float>(g.get_float(a + "attention.layer_norm_rms_epsilon"));
  c.rope_theta = g.find(a + "rope.freq_base") ? static_cast<float>(g.get_float(a + "rope.freq_base")) : 10000.0f;
  c.context = g.find(a + "context_length") ? g.get_i32(a + "context_length") : 0;
  c.rope_layout = RopeLayout::kInterleaved;
  if (const GgufValue* st = g.find(a + "rope.scaling.type"); st && st->str == "linear") {
    c.rope_scaling = "linear";
    c.rope_linear_factor = static_cast<float>(g.get_float(a + "rope.scaling.factor"));
  }
  c.layers.resize(n_layers);

  for (const GgufTensorInfo& t : g.tensors) {
    if (t.ggml_type != 0 && t.ggml_type != 1 && t.ggml_type != 30)
      throw Error(ErrorCode::kUnsupported, path,
                  "tensor '" + t.name + "' has type " + ggml_type_name(t.ggml_type) +
                      "; only F32, F16 and BF16 are supported (quantized models cannot be pruned: use the F16/BF16 original)");
    std::string name = t.name;
    const std::string suffix = ".weight";
    if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
      name.resize(name.size() - suffix.size());
    if (name == "token_embd") name = "tok_embd";
    TensorRef r;
    r.name = name;
    r.stored_name = t.name;
    r.file = g.file;
    r.offset = t.offset;
    r.dtype = t.ggml_type == 0 ? DType::F32 : t.ggml_type == 1 ? DType::F16 : DType::BF16;
    r.shape.assign(t.ne.rbegin(), t.ne.rend());  // GGUF lists fastest dimension first
    if (m->tensors.count(name)) fail_format(path, "tensor '" + t.name + "' appears twice in the tensor directory");
    m->tensors[name] = std::move(r);
  }
  // Tensors must not share bytes: an overlap means two weights read the same data (a corrupt or crafted
  // directory), and the model would run with wrong numbers.
  {
    std::vector<std::pair<uint64_t, const TensorRef*>> spans;
    for (const auto& [n, t] : m->tensors) spans.emplace_back(t.offset, &t);
    std::sort(spans.begin(), spans.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
    for (size_t i = 1; i < spans.size(); ++i) {
      const TensorRef& prev = *spans[i - 1].second;
      const uint64_t end = prev.offset + prev.numel() * dtype_size(prev.dtype);
      if (spans[i].first < end)
        fail_format(path, "tensors '" + prev.stored_name + "' and '" + spans[i].second->stored_name + "' overlap in the file");
    }
  }
  // Optional Llama-3 style per-frequency factors are stored as a tensor by llama.cpp's converter.
  if (auto it = m->tensors.find("rope_freqs"); it != m->tensors.end()) {
    const TensorRef& t = it->second;
    if (t.numel() != static_cast<uint64_t>(c.head_dim / 2)) fail_format(path, "tensor 'rope_freqs.weight' must have head_size/2 entries");
    c.rope_freq_factors.resize(t.numel());
    convert_to_f32(t.dtype, t.file->range(t.offset, t.numel() * dtype_size(t.dtype), "rope_freqs"), c.rope_freq_factors.data(), t.numel());
    c.rope_scaling = "llama3";
    m->tensors.erase(it);
  }
  auto tok = m->tensors.find("tok_embd");
  if (tok == m->tensors.end()) fail_format(path, "missing tensor 'token_embd.weight'");
  if (tok->second.shape.size() != 2) fail_format(path, "tensor 'token_embd.weight' must be 2-D");
  if (tok->second.shape[0] > INT32_MAX) fail_format(path, "tensor 'token_embd.weight' has an impossible vocabulary size");
  c.vocab = static_cast<int>(tok->second.shape[0]);
  c.tied_output = m->tensors.count("output") == 0;
  for (int l = 0; l < n_layers; ++l) {
    LayerShape& s = c.layers[l];
    const std::string b = "blk." + std::to_string(l) + ".";
    s.n_head = heads[l];
    s.n_kv_head = kv[l] < 0 ? heads[l] : kv[l];
    s.ffn = ffn[l];
    // deci marks attention-free layers with 0 KV heads and no attention tensors; the metadata and the
    // tensors must tell the same story (a head count of 0 beside attention weights would skip them silently).
    const bool has_q = m->tensors.count(b + "attn_q") > 0, has_ffn = m->tensors.count(b + "ffn_gate") > 0;
    if (has_q && (s.n_head <= 0 || s.n_kv_head <= 0))
      fail_format(path, "block " + std::to_string(l) + " has attention tensors but " + a + "attention.head_count" + (s.n_head <= 0 ? "" : "_kv") + " is 0");
    if (has_ffn && s.ffn <= 0) fail_format(path, "block " + std::to_string(l) + " has MLP tensors but " + a + "feed_forward_length is 0");
    if (arch == "llama" && (!has_q || !has_ffn))
      fail_format(path, a + "block_count is " + std::to_string(n_layers) + " but block " + std::to_string(l) + " has no " + (has_q ? "MLP" : "attention") + " tensors");
    if (!has_q && !has_ffn) fail_format(path, "block_count is " + std::to_string(n_layers) + " but block " + std::to_string(l) + " has no tensors");
    if (!has_q) { s.n_head = 0; s.n_kv_head = 0; }
    if (!has_ffn) s.ffn = 0;
    s.attn_qkv_bias = m->tensors.count(b + "attn_q.bias") > 0;
    s.attn_out_bias = m->tensors.count(b + "attn_output.bias") > 0;
    s.ffn_down_bias = m->tensors.count(b + "ffn_down.bias") > 0;
  }
  if (g.find("tokenizer.ggml.bos_token_id")) c.bos = g.get_i32("tokenizer.ggml.bos_token_id");
  if (g.find("tokenizer.ggml.eos_token_id")) c.eos = g.get_i32("tokenizer.ggml.eos_token_id");
  c.validate(path);
  m->bind_weights(options);
  m->embedded_vocab = embedded_vocab(g);
  return m;
}

}  // namespace ep
