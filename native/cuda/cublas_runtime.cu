#include "cuda/cublas_runtime.cuh"
#include "cuda/gemm_mapping.h"

#include <dlfcn.h>

#include <climits>

namespace ep::cuda {

namespace {
// Values of the public cuBLAS enums (cublas_api.h), fixed by its ABI.
constexpr int kOpN = 0, kOpT = 1;
constexpr int kComputeF32 = 68;   // CUBLAS_COMPUTE_32F
constexpr int kGemmDefault = -1;  // CUBLAS_GEMM_DEFAULT
}  // namespace

Cublas& Cublas::get() {
  static Cublas instance;
  return instance;
}

Cublas::Cublas() {
  // Newest first; the unversioned name last (it exists only with the development package).
  const char* names[] = {"libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"};
  void* lib = nullptr;
  const char* found = nullptr;
  for (const char* n : names)
    if ((lib = dlopen(n, RTLD_NOW | RTLD_LOCAL))) {
      found = n;
      break;
    }
  if (!lib) {
    description_ = "cuBLAS not found (libcublas.so.11–13): entroprune's own GEMM kernels";
    return;
  }
  create_ = reinterpret_cast<CreateFn>(dlsym(lib, "cublasCreate_v2"));
  destroy_ = reinterpret_cast<DestroyFn>(dlsym(lib, "cublasDestroy_v2"));
  set_stream_ = reinterpret_cast<SetStreamFn>(dlsym(lib, "cublasSetStream_v2"));
  auto gemm = reinterpret_cast<GemmExFn>(dlsym(lib, "cublasGemmEx"));
  auto version = reinterpret_cast<GetVersionFn>(dlsym(lib, "cublasGetVersion_v2"));
  if (!create_ || !destroy_ || !set_stream_ || !gemm) {
    description_ = std::string(found) + " lacks cublasGemmEx: entroprune's own GEMM kernels";
    return;
  }
  // A first handle proves the library works on this machine and tells its version; it is not kept.
  RawHandle h = nullptr;
  if (create_(&h) != 0) {
    description_ = std::string(found) + ": cublasCreate failed: entroprune's own GEMM kernels";
    return;
  }
  int v = 0;
  if (version) version(h, &v);
  destroy_(h);
  description_ = "cuBLAS " + std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100) + " (" + found + ")";
  gemm_ex_ = gemm;  // available() only once a handle could be created
}

Cublas::Handle::~Handle() {
  if (h_) Cublas::get().destroy_(h_);
}

bool Cublas::Handle::create(std::string* error) {
  Cublas& lib = Cublas::get();
  if (!lib.available()) {
    if (error) *error = lib.description();
    return false;
  }
  if (lib.create_(&h_) != 0) {
    h_ = nullptr;
    if (error) *error = "cublasCreate failed";
    return false;
  }
  return true;
}

bool Cublas::linear(const Handle& handle, const void* x, const void* w, float* y, int64_t rows, int64_t in, int64_t out, cudaDataType type,
                    cudaStream_t stream, std::string* error) {
  if (!handle.get()) {
    if (error) *error = "no cuBLAS handle";
    return false;
  }
  if (rows > INT_MAX || in > INT_MAX || out > INT_MAX) {
    if (error) *error = "matrix too large for one cublasGemmEx call";
    return false;
  }
  set_stream_(handle.get(), stream);
  const ColumnMajorGemm g = linear_as_column_major_gemm(rows, in, out);  // A = W, B = X, C = Y (gemm_mapping.h)
  const float alpha = 1.0f, beta = 0.0f;
  const int st = gemm_ex_(handle.get(), g.trans_a ? kOpT : kOpN, g.trans_b ? kOpT : kOpN, static_cast<int>(g.m), static_cast<int>(g.n),
                          static_cast<int>(g.k), &alpha, w, type, static_cast<int>(g.lda), x, type, static_cast<int>(g.ldb), &beta, y,
                          CUDA_R_32F, static_cast<int>(g.ldc), kComputeF32, kGemmDefault);
  if (st != 0) {
    if (error) *error = "cublasGemmEx failed with status " + std::to_string(st);
    return false;
  }
  return true;
}

}  // namespace ep::cuda
