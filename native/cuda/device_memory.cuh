// RAII helpers for device memory and error checking, shared by every kernel file.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <string>

namespace ep::cuda {

struct CudaFailure {
  std::string message;
};

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw CudaFailure{std::string(what) + ": " + cudaGetErrorString(e)};
}

// Owns n elements of T on the current device.
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) { check(cudaMalloc(&p_, n * sizeof(T) + (n == 0)), "cudaMalloc"); }
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

}  // namespace ep::cuda
