#include "core/forward/divergence.h"

#include <algorithm>
#include <cmath>

#include "core/forward/simd_math.h"

namespace ep {

namespace {
// log Σ exp(row), shifted by its maximum so no term overflows.
double log_sum_exp(const float* row, int V) {
  const float mx = simd::max(row, V);
  return std::log(static_cast<double>(simd::sum_exp_shift(row, V, mx))) + mx;
}
}  // namespace

void log_softmax_rows_cpu(float* lg, int64_t rows, int V) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    float* row = &lg[r * V];
    const float lse = static_cast<float>(log_sum_exp(row, V));
    for (int v = 0; v < V; ++v) row[v] -= lse;
  }
}

void kl_next_token_rows_cpu(const float* lg, const float* ref, int64_t rows, int T, int V, const int32_t* tokens, float* kl, float* nll) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* q = &lg[r * V];
    const float* p = &ref[r * V];
    const double lse = log_sum_exp(q, V);
    double k = 0;
    for (int v = 0; v < V; ++v) k += std::exp(static_cast<double>(p[v])) * (static_cast<double>(p[v]) - (q[v] - lse));
    kl[r] = static_cast<float>(std::max(0.0, k));
    const int64_t pos = r % T;
    if (pos != T - 1) nll[(r / T) * (T - 1) + pos] = static_cast<float>(lse - q[tokens[r + 1]]);
  }
}

}  // namespace ep
