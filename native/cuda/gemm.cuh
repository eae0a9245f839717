// Linear layers on the GPU: y[rows, out] (float32) = x[rows, in] · W[out, in]ᵀ (+ bias), x and W in the
// compute precision (float32, bfloat16 or float16), float32 accumulation. cuBLAS when it loaded at run time
// (cublas_runtime.cuh), else entroprune's own kernels: tensor cores (WMMA) for the 16-bit types, a tiled
// kernel for float32. CPU twin: ep::linear (native/core/forward/layer_ops.cpp).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/device/block_runner.h"
#include "cuda/cublas_runtime.cuh"

namespace ep::cuda {

// Throws CudaFailure. cuBLAS runs when `blas` holds a handle (the caller's, made on this device), else
// entroprune's own kernels.
void linear_on_device(const void* x, const void* w, const float* bias, float* y, int64_t rows, int64_t in, int64_t out, Precision p,
                      const Cublas::Handle* blas, cudaStream_t stream);

// Bytes per element of the compute precision.
inline int precision_bytes(Precision p) { return p == Precision::kF32 ? 4 : 2; }

}  // namespace ep::cuda
