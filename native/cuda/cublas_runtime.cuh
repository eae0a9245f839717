// cuBLAS loaded at run time (dlopen), so that entroprune builds where cuBLAS is absent (this build machine
// has nvcc but no cuBLAS headers or libraries) and still uses it on CUDA servers, which have it. Only the
// handful of entry points the forward pass needs are declared, with the types of the public cuBLAS ABI
// (stable across cuBLAS 11–13); a missing library or symbol just means the fallback kernels run.
#pragma once
#include <cuda_runtime.h>
#include <library_types.h>

#include <string>

namespace ep::cuda {

class Cublas {
 public:
  // The process-wide library: loaded on first use. available() is false when no usable cuBLAS was found.
  static Cublas& get();
  bool available() const { return gemm_ex_ != nullptr; }
  const std::string& description() const { return description_; }  // "cuBLAS 12.4.5 (libcublas.so.12)" or why not

  // A cuBLAS handle belongs to the device current when it is made and must not be shared between threads
  // that use it at once: each BlockRunner owns one, made after selecting its device, destroyed with it.
  class Handle {
   public:
    Handle() = default;
    ~Handle();
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;
    // Creates the handle on the current device; false (message in *error) when that fails.
    bool create(std::string* error);
    void* get() const { return h_; }

   private:
    void* h_ = nullptr;
  };

  // Y[rows, out] (float32, row-major) = X[rows, in] · W[out, in]ᵀ, both row-major of `type`, float32
  // accumulation, on `stream` with `handle`. Returns false on a cuBLAS error (message in *error).
  bool linear(const Handle& handle, const void* x, const void* w, float* y, int64_t rows, int64_t in, int64_t out, cudaDataType type,
              cudaStream_t stream, std::string* error);

 private:
  Cublas();
  using RawHandle = void*;
  using CreateFn = int (*)(RawHandle*);
  using DestroyFn = int (*)(RawHandle);
  using SetStreamFn = int (*)(RawHandle, cudaStream_t);
  using GetVersionFn = int (*)(RawHandle, int*);
  // cublasGemmEx(handle, transa, transb, m, n, k, alpha, A, Atype, lda, B, Btype, ldb, beta, C, Ctype, ldc, computeType, algo)
  using GemmExFn = int (*)(RawHandle, int, int, int, int, int, const void*, const void*, cudaDataType, int, const void*, cudaDataType, int,
                           const void*, void*, cudaDataType, int, int, int);
  CreateFn create_ = nullptr;
  DestroyFn destroy_ = nullptr;
  SetStreamFn set_stream_ = nullptr;
  GemmExFn gemm_ex_ = nullptr;
  std::string description_;
};

}  // namespace ep::cuda
