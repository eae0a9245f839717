// Device detection. Checks the driver first: with static cudart and no driver, the first runtime call
// would report cudaErrorInsufficientDriver, which we turn into a clear message instead.
#include <algorithm>

#include "core/device/cuda_api.h"
#include "cuda/device_memory.cuh"

namespace ep::cuda {

float* alloc_pinned_floats(uint64_t n) {
  void* p = nullptr;
  if (cudaMallocHost(&p, std::max<uint64_t>(n, 1) * sizeof(float)) != cudaSuccess) {
    cudaGetLastError();  // not sticky, but leave no error behind for the next check()
    return nullptr;
  }
  return static_cast<float*>(p);
}

void free_pinned(float* p) {
  if (p) cudaFreeHost(p);
}

Probe probe() {
  Probe p;
  p.compiled = true;
  auto unavailable = [&p](const std::string& why) {
    p.unavailable = why;
    p.message = why + ": using the CPU";
    return p;
  };
  cudaRuntimeGetVersion(&p.runtime_version);
  if (cudaDriverGetVersion(&p.driver_version) != cudaSuccess || p.driver_version == 0) return unavailable("no NVIDIA driver found");
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    cudaGetLastError();  // clear the sticky error
    return unavailable(std::string("no usable CUDA device (") + (e != cudaSuccess ? cudaGetErrorString(e) : "0 devices") + ")");
  }
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    DeviceInfo d;
    d.index = i;
    d.name = prop.name;
    d.compute_major = prop.major;
    d.compute_minor = prop.minor;
    d.total_memory = prop.totalGlobalMem;
    // No free-memory query: cudaMemGetInfo needs a context, and making one on every GPU (and leaving this
    // thread's current device changed) costs each GPU memory that other jobs on a shared server may need.
    p.devices.push_back(d);
  }
  if (p.devices.empty()) return unavailable("no usable CUDA device");
  p.available = true;
  p.message = "CUDA device " + p.devices[0].name;
  return p;
}

}  // namespace ep::cuda
