// Float32 storage for weights converted from F16/BF16 at load or per streamed block. Two things made the
// conversion of a 7B model slow with std::vector<float>: zero-filling memory the conversion overwrites
// anyway, and one page fault per 4 KiB. This buffer is left uninitialised and, when large, is an anonymous
// mapping advised to use transparent huge pages (512× fewer faults where the kernel allows them).
#pragma once
#include <cstddef>

namespace ep {

class FloatBuffer {
 public:
  explicit FloatBuffer(size_t n);
  ~FloatBuffer();
  FloatBuffer(FloatBuffer&& o) noexcept : data_(o.data_), n_(o.n_), mapped_(o.mapped_) { o.data_ = nullptr, o.n_ = 0; }
  FloatBuffer(const FloatBuffer&) = delete;
  FloatBuffer& operator=(const FloatBuffer&) = delete;
  FloatBuffer& operator=(FloatBuffer&&) = delete;
  float* data() { return data_; }
  const float* data() const { return data_; }
  size_t size() const { return n_; }

 private:
  float* data_ = nullptr;
  size_t n_ = 0;
  bool mapped_ = false;
};

}  // namespace ep
