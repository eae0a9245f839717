// Shifted second moments on the GPU in float64: cross += (X−c)ᵀ(X−c), sum += Σ(X−c), for X [n, k] float.
// A tiled kernel (32×32 output tile per block, rows streamed through shared memory); each tile of the
// lower triangle is skipped and mirrored, so the work is that of a syrk. No cuBLAS needed at build time.
// CPU twin: ep::Moments::add (OpenBLAS dsyrk); agreement test: native/tests/test_cuda.cpp.
#include "cuda/cuda_runtime_api.h"
#include "cuda/device_memory.cuh"

namespace ep::cuda {

namespace {
constexpr int kTile = 32;
constexpr int kRows = 32;

__global__ void cross_kernel(const float* __restrict__ x, int64_t n, int k, const double* __restrict__ shift, double* __restrict__ cross) {
  const int ti = blockIdx.y, tj = blockIdx.x;
  if (tj < ti) return;  // upper triangle of tiles only
  __shared__ double a[kRows][kTile + 1];
  __shared__ double b[kRows][kTile + 1];
  const int i = ti * kTile + threadIdx.y, j = tj * kTile + threadIdx.x;
  double acc = 0;
  for (int64_t r0 = 0; r0 < n; r0 += kRows) {
    // load rows r0..r0+kRows of columns [ti*kTile, +kTile) and [tj*kTile, +kTile)
    const int64_t r = r0 + threadIdx.y;
    const int ca = ti * kTile + threadIdx.x, cb = tj * kTile + threadIdx.x;
    a[threadIdx.y][threadIdx.x] = (r < n && ca < k) ? static_cast<double>(x[r * k + ca]) - shift[ca] : 0.0;
    b[threadIdx.y][threadIdx.x] = (r < n && cb < k) ? static_cast<double>(x[r * k + cb]) - shift[cb] : 0.0;
    __syncthreads();
#pragma unroll 8
    for (int t = 0; t < kRows; ++t) acc += a[t][threadIdx.y] * b[t][threadIdx.x];
    __syncthreads();
  }
  if (i < k && j < k) {
    cross[static_cast<int64_t>(i) * k + j] += acc;
    if (ti != tj) cross[static_cast<int64_t>(j) * k + i] += acc;
  }
}

__global__ void sum_kernel(const float* __restrict__ x, int64_t n, int k, const double* __restrict__ shift, double* __restrict__ sum) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= k) return;
  double s = 0;
  for (int64_t r = 0; r < n; ++r) s += static_cast<double>(x[r * k + c]) - shift[c];
  sum[c] += s;
}
}  // namespace

bool accumulate_moments(const float* x, int64_t n, int k, const double* shift, double* sum, double* cross, std::string* error) {
  return run_on_gpu(error, [&] {
    DeviceBuffer<float> dx(static_cast<size_t>(n) * k);
    DeviceBuffer<double> dshift(k), dsum(k), dcross(static_cast<size_t>(k) * k);
    dx.upload(x);
    dshift.upload(shift);
    dsum.upload(sum);
    dcross.upload(cross);
    const int tiles = (k + kTile - 1) / kTile;
    cross_kernel<<<dim3(tiles, tiles), dim3(kTile, kTile)>>>(dx.get(), n, k, dshift.get(), dcross.get());
    check(cudaGetLastError(), "covariance launch");
    sum_kernel<<<(k + 255) / 256, 256>>>(dx.get(), n, k, dshift.get(), dsum.get());
    check(cudaGetLastError(), "sum launch");
    check(cudaDeviceSynchronize(), "covariance");
    dsum.download(sum);
    dcross.download(cross);
  });
}

}  // namespace ep::cuda
