// A loaded model: its configuration, the tensors as stored in the file(s), and float32 views the engine
// reads. F32 tensors that are 4-byte aligned are used in place from the memory map; F16/BF16 (and
// misaligned F32) are converted once into owned buffers — or, for a model loaded to stream its layers
// (LoadOptions::stream_layers), converted block by block when a pass reaches that block and freed after it,
// so a BF16 checkpoint needs float32 memory for one block at a time instead of all of them.
#pragma once
#include <atomic>
#include <functional>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/format/dtype.h"
#include "core/load/float_buffer.h"
#include "core/format/mapped_file.h"
#include "core/model_config.h"

namespace ep {

class SpmVocab;

// Where a tensor lives in a file. Names are canonical (GGUF style): tok_embd, output_norm, output,
// blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down}[.bias].
// Shapes are row-major, outermost first: a linear weight is [out, in] as in PyTorch.
struct TensorRef {
  std::string name;         // canonical name
  std::string stored_name;  // name in the file, for error messages
  std::shared_ptr<MappedFile> file;
  uint64_t offset = 0;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t numel() const;
};

struct LayerWeights {
  const float* attn_norm = nullptr;  // [dim]
  const float* wq = nullptr;         // [n_head*head_dim, dim]
  const float* wk = nullptr;         // [n_kv_head*head_dim, dim]
  const float* wv = nullptr;         // [n_kv_head*head_dim, dim]
  const float* bq = nullptr;         // optional [n_head*head_dim]
  const float* bk = nullptr;         // optional [n_kv_head*head_dim]
  const float* bv = nullptr;         // optional [n_kv_head*head_dim]
  const float* wo = nullptr;         // [dim, n_head*head_dim]
  const float* bo = nullptr;         // optional [dim]
  const float* ffn_norm = nullptr;   // [dim]
  const float* w_gate = nullptr;     // [ffn, dim]
  const float* w_up = nullptr;       // [ffn, dim]
  const float* w_down = nullptr;     // [dim, ffn]
  const float* b_down = nullptr;     // optional [dim]
};

struct LoadOptions {
  bool stream_layers = false;  // see the file comment: convert block weights on use instead of at load
  // Called (blocks bound, blocks) as loading goes (converting F16/BF16 weights is most of its time);
  // `cancel` is checked between blocks (a cancelled load throws ep::Error kCancelled and keeps nothing).
  std::function<void(int64_t done, int64_t total)> progress;
  const std::atomic<bool>* cancel = nullptr;
};

// The float32 copies of one block's weights made by Model::layer_weights for a streamed model; freed with it.
using LayerBuffers = std::vector<FloatBuffer>;

class Model {
 public:
  ModelConfig config;
  std::string path;    // what the user passed
  std::string format;  // "hf" | "gguf" | "llama2c"
  const float* tok_embd = nullptr;     // [vocab, dim]
  const float* output_norm = nullptr;  // [dim]
  const float* output = nullptr;       // [vocab, dim] (== tok_embd when tied)
  std::vector<LayerWeights> layers;
  std::map<std::string, TensorRef> tensors;  // canonical name -> stored tensor
  std::shared_ptr<SpmVocab> embedded_vocab;  // GGUF-embedded SentencePiece vocab, if any
  uint64_t converted_bytes = 0;              // bytes copied because the stored dtype is not F32
  // Unique to this Model object within the process (a freed model's address can be reused; this never is): what
  // caches of values derived from the weights key on (apply/refit.h RefitMomentCache).
  const uint64_t instance = next_instance();

  // Check every tensor against the config, then build the float views. Throws naming the tensor. With
  // stream_layers, block tensors that need a float32 copy are checked but left unbound (null in `layers`).
  void bind_weights(const LoadOptions& options = {});
  bool streams_layers() const { return stream_layers_; }
  // Block l's float views: `layers[l]` itself when every tensor is bound, else a copy of it whose unbound
  // tensors are converted into `buffers` (which must outlive the returned views).
  LayerWeights layer_weights(int l, LayerBuffers& buffers) const;
  // Parameter counts: all weights, and the linear weights inside the blocks (docs/METHOD.md section 6).
  uint64_t parameter_count() const;
  // For activations that went NaN/Inf in block `layer`: names the first tensor of that block (or the token
  // embeddings) holding a NaN or infinity, or says that the weights are finite and the values overflowed.
  std::string nonfinite_report(int layer) const;
  uint64_t block_linear_parameter_count() const;
  static uint64_t next_instance();

 private:
  const float* view(const TensorRef& t);
  // Fills block l's views with get(name, shape, required) — one list of a block's tensors for binding at
  // load (bind_weights) and for converting on use (layer_weights).
  template <typename Get>
  void fill_layer(int l, LayerWeights& w, Get&& get) const;
  std::deque<FloatBuffer> owned_;
  bool stream_layers_ = false;
};

// Load from a Hugging Face directory, a .gguf file or a llama2.c .bin checkpoint (chosen by path).
std::unique_ptr<Model> load_model(const std::string& path, const LoadOptions& options = {});
std::unique_ptr<Model> load_hf(const std::string& dir, const LoadOptions& options = {});
std::unique_ptr<Model> load_gguf(const std::string& path, const LoadOptions& options = {});
std::unique_ptr<Model> load_llama2c(const std::string& path, const LoadOptions& options = {});

}  // namespace ep
