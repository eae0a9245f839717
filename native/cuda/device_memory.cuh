// RAII helpers for device memory and error checking, shared by every kernel file.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/device/cuda_api.h"

namespace ep::cuda {

struct CudaFailure {
  std::string message;
};

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw CudaFailure{std::string(what) + ": " + cudaGetErrorString(e)};
}

// cudaMalloc that throws on failure after clearing the error it leaves behind: a caller that catches the
// failure and carries on (a fallback to host memory) must not see it again at the next launch check.
inline void* device_malloc(size_t bytes) {
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, std::max<size_t>(bytes, 1));
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw CudaFailure{std::string("cudaMalloc: ") + cudaGetErrorString(e)};
  }
  return p;
}

// The shape of every host-buffer entry point in core/device/cuda_api.h: run `body` on the GPU, or return false
// with *error saying why (no usable GPU, or the CUDA call that failed) — never an exception.
template <typename Body>
bool run_on_gpu(std::string* error, Body&& body) {
  try {
    const Probe p = probe();
    if (!p.available) throw CudaFailure{p.message};
    body();
    return true;
  } catch (const CudaFailure& f) {
    if (error) *error = f.message;
    return false;
  }
}

// Owns n elements of T on the current device.
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : p_(static_cast<T*>(device_malloc(n * sizeof(T)))), n_(n) {}
  ~DeviceBuffer() { if (p_) cudaFree(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return p_; }
  size_t size() const { return n_; }
  void upload(const T* host) { check(cudaMemcpy(p_, host, n_ * sizeof(T), cudaMemcpyHostToDevice), "upload"); }
  void download(T* host) const { check(cudaMemcpy(host, p_, n_ * sizeof(T), cudaMemcpyDeviceToHost), "download"); }

 private:
  T* p_ = nullptr;
  size_t n_;
};

// Device allocations made through one runner, so that it can report the most it ever held.
class DeviceArena {
 public:
  DeviceArena() = default;
  DeviceArena(const DeviceArena&) = delete;
  DeviceArena& operator=(const DeviceArena&) = delete;

  void* allocate(size_t bytes) {
    void* p = device_malloc(bytes);
    held_ += bytes;
    peak_ = std::max(peak_, held_);
    sizes_.push_back({p, bytes});
    return p;
  }
  void release(void* p) {
    if (!p) return;
    for (auto it = sizes_.begin(); it != sizes_.end(); ++it)
      if (it->first == p) {
        held_ -= it->second;
        sizes_.erase(it);
        break;
      }
    cudaFree(p);
  }
  ~DeviceArena() {
    for (auto& [p, n] : sizes_) cudaFree(p);
  }
  template <typename T>
  T* array(int64_t n) { return static_cast<T*>(allocate(static_cast<size_t>(n) * sizeof(T))); }
  uint64_t peak() const { return peak_; }

 private:
  std::vector<std::pair<void*, size_t>> sizes_;
  uint64_t held_ = 0, peak_ = 0;
};

}  // namespace ep::cuda
