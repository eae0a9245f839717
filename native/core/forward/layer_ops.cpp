#include "core/forward/layer_ops.h"

#include <cblas.h>

#include <cmath>

#include "core/forward/gemm_bf16.h"
#include "core/forward/gemv.h"
#include "core/forward/threads.h"

namespace ep {

void linear(const float* x, const float* w, const float* bias, float* y, int64_t rows, int64_t in, int64_t out, const uint16_t* w_bf16) {
  if (rows <= kGemvMaxRows) {  // decoding: read each weight once (gemv.h)
    if (w_bf16)
      gemv_rows(x, w_bf16, DType::BF16, y, rows, in, out);
    else
      gemv_rows(x, w, DType::F32, y, rows, in, out);
    if (bias) add_row_bias(y, bias, rows, static_cast<int>(out));
    return;
  }
  if (w_bf16 && gemm_bf16_available()) {  // generation's prompt pass on a BF16 file (gemm_bf16.h)
    gemm_bf16(x, w_bf16, y, rows, in, out);
    if (bias) add_row_bias(y, bias, rows, static_cast<int>(out));
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(out), static_cast<int>(in),
              1.0f, x, static_cast<int>(in), w, static_cast<int>(in), 0.0f, y, static_cast<int>(out));
  if (bias) add_row_bias(y, bias, rows, static_cast<int>(out));
}

void add_inplace(float* x, const float* y, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelMinWork)
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void add_row_bias(float* x, const float* b, int64_t rows, int n) {
#pragma omp parallel for schedule(static) if (rows * n >= kParallelMinWork)
  for (int64_t r = 0; r < rows; ++r)
    for (int j = 0; j < n; ++j) x[r * n + j] += b[j];
}

void swiglu(float* gate, const float* up, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelMinWork)
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void rope_tables(const ModelConfig& c, int first, int count, std::vector<float>& cos_t, std::vector<float>& sin_t) {
  const int half = c.head_dim / 2;
  cos_t.resize(static_cast<size_t>(count) * half);
  sin_t.resize(cos_t.size());
  for (int i = 0; i < half; ++i) {
    double freq = std::pow(static_cast<double>(c.rope_theta), -2.0 * i / c.head_dim);
    if (!c.rope_freq_factors.empty()) freq /= c.rope_freq_factors[i];
    if (c.rope_scaling == "linear") freq /= c.rope_linear_factor;
    for (int p = 0; p < count; ++p) {
      const double a = static_cast<double>(first + p) * freq;
      cos_t[static_cast<size_t>(p) * half + i] = static_cast<float>(std::cos(a));
      sin_t[static_cast<size_t>(p) * half + i] = static_cast<float>(std::sin(a));
    }
  }
}

void apply_rope(const ModelConfig& c, float* x, int64_t rows, int period, int n_heads, const std::vector<float>& cos_t,
                const std::vector<float>& sin_t) {
  const int hd = c.head_dim, half = hd / 2;
  const bool interleaved = c.rope_layout == RopeLayout::kInterleaved;
#pragma omp parallel for schedule(static) if (rows * n_heads * hd >= kParallelMinWork)
  for (int64_t r = 0; r < rows; ++r) {
    const int pos = static_cast<int>(r % period);
    const float* cs = &cos_t[static_cast<size_t>(pos) * half];
    const float* sn = &sin_t[static_cast<size_t>(pos) * half];
    for (int h = 0; h < n_heads; ++h) {
      float* v = x + r * n_heads * hd + h * hd;
      for (int i = 0; i < half; ++i) {
        const int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
        const float x0 = v[a], x1 = v[b];
        v[a] = x0 * cs[i] - x1 * sn[i];
        v[b] = x0 * sn[i] + x1 * cs[i];
      }
    }
  }
}

}  // namespace ep
