// Element-wise CPU operations that also have CUDA twins (native/cuda/). The CPU version is the reference.
#pragma once
#include <cstdint>

namespace ep {

// y[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) * w   for rows r of width dim.
void rmsnorm_cpu(const float* x, const float* w, float* y, int64_t rows, int dim, float eps);

}  // namespace ep
