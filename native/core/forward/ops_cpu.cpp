#include "core/forward/ops_cpu.h"

#include <cmath>

#include "core/forward/threads.h"

namespace ep {

void rmsnorm_cpu(const float* x, const float* w, float* y, int64_t rows, int dim, float eps) {
#pragma omp parallel for schedule(static) if (rows * dim >= kParallelMinWork)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    double ss = 0;  // double: the mean of squares of large activations loses digits in float
    for (int i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const float scale = static_cast<float>(1.0 / std::sqrt(ss / dim + eps));
    for (int i = 0; i < dim; ++i) yr[i] = xr[i] * scale * w[i];
  }
}

}  // namespace ep
