// Shifted second moments on the GPU in float64 for host buffers: cross += (X−c)ᵀ(X−c), sum += Σ(X−c), for
// X [n, k] float — the kernels of moment_kernels.cuh (those the fused capture uses) behind a plain-C++
// entry point. No cuBLAS needed. CPU twin: ep::Moments::add (OpenBLAS dsyrk); agreement test:
// native/tests/test_cuda.cpp.
#include "core/device/cuda_api.h"
#include "cuda/device_memory.cuh"
#include "cuda/moment_kernels.cuh"

namespace ep::cuda {

bool accumulate_moments(const float* x, int64_t n, int k, const double* shift, double* sum, double* cross, std::string* error) {
  return run_on_gpu(error, [&] {
    DeviceBuffer<float> dx(static_cast<size_t>(n) * k);
    DeviceBuffer<double> dshift(k), dsum(k), dcross(static_cast<size_t>(k) * k);
    dx.upload(x);
    dshift.upload(shift);
    dsum.upload(sum);
    dcross.upload(cross);
    grouped_cross(dx.get(), n, k, 1, k, dshift.get(), dcross.get(), nullptr);
    column_sums(dx.get(), n, k, k, dshift.get(), dsum.get(), nullptr, nullptr);
    check(cudaDeviceSynchronize(), "covariance");
    dsum.download(sum);
    dcross.download(cross);
  });
}

}  // namespace ep::cuda
