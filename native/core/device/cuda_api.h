// The CUDA side of the core, callable from plain C++ whether or not the build had nvcc: declared here, in
// the core, and implemented in native/cuda (device.cu, rmsnorm.cu, covariance.cu, gemm.cu). Without CUDA
// (native/cuda/cuda_stub.cpp) every function reports "built without CUDA"; with CUDA but no driver or GPU at run time,
// cuda_probe() says so and callers fall back to the CPU. Nothing here throws or aborts on a missing GPU.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/device/block_runner.h"

namespace ep::cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int compute_major = 0, compute_minor = 0;
  uint64_t total_memory = 0;
};

struct Probe {
  bool compiled = false;   // this build contains CUDA kernels
  bool available = false;  // a driver and at least one device were found
  int driver_version = 0;  // e.g. 12040; 0 when no driver
  int runtime_version = 0;
  std::string message;     // for the user: what was found, or why not and that the CPU is used instead
  std::string unavailable; // why CUDA cannot run, alone (for errors where nothing falls back); empty when available
  std::vector<DeviceInfo> devices;
};

Probe probe();

// GPU twin of ep::rmsnorm_cpu on host buffers (copies in and out). Returns false and sets *error when
// CUDA cannot run it; the caller then uses the CPU twin.
bool rmsnorm(const float* x, const float* w, float* y, int64_t rows, int dim, float eps, std::string* error);

// GPU twin of the moment accumulation in ep::Moments::add (native/core/capture/moments.cpp): for x [n, k] (float,
// row-major) and a fixed shift c, adds Σ(x−c) to sum[k] and Σ(x−c)(x−c)ᵀ to cross[k×k] (full matrix), all in
// float64. Returns false and sets *error when CUDA cannot run it.
bool accumulate_moments(const float* x, int64_t n, int k, const double* shift, double* sum, double* cross, std::string* error);

// GPU twin of ep::linear on host buffers: y[rows, out] = x[rows, in] · W[out, in]ᵀ (+ bias), x and W rounded
// to `precision` on the device, float32 accumulation, through `backend`. Returns false and sets *error when
// CUDA cannot run it (kCublas also when cuBLAS did not load).
bool linear(const float* x, const float* w, const float* bias, float* y, int64_t rows, int64_t in, int64_t out, Precision precision,
            GemmBackend backend, std::string* error);

// Page-locked host memory for buffers the GPU copies to and from at every block (about twice the PCIe rate
// of pageable memory). Null when CUDA cannot provide it; the caller then uses ordinary memory.
float* alloc_pinned_floats(uint64_t n);
void free_pinned(float* p);

// What the GEMMs would use: the loaded cuBLAS ("cuBLAS 12.4.5 (libcublas.so.12)") or why entroprune's own kernels.
std::string gemm_backend_description();

}  // namespace ep::cuda
