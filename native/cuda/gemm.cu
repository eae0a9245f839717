#include "cuda/gemm.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <algorithm>

#include "cuda/block_kernels.cuh"
#include "cuda/cublas_runtime.cuh"
#include "core/device/cuda_api.h"
#include "cuda/device_memory.cuh"

namespace ep::cuda {

namespace {

// ---- tensor-core fallback: one 64×64 tile of y per block of 4 warps, each warp 32×32 (2×2 WMMA fragments),
// k in steps of 32 through shared memory. Loads are bounds-checked and zero-filled, so any shape works
// (the tensor cores see padded 16×16×16 tiles).
constexpr int kTileM = 64, kTileN = 64, kTileK = 32;
constexpr int kPad = 8;  // shared rows of kTileK + 8 halves: 16-byte aligned for WMMA, fewer bank conflicts

template <typename T>
__global__ void wmma_linear_kernel(const T* __restrict__ x, const T* __restrict__ w, const float* __restrict__ bias, float* __restrict__ y,
                                   int64_t rows, int64_t in, int64_t out) {
  using namespace nvcuda;
  __shared__ __align__(32) T xs[kTileM][kTileK + kPad];
  __shared__ __align__(32) T ws[kTileN][kTileK + kPad];
  __shared__ __align__(32) float cs[4][32][32 + 4];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kTileM, n0 = static_cast<int64_t>(blockIdx.x) * kTileN;
  const int wm = (warp / 2) * 32, wn = (warp % 2) * 32;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
  const T zero = T(0.0f);
  for (int64_t k0 = 0; k0 < in; k0 += kTileK) {
    for (int e = threadIdx.x; e < kTileM * kTileK; e += blockDim.x) {
      const int r = e / kTileK, c = e % kTileK;
      const int64_t gk = k0 + c;
      xs[r][c] = (m0 + r < rows && gk < in) ? x[(m0 + r) * in + gk] : zero;
      ws[r][c] = (n0 + r < out && gk < in) ? w[(n0 + r) * in + gk] : zero;
    }
    __syncthreads();
    for (int kk = 0; kk < kTileK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> b[2];  // B = Wᵀ: W's rows are B's columns
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a[i], &xs[wm + 16 * i][kk], kTileK + kPad);
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(b[j], &ws[wn + 16 * j][kk], kTileK + kPad);
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) wmma::store_matrix_sync(&cs[warp][16 * i][16 * j], acc[i][j], 32 + 4, wmma::mem_row_major);
  __syncwarp();
  for (int e = lane; e < 32 * 32; e += 32) {
    const int r = e / 32, c = e % 32;
    const int64_t gr = m0 + wm + r, gc = n0 + wn + c;
    if (gr < rows && gc < out) y[gr * out + gc] = cs[warp][r][c] + (bias ? bias[gc] : 0.0f);
  }
}

// ---- float32 fallback: classic 16×16 shared-memory tiles (models stored in float32 analyzed at full precision).
constexpr int kTile32 = 16;

__global__ void f32_linear_kernel(const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ bias, float* __restrict__ y,
                                  int64_t rows, int64_t in, int64_t out) {
  __shared__ float xs[kTile32][kTile32 + 1];
  __shared__ float ws[kTile32][kTile32 + 1];
  const int64_t r = static_cast<int64_t>(blockIdx.y) * kTile32 + threadIdx.y;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kTile32 + threadIdx.x;
  const int64_t wrow = static_cast<int64_t>(blockIdx.x) * kTile32 + threadIdx.y;  // W row loaded by this thread
  float acc = 0;
  for (int64_t k0 = 0; k0 < in; k0 += kTile32) {
    xs[threadIdx.y][threadIdx.x] = (r < rows && k0 + threadIdx.x < in) ? x[r * in + k0 + threadIdx.x] : 0.0f;
    ws[threadIdx.y][threadIdx.x] = (wrow < out && k0 + threadIdx.x < in) ? w[wrow * in + k0 + threadIdx.x] : 0.0f;
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kTile32; ++k) acc += xs[threadIdx.y][k] * ws[threadIdx.x][k];
    __syncthreads();
  }
  if (r < rows && c < out) y[r * out + c] = acc + (bias ? bias[c] : 0.0f);
}

__global__ void add_bias_kernel(float* __restrict__ y, const float* __restrict__ bias, int64_t rows, int64_t out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < rows * out) y[i] += bias[i % out];
}

cudaDataType cuda_type(Precision p) {
  switch (p) {
    case Precision::kF32: return CUDA_R_32F;
    case Precision::kBF16: return CUDA_R_16BF;
    case Precision::kF16: return CUDA_R_16F;
  }
  return CUDA_R_32F;
}

}  // namespace

void linear_on_device(const void* x, const void* w, const float* bias, float* y, int64_t rows, int64_t in, int64_t out, Precision p,
                      const Cublas::Handle* blas, cudaStream_t stream) {
  if (rows == 0 || out == 0) return;
  if (blas && blas->get()) {
    std::string err;
    if (!Cublas::get().linear(*blas, x, w, y, rows, in, out, cuda_type(p), stream, &err)) throw CudaFailure{err};
    if (bias) {
      const int64_t n = rows * out;
      add_bias_kernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, stream>>>(y, bias, rows, out);
      check(cudaGetLastError(), "bias launch");
    }
    return;
  }
  // Row chunks keep the grid's y dimension under its 65535 limit.
  const int64_t chunk = 65535ll * kTile32;
  const int bytes = precision_bytes(p);
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    const int64_t n = std::min(chunk, rows - r0);
    const void* xr = static_cast<const char*>(x) + r0 * in * bytes;
    float* yr = y + r0 * out;
    if (p == Precision::kF32) {
      const dim3 grid(static_cast<unsigned>((out + kTile32 - 1) / kTile32), static_cast<unsigned>((n + kTile32 - 1) / kTile32));
      f32_linear_kernel<<<grid, dim3(kTile32, kTile32), 0, stream>>>(static_cast<const float*>(xr), static_cast<const float*>(w), bias, yr, n,
                                                                     in, out);
    } else {
      const dim3 grid(static_cast<unsigned>((out + kTileN - 1) / kTileN), static_cast<unsigned>((n + kTileM - 1) / kTileM));
      if (p == Precision::kBF16)
        wmma_linear_kernel<__nv_bfloat16><<<grid, 128, 0, stream>>>(static_cast<const __nv_bfloat16*>(xr),
                                                                     static_cast<const __nv_bfloat16*>(w), bias, yr, n, in, out);
      else
        wmma_linear_kernel<__half><<<grid, 128, 0, stream>>>(static_cast<const __half*>(xr), static_cast<const __half*>(w), bias, yr, n, in, out);
    }
    check(cudaGetLastError(), "linear launch");
  }
}

bool linear(const float* x, const float* w, const float* bias, float* y, int64_t rows, int64_t in, int64_t out, Precision precision,
            GemmBackend backend, std::string* error) {
  return run_on_gpu(error, [&] {
    DeviceBuffer<float> dx(rows * in), dw(out * in), dy(rows * out), db(bias ? out : 0);
    DeviceBuffer<char> lx(rows * in * precision_bytes(precision)), lw(out * in * precision_bytes(precision));
    dx.upload(x);
    dw.upload(w);
    if (bias) db.upload(bias);
    convert_from_f32(dx.get(), lx.get(), precision, rows * in, nullptr);
    convert_from_f32(dw.get(), lw.get(), precision, out * in, nullptr);
    Cublas::Handle handle;  // on the current device, for this call only
    if (backend != GemmBackend::kOwnKernels) {
      std::string why;
      if (!handle.create(&why) && backend == GemmBackend::kCublas) throw CudaFailure{"cuBLAS was requested but is unavailable: " + why};
    }
    linear_on_device(lx.get(), lw.get(), bias ? db.get() : nullptr, dy.get(), rows, in, out, precision, &handle, nullptr);
    check(cudaDeviceSynchronize(), "linear");
    dy.download(y);
  });
}

std::string gemm_backend_description() {
  return Cublas::get().description();  // names the library, or says why the own kernels run
}

}  // namespace ep::cuda
