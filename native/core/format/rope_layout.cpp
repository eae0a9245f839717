#include "core/format/rope_layout.h"

#include <cstring>
#include <vector>

namespace ep {

std::function<void(float*)> to_interleaved(std::function<void(float*)> inner, int64_t rows, int64_t cols, int hd) {
  return [=](float* dst) {
    std::vector<float> tmp(static_cast<size_t>(rows) * cols);
    inner(tmp.data());
    for (int64_t h = 0; h < rows / hd; ++h)
      for (int i = 0; i < hd / 2; ++i) {
        std::memcpy(dst + (h * hd + 2 * i) * cols, tmp.data() + (h * hd + i) * cols, cols * sizeof(float));
        std::memcpy(dst + (h * hd + 2 * i + 1) * cols, tmp.data() + (h * hd + i + hd / 2) * cols, cols * sizeof(float));
      }
  };
}

std::function<void(float*)> to_half(std::function<void(float*)> inner, int64_t rows, int64_t cols, int hd) {
  return [=](float* dst) {
    std::vector<float> tmp(static_cast<size_t>(rows) * cols);
    inner(tmp.data());
    for (int64_t h = 0; h < rows / hd; ++h)
      for (int i = 0; i < hd / 2; ++i) {
        std::memcpy(dst + (h * hd + i) * cols, tmp.data() + (h * hd + 2 * i) * cols, cols * sizeof(float));
        std::memcpy(dst + (h * hd + i + hd / 2) * cols, tmp.data() + (h * hd + 2 * i + 1) * cols, cols * sizeof(float));
      }
  };
}

}  // namespace ep
