// RMSNorm on the GPU: one block per row, a shared-memory reduction of the squares in float32.
// CPU twin: ep::rmsnorm_cpu (native/core/ops_cpu.cpp); agreement test: native/tests/test_cuda.cpp.
#include "cuda/cuda_runtime_api.h"
#include "cuda/device_memory.cuh"

namespace ep::cuda {

namespace {
constexpr int kThreads = 256;

__global__ void rmsnorm_kernel(const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ y, int dim,
                               float eps) {
  __shared__ float partial[kThreads];
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * dim;
  float* yr = y + static_cast<int64_t>(blockIdx.x) * dim;
  float s = 0;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) s += xr[i] * xr[i];
  partial[threadIdx.x] = s;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  const float scale = rsqrtf(partial[0] / dim + eps);
  for (int i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = xr[i] * scale * w[i];
}
}  // namespace

bool rmsnorm(const float* x, const float* w, float* y, int64_t rows, int dim, float eps, std::string* error) {
  try {
    Probe p = probe();
    if (!p.available) throw CudaFailure{p.message};
    DeviceBuffer<float> dx(rows * dim), dw(dim), dy(rows * dim);
    dx.upload(x);
    dw.upload(w);
    rmsnorm_kernel<<<static_cast<unsigned>(rows), kThreads>>>(dx.get(), dw.get(), dy.get(), dim, eps);
    check(cudaGetLastError(), "rmsnorm launch");
    check(cudaDeviceSynchronize(), "rmsnorm");
    dy.download(y);
    return true;
  } catch (const CudaFailure& f) {
    if (error) *error = f.message;
    return false;
  }
}

}  // namespace ep::cuda
