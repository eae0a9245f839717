// Kernels of the second-moment accumulation on the GPU, in float64 where the CPU uses float64 — the building
// blocks of the fused capture (device_capture.cuh) and of the host-buffer entry accumulate_moments
// (covariance.cu). Every reduction runs in a fixed order (no atomics), so a GPU run is reproducible bit for
// bit. All launch on `s` and throw CudaFailure on a launch error. CPU twins: ep::Moments (native/core/capture/moments.cpp)
// and ep::StatisticsCapture (native/core/capture/capture.cpp).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace ep::cuda {

// cross[g] (group×group, row-major, g < groups) += Σ_r (x_g[r] − c_g)(x_g[r] − c_g)ᵀ in float64, where x_g is
// columns [g·group, (g+1)·group) of x [n rows, row stride ld] and c_g those of shift — twin of dsyrk.
void grouped_cross(const float* x, int64_t n, int64_t ld, int groups, int group, const double* shift, double* cross, cudaStream_t s);
// sum[j] += Σ_r (x[r, j] − shift[j]), sumsq[j] += its squares, for the first k columns of x [n, ld], float64;
// shift null = 0, sumsq may be null — twin of ChannelStats::add and the capture's a/m sums.
void column_sums(const float* x, int64_t n, int k, int64_t ld, const double* shift, double* sum, double* sumsq, cudaStream_t s);
// out[j] = mean over the n rows of column j (out is overwritten) — the shift of a first batch.
void column_means(const float* x, int64_t n, int k, int64_t ld, double* out, cudaStream_t s);
// out[j, r] = float(x[r, j]) − float(shift[j]) for x [n, k]: shifted rows transposed for one GEMM of their
// cross-products (the float32 products of Moments' blocked mode).
void shifted_transpose(const float* x, int64_t n, int k, const double* shift, float* out, cudaStream_t s);
// sum[j] += Σ_r xt[j, r] in float64 for xt [k, n].
void row_sums(const float* xt, int k, int64_t n, double* sum, cudaStream_t s);
// acc[i] += g[i] (float into float64).
void add_into_f64(const float* g, int64_t n, double* acc, cudaStream_t s);
// cos_rows[r] = cos(h_in[r], h_out[r]) in float64, NaN when the output row is not finite — twin of the
// cosine in StatisticsCapture::block_output.
void row_cosines(const float* h_in, const float* h_out, int64_t rows, int d, double* cos_rows, cudaStream_t s);

}  // namespace ep::cuda
