#include "core/load/model.h"

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <deque>
#include <map>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "core/load/memory_info.h"

namespace ep {

uint64_t TensorRef::numel() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

static std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

namespace {

bool used_in_place(const TensorRef& t, const uint8_t* p) {
  return t.dtype == DType::F32 && reinterpret_cast<uintptr_t>(p) % alignof(float) == 0;
}

bool is_block_tensor(const std::string& name) { return name.compare(0, 4, "blk.") == 0; }

// A 1-D tensor may be stored as [1, n] by some writers; compare element layout, not rank.
void check_shape(const std::string& file, const TensorRef& t, const std::vector<int64_t>& shape) {
  std::vector<int64_t> got = t.shape;
  while (got.size() > shape.size() && got.front() == 1) got.erase(got.begin());
  if (got != shape) fail_format(file, "tensor '" + t.stored_name + "' has shape " + shape_str(t.shape) + " but the config implies " + shape_str(shape));
}

}  // namespace

const float* Model::view(const TensorRef& t) {
  const uint64_t n = t.numel();
  const uint8_t* p = t.file->range(t.offset, n * dtype_size(t.dtype), "tensor '" + t.stored_name + "'");
  if (used_in_place(t, p)) return reinterpret_cast<const float*>(p);  // in place: no copy
  owned_.emplace_back(n);
  convert_to_f32(t.dtype, p, owned_.back().data(), n);
  converted_bytes += n * sizeof(float);
  return owned_.back().data();
}

template <typename Get>
void Model::fill_layer(int l, LayerWeights& w, Get&& get) const {
  const ModelConfig& c = config;
  const int64_t d = c.dim, hd = c.head_dim;
  const LayerShape& s = c.layers[l];
  const std::string b = "blk." + std::to_string(l) + ".";
  if (s.n_head > 0) {
    const int64_t q = s.n_head * hd, kv = s.n_kv_head * hd;
    w.attn_norm = get(b + "attn_norm", {d}, true);
    w.wq = get(b + "attn_q", {q, d}, true);
    w.wk = get(b + "attn_k", {kv, d}, true);
    w.wv = get(b + "attn_v", {kv, d}, true);
    w.wo = get(b + "attn_output", {d, q}, true);
    w.bq = get(b + "attn_q.bias", {q}, s.attn_qkv_bias);
    w.bk = get(b + "attn_k.bias", {kv}, s.attn_qkv_bias);
    w.bv = get(b + "attn_v.bias", {kv}, s.attn_qkv_bias);
  }
  // The attention-output bias may exist on an attention-free layer: it carries compensation constants.
  w.bo = get(b + "attn_output.bias", {d}, s.attn_out_bias);
  if (s.ffn > 0) {
    w.ffn_norm = get(b + "ffn_norm", {d}, true);
    w.w_gate = get(b + "ffn_gate", {s.ffn, d}, true);
    w.w_up = get(b + "ffn_up", {s.ffn, d}, true);
    w.w_down = get(b + "ffn_down", {d, s.ffn}, true);
  }
  w.b_down = get(b + "ffn_down.bias", {d}, s.ffn_down_bias);
}

void Model::bind_weights(const LoadOptions& options) {
  const ModelConfig& c = config;
  const std::string& file = path;
  stream_layers_ = options.stream_layers;
  // Weights stored as F16/BF16 are converted to float32 copies: check that they fit before allocating any
  // (a streamed model converts only the non-block tensors now, and one block at a time later).
  uint64_t to_convert = 0, largest_block = 0;
  std::map<std::string, uint64_t> per_block;
  for (const auto& [name, t] : tensors) {
    if (t.dtype == DType::F32) continue;
    if (stream_layers_ && is_block_tensor(name)) per_block[name.substr(0, name.find('.', 4))] += t.numel() * sizeof(float);
    else to_convert += t.numel() * sizeof(float);
  }
  for (const auto& [block, bytes] : per_block) largest_block = std::max(largest_block, bytes);
  const uint64_t available = available_memory_bytes();
  if (available > 0 && to_convert + largest_block > available) {
    if (stream_layers_)
      throw Error(ErrorCode::kUnsupported, file,
                  "even streamed block by block, its F16/BF16 weights need " + format_bytes(to_convert + largest_block) +
                      " once converted to float32 (embeddings, output and the largest block), but only " + format_bytes(available) +
                      " of memory is available: use a machine with more memory (or free some)");
    throw Error(ErrorCode::kUnsupported, file,
                "its F16/BF16 weights take " + format_bytes(to_convert) + " once converted to float32, but only " + format_bytes(available) +
                    " of memory is available: use a machine with more memory (or free some), or stream the blocks (--stream) to convert one at a time; "
                    "float32 checkpoints are used in place without a copy");
  }
  auto find = [&](const std::string& name, const std::vector<int64_t>& shape, bool required) -> const TensorRef* {
    auto it = tensors.find(name);
    if (it == tensors.end()) {
      if (required) fail_format(file, "missing tensor '" + name + "' (expected shape " + shape_str(shape) + ")");
      return nullptr;
    }
    check_shape(file, it->second, shape);
    return &it->second;
  };
  auto get = [&](const std::string& name, std::vector<int64_t> shape, bool required) -> const float* {
    const TensorRef* t = find(name, shape, required);
    return t ? view(*t) : nullptr;
  };
  const int64_t d = c.dim;
  tok_embd = get("tok_embd", {c.vocab, d}, !c.tied_output || !tensors.count("output"));
  output_norm = get("output_norm", {d}, true);
  output = tensors.count("output") ? get("output", {c.vocab, d}, true) : nullptr;
  if (!tok_embd) tok_embd = output;  // tied model that stores only the head (TinyStories-656K)
  if (!output) {
    if (!c.tied_output) fail_format(file, "missing tensor 'output' and the config does not tie it to the embedding");
    output = tok_embd;
  }
  layers.assign(c.layers.size(), LayerWeights{});
  for (int l = 0; l < c.n_layers(); ++l) {
    throw_if_cancelled(options.cancel);
    fill_layer(l, layers[l], [&](const std::string& name, std::vector<int64_t> shape, bool required) -> const float* {
      const TensorRef* t = find(name, shape, required);
      if (!t) return nullptr;
      const uint8_t* p = t->file->range(t->offset, t->numel() * dtype_size(t->dtype), "tensor '" + t->stored_name + "'");
      // Streamed: matrices needing a copy are converted on use; norms and biases (d floats) are bound now.
      return stream_layers_ && shape.size() == 2 && !used_in_place(*t, p) ? nullptr : view(*t);
    });
    if (options.progress) options.progress(l + 1, c.n_layers());
  }
}

LayerWeights Model::layer_weights(int l, LayerBuffers& buffers) const {
  if (!stream_layers_) return layers[l];
  LayerWeights w;
  fill_layer(l, w, [&](const std::string& name, std::vector<int64_t> shape, bool) -> const float* {
    auto it = tensors.find(name);
    if (shape.size() != 2 || it == tensors.end()) return nullptr;  // vectors: bound at load, copied below
    const TensorRef& t = it->second;
    const uint64_t n = t.numel();
    const uint8_t* p = t.file->range(t.offset, n * dtype_size(t.dtype), "tensor '" + t.stored_name + "'");
    if (used_in_place(t, p)) return reinterpret_cast<const float*>(p);
    buffers.emplace_back(n);
    convert_to_f32(t.dtype, p, buffers.back().data(), n);
    return buffers.back().data();
  });
  const LayerWeights& b = layers[l];
  w.attn_norm = b.attn_norm, w.ffn_norm = b.ffn_norm;
  w.bq = b.bq, w.bk = b.bk, w.bv = b.bv, w.bo = b.bo, w.b_down = b.b_down;
  return w;
}

uint64_t Model::block_linear_parameter_count() const {
  uint64_t n = 0;
  const uint64_t d = config.dim, hd = config.head_dim;
  for (const LayerShape& s : config.layers) {
    n += 2 * d * s.n_head * hd + 2 * d * s.n_kv_head * hd;  // q, o, k, v
    n += 3 * d * s.ffn;                                     // gate, up, down
    if (s.attn_out_bias) n += d;
    if (s.ffn_down_bias) n += d;
    if (s.attn_qkv_bias) n += (s.n_head + 2 * s.n_kv_head) * hd;
  }
  return n;
}

uint64_t Model::parameter_count() const {
  uint64_t n = block_linear_parameter_count();
  const uint64_t d = config.dim;
  for (const LayerShape& s : config.layers) n += (s.n_head > 0 ? d : 0) + (s.ffn > 0 ? d : 0);  // norms
  n += d + static_cast<uint64_t>(config.vocab) * d * (config.tied_output ? 1 : 2);
  return n;
}

static bool is_directory(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

static bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::unique_ptr<Model> load_model(const std::string& path, const LoadOptions& options) {
  if (is_directory(path)) return load_hf(path, options);
  if (ends_with(path, ".gguf")) return load_gguf(path, options);
  if (ends_with(path, ".safetensors") || ends_with(path, "config.json"))
    throw Error(ErrorCode::kInvalidArgument, path, "pass the Hugging Face model directory, not one of its files");
  if (ends_with(path, ".bin")) return load_llama2c(path, options);
  // Sniff: GGUF files start with the magic "GGUF".
  MappedFile f(path);
  if (f.size() >= 4 && f.data()[0] == 'G' && f.data()[1] == 'G' && f.data()[2] == 'U' && f.data()[3] == 'F')
    return load_gguf(path, options);
  throw Error(ErrorCode::kUnsupported, path,
              "unknown model format: expected a Hugging Face directory, a .gguf file or a llama2.c .bin checkpoint");
}

}  // namespace ep

namespace ep {

std::string Model::nonfinite_report(int layer) const {
  const ModelConfig& c = config;
  const int64_t d = c.dim, hd = c.head_dim;
  auto first_bad = [](const float* p, int64_t n) -> int64_t {
    if (!p) return -1;
    for (int64_t i = 0; i < n; ++i)
      if (!std::isfinite(p[i])) return i;
    return -1;
  };
  auto stored = [&](const std::string& canonical) {
    for (const char* suffix : {"", ".weight"}) {
      auto it = tensors.find(canonical + suffix);
      if (it != tensors.end()) return it->second.stored_name;
    }
    return canonical;
  };
  const std::string head = "the activations became NaN or infinite in block " + std::to_string(layer) + ": ";
  std::vector<std::pair<std::string, std::pair<const float*, int64_t>>> candidates = {{"tok_embd", {tok_embd, int64_t{c.vocab} * d}}};
  std::deque<LayerBuffers> streamed;  // a streamed model's block weights, converted for this report only
  for (int l = 0; l <= layer && l < c.n_layers(); ++l) {
    const LayerShape& s = c.layers[l];
    const LayerWeights w = layer_weights(l, streamed.emplace_back());
    const int64_t q = int64_t{s.n_head} * hd, kv = int64_t{s.n_kv_head} * hd, f = s.ffn;
    const std::string b = "blk." + std::to_string(l) + ".";
    for (const auto& [name, ptr, n] : std::vector<std::tuple<std::string, const float*, int64_t>>{
             {"attn_norm", w.attn_norm, d}, {"attn_q", w.wq, q * d}, {"attn_k", w.wk, kv * d}, {"attn_v", w.wv, kv * d},
             {"attn_q.bias", w.bq, q}, {"attn_k.bias", w.bk, kv}, {"attn_v.bias", w.bv, kv}, {"attn_output", w.wo, d * q},
             {"attn_output.bias", w.bo, d}, {"ffn_norm", w.ffn_norm, d}, {"ffn_gate", w.w_gate, f * d}, {"ffn_up", w.w_up, f * d},
             {"ffn_down", w.w_down, d * f}, {"ffn_down.bias", w.b_down, d}})
      candidates.push_back({b + name, {ptr, n}});
  }
  for (const auto& [name, data] : candidates) {
    const int64_t i = first_bad(data.first, data.second);
    if (i >= 0)
      return head + "tensor '" + stored(name) + "' holds " + (std::isnan(data.first[i]) ? "NaN" : "an infinity") + " at element " +
             std::to_string(i) + " (a corrupt or badly converted checkpoint)";
  }
  return head + "every weight up to it is finite, so the values overflowed float32 (an unstable checkpoint, or a dtype it was not made for)";
}

uint64_t Model::next_instance() {
  static std::atomic<uint64_t> counter{0};
  return ++counter;
}

}  // namespace ep
