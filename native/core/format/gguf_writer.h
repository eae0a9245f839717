// Writes GGUF v3 files: metadata, then tensors aligned to 32 bytes. Used by the save stage and by tests
// that build small synthetic models. Tensor data is streamed from caller-owned memory at write() time.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/format/dtype.h"
#include "core/format/gguf_file.h"

namespace ep {

class GgufWriter {
 public:
  void set_string(const std::string& key, const std::string& v);
  void set_u32(const std::string& key, uint32_t v);
  void set_f32(const std::string& key, float v);
  void set_i32_array(const std::string& key, const std::vector<int32_t>& v);
  void set_f32_array(const std::string& key, const std::vector<float>& v);
  void set_string_array(const std::string& key, const std::vector<std::string>& v);
  void copy_value(const std::string& key, const GgufValue& v);  // carry metadata over from a source file

  // shape row-major, outermost first (as everywhere in the core); written fastest-first as GGUF wants.
  void add_tensor(const std::string& name, const std::vector<int64_t>& shape, DType dtype, const void* data);
  // Lazy tensor: `produce` fills numel float32 values when write() reaches it; they are stored as `dtype`.
  // Only one such tensor is in memory at a time.
  void add_tensor_f32(const std::string& name, const std::vector<int64_t>& shape, DType dtype, std::function<void(float*)> produce);

  // Writes the whole file at `path` (the caller picks a temporary name and renames). Throws ep::Error.
  void write(const std::string& path) const;

 private:
  struct Tensor {
    std::string name;
    std::vector<int64_t> shape;
    DType dtype;
    const void* data;
    std::function<void(float*)> produce;
  };
  std::string kv_bytes_;
  uint64_t n_kv_ = 0;
  std::vector<Tensor> tensors_;
  void key(const std::string& k, GgufType t);
};

}  // namespace ep
