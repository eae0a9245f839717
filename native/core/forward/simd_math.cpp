#include "core/forward/simd_math.h"

#include <algorithm>
#include <cstring>

namespace ep::simd {

namespace {
// exp(x) for x in [-87.3, 88.7]: x = n·ln2 + r, e^r by the Cephes minimax polynomial, 2^n through the exponent bits.
#pragma omp declare simd
inline float exp_poly(float x) {
  x = std::min(88.7f, std::max(-87.3f, x));
  const float n = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return e * scale;
}
}  // namespace

__attribute__((target_clones("arch=haswell", "default"))) void axpy(float a, const float* x, float* y, int n) {
  for (int i = 0; i < n; ++i) y[i] += a * x[i];
}

__attribute__((target_clones("arch=haswell", "default"))) float dot(const float* a, const float* b, int n) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // 8 lanes: lets the compiler vectorize without -ffast-math
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) s[k] += a[i + k] * b[i + k];
  float t = 0;
  for (; i < n; ++i) t += a[i] * b[i];
  return t + ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

// `omp simd` reductions allow the reassociation that vectorizing a float sum/max needs (no -ffast-math).
__attribute__((target_clones("arch=haswell", "default"))) float max(const float* x, int n) {
  float m = x[0];
#pragma omp simd reduction(max : m)
  for (int i = 1; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

__attribute__((target_clones("arch=haswell", "default"))) float exp_shift_sum(float* x, int n, float shift) {
  float t = 0;
#pragma omp simd reduction(+ : t)
  for (int i = 0; i < n; ++i) {
    x[i] = exp_poly(x[i] - shift);
    t += x[i];
  }
  return t;
}

__attribute__((target_clones("arch=haswell", "default"))) double sum_exp_shift(const float* x, int n, float shift) {
  double total = 0;
  for (int i0 = 0; i0 < n; i0 += 1024) {  // float lanes per 1024-chunk, chunks summed in double
    const int i1 = std::min(n, i0 + 1024);
    float t = 0;
#pragma omp simd reduction(+ : t)
    for (int i = i0; i < i1; ++i) t += exp_poly(x[i] - shift);
    total += t;
  }
  return total;
}

}  // namespace ep::simd
