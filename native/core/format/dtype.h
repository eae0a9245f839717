// Storage dtypes the loaders accept, and their conversion to the float32 the CPU engine computes in.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace ep {

enum class DType { F32, F16, BF16 };

inline size_t dtype_size(DType t) { return t == DType::F32 ? 4 : 2; }
inline const char* dtype_name(DType t) { return t == DType::F32 ? "F32" : t == DType::F16 ? "F16" : "BF16"; }

float f16_to_f32(uint16_t h);
inline float bf16_to_f32(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}
uint16_t f32_to_f16(float f);
uint16_t f32_to_bf16(float f);  // round to nearest even

// Convert n elements of `src` (any alignment) into dst.
void convert_to_f32(DType t, const void* src, float* dst, size_t n);

}  // namespace ep
