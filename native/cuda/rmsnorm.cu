// RMSNorm on host buffers through the block kernel (block_kernels.cu: one block per row, a shared-memory
// reduction of the squares in float32). CPU twin: ep::rmsnorm_cpu (native/core/forward/ops_cpu.cpp); agreement
// test: native/tests/test_cuda.cpp.
#include "cuda/block_kernels.cuh"
#include "core/device/cuda_api.h"
#include "cuda/device_memory.cuh"

namespace ep::cuda {

bool rmsnorm(const float* x, const float* w, float* y, int64_t rows, int dim, float eps, std::string* error) {
  return run_on_gpu(error, [&] {
    DeviceBuffer<float> dx(rows * dim), dw(dim), dy(rows * dim);
    dx.upload(x);
    dw.upload(w);
    rmsnorm_rows(dx.get(), dw.get(), dy.get(), Precision::kF32, rows, dim, eps, nullptr);
    check(cudaDeviceSynchronize(), "rmsnorm");
    dy.download(y);
  });
}

}  // namespace ep::cuda
