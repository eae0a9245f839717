#include "cuda/block_kernels.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>

#include "cuda/device_memory.cuh"

namespace ep::cuda {

namespace {

constexpr int kThreads = 256;

unsigned blocks_for(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

template <typename T>
__device__ inline T from_float(float v) { return T(v); }
template <>
__device__ inline __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16(v); }
template <>
__device__ inline __half from_float<__half>(float v) { return __float2half(v); }

template <typename T>
__global__ void rmsnorm_kernel(const float* __restrict__ x, const float* __restrict__ w, T* __restrict__ y, int dim, float eps) {
  __shared__ float partial[kThreads];
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * dim;
  T* yr = y + static_cast<int64_t>(blockIdx.x) * dim;
  float s = 0;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) s += xr[i] * xr[i];
  partial[threadIdx.x] = s;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  const float scale = rsqrtf(partial[0] / dim + eps);
  for (int i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = from_float<T>(xr[i] * scale * w[i]);
}

template <typename T>
__global__ void convert_kernel(const float* __restrict__ in, T* __restrict__ out, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = from_float<T>(in[i]);
}

__global__ void rope_kernel(float* __restrict__ x, int64_t rows, int period, int n_heads, int hd, bool interleaved,
                            const float* __restrict__ cos_t, const float* __restrict__ sin_t) {
  const int half = hd / 2;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= rows * n_heads * half) return;
  const int i = static_cast<int>(idx % half);
  const int64_t rh = idx / half;  // row * n_heads + head
  const int64_t r = rh / n_heads;
  const int pos = static_cast<int>(r % period);
  float* v = x + rh * hd;
  const int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
  const float c = cos_t[static_cast<int64_t>(pos) * half + i], s = sin_t[static_cast<int64_t>(pos) * half + i];
  const float x0 = v[a], x1 = v[b];
  v[a] = x0 * c - x1 * s;
  v[b] = x0 * s + x1 * c;
}

// One warp per query, kWarps consecutive queries of one (sequence, head) per block sharing tiles of kKeyTile
// keys and values through shared memory. Each lane holds head elements lane, lane+32, …; a score is a warp
// reduction; softmax is online (running max and sum), so no score row is ever stored.
constexpr int kWarps = 8, kKeyTile = 16, kPerLane = kMaxHeadDim / 32;

__global__ void attention_kernel(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v, float* __restrict__ out,
                                 int seq_len, int nh, int nkv, int hd, int window, float scale) {
  extern __shared__ float shared[];
  float* ks = shared;                 // [kKeyTile][hd]
  float* vs = shared + kKeyTile * hd;  // [kKeyTile][hd]
  const int b = blockIdx.x / nh, h = blockIdx.x % nh, g = h / (nh / nkv);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int first_q = blockIdx.y * kWarps, i = first_q + warp;
  const int last_q = min(seq_len - 1, first_q + kWarps - 1);
  const bool active = i < seq_len;
  const int64_t row0 = static_cast<int64_t>(b) * seq_len;
  float qv[kPerLane], acc[kPerLane];
  for (int t = 0; t < kPerLane; ++t) {
    const int e = lane + 32 * t;
    qv[t] = (active && e < hd) ? q[(row0 + i) * nh * hd + h * hd + e] * scale : 0.0f;
    acc[t] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  const int j_begin = window > 0 ? max(0, first_q - window + 1) : 0;
  for (int j0 = j_begin; j0 <= last_q; j0 += kKeyTile) {
    for (int e = threadIdx.x; e < kKeyTile * hd; e += blockDim.x) {
      const int jj = e / hd, c = e % hd, j = j0 + jj;
      const bool in = j <= last_q;
      ks[e] = in ? k[(row0 + j) * nkv * hd + g * hd + c] : 0.0f;
      vs[e] = in ? v[(row0 + j) * nkv * hd + g * hd + c] : 0.0f;
    }
    __syncthreads();
    if (active) {
      for (int jj = 0; jj < kKeyTile; ++jj) {
        const int j = j0 + jj;
        if (j > i) break;
        if (window > 0 && j <= i - window) continue;
        float part = 0.0f;
        for (int t = 0; t < kPerLane; ++t) {
          const int e = lane + 32 * t;
          if (e < hd) part += qv[t] * ks[jj * hd + e];
        }
        for (int off = 16; off > 0; off /= 2) part += __shfl_xor_sync(0xffffffffu, part, off);
        const float m_new = fmaxf(m, part);
        const float corr = expf(m - m_new), p = expf(part - m_new);
        l = l * corr + p;
        for (int t = 0; t < kPerLane; ++t) {
          const int e = lane + 32 * t;
          if (e < hd) acc[t] = acc[t] * corr + p * vs[jj * hd + e];
        }
        m = m_new;
      }
    }
    __syncthreads();
  }
  if (!active) return;
  const float inv = 1.0f / l;
  for (int t = 0; t < kPerLane; ++t) {
    const int e = lane + 32 * t;
    if (e < hd) out[(row0 + i) * nh * hd + h * hd + e] = acc[t] * inv;
  }
}

__global__ void swiglu_kernel(float* __restrict__ gate, const float* __restrict__ up, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) {
    const float g = gate[i];
    gate[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

__global__ void add_kernel(float* __restrict__ x, const float* __restrict__ y, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] += y[i];
}

__global__ void bias_kernel(float* __restrict__ x, const float* __restrict__ b, int64_t rows, int n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < rows * n) x[i] += b[i % n];
}

// Block-wide reductions over kThreads threads (every thread gets the result).
__device__ float block_max(float v, float* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) shared[threadIdx.x] = fmaxf(shared[threadIdx.x], shared[threadIdx.x + w]);
    __syncthreads();
  }
  const float out = shared[0];
  __syncthreads();
  return out;
}
__device__ double block_sum(double v, double* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) shared[threadIdx.x] += shared[threadIdx.x + w];
    __syncthreads();
  }
  const double out = shared[0];
  __syncthreads();
  return out;
}
// log Σ exp(row) of one row by the calling block, shifted by its maximum (the CPU's log_sum_exp).
__device__ double row_log_sum_exp(const float* l, int V, float* fshared, double* dshared) {
  float m = -INFINITY;
  for (int v = threadIdx.x; v < V; v += blockDim.x) m = fmaxf(m, l[v]);
  const float top = block_max(m, fshared);
  double s = 0;
  for (int v = threadIdx.x; v < V; v += blockDim.x) s += expf(l[v] - top);
  return log(block_sum(s, dshared)) + top;
}

// One block per row: out = lg − log Σ exp(lg).
__global__ void log_softmax_kernel(const float* __restrict__ lg, float* __restrict__ out, int V) {
  __shared__ float f[kThreads];
  __shared__ double dsum[kThreads];
  const float* l = lg + static_cast<int64_t>(blockIdx.x) * V;
  float* o = out + static_cast<int64_t>(blockIdx.x) * V;
  const float lse = static_cast<float>(row_log_sum_exp(l, V, f, dsum));
  for (int v = threadIdx.x; v < V; v += blockDim.x) o[v] = l[v] - lse;
}

// One block per row: KL(p_ref ‖ softmax(lg)) = Σ exp(ref)·(ref − lg + lse), and the next token's loss.
__global__ void kl_next_token_kernel(const float* __restrict__ lg, const float* __restrict__ ref, int64_t row0, int T, int V,
                                     const int32_t* __restrict__ tokens, float* __restrict__ kl, float* __restrict__ nll) {
  __shared__ float f[kThreads];
  __shared__ double dsum[kThreads];
  const int64_t r = blockIdx.x, row = row0 + r;
  const float* l = lg + r * V;
  const float* p = ref + r * V;
  const double lse = row_log_sum_exp(l, V, f, dsum);
  double k = 0;
  for (int v = threadIdx.x; v < V; v += blockDim.x) k += exp(static_cast<double>(p[v])) * (static_cast<double>(p[v]) - (l[v] - lse));
  k = block_sum(k, dsum);
  if (threadIdx.x == 0) {
    kl[row] = static_cast<float>(fmax(0.0, k));
    const int t = static_cast<int>(row % T);
    if (t != T - 1) nll[(row / T) * (T - 1) + t] = static_cast<float>(lse - l[tokens[row + 1]]);
  }
}

// One block of kThreads per logits row: the row's maximum, then Σ exp(l − max) (exp in float, the sum in
// double, as the CPU's sum_exp_shift), then the loss of the target.
__global__ void next_token_nll_kernel(const float* __restrict__ lg, int64_t row0, int T, int V, const int32_t* __restrict__ tokens,
                                      float* __restrict__ nll, int32_t* __restrict__ argmax) {
  __shared__ float mx[kThreads];
  __shared__ int at[kThreads];
  __shared__ double sum[kThreads];
  const int64_t r = blockIdx.x, row = row0 + r;
  const int t = static_cast<int>(row % T);
  if (t == T - 1) return;  // the last position has no target inside the window (the whole block leaves)
  const float* l = lg + r * V;
  // the maximum and its first index (ties go to the lower index, as std::max_element's)
  float m = -INFINITY;
  int mi = V;
  for (int v = threadIdx.x; v < V; v += blockDim.x)
    if (l[v] > m || mi == V) m = l[v], mi = v;
  mx[threadIdx.x] = m;
  at[threadIdx.x] = mi;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) {
      const float o = mx[threadIdx.x + w];
      const int oi = at[threadIdx.x + w];
      if (o > mx[threadIdx.x] || (o == mx[threadIdx.x] && oi < at[threadIdx.x])) mx[threadIdx.x] = o, at[threadIdx.x] = oi;
    }
    __syncthreads();
  }
  const float top = mx[0];
  double s = 0;
  for (int v = threadIdx.x; v < V; v += blockDim.x) s += expf(l[v] - top);
  const double total = block_sum(s, sum);
  if (threadIdx.x == 0) {
    const int64_t at_out = (row / T) * (T - 1) + t;
    nll[at_out] = static_cast<float>(log(total) + top - l[tokens[row + 1]]);
    if (argmax) argmax[at_out] = at[0];
  }
}

void launched(const char* what) { check(cudaGetLastError(), what); }

}  // namespace

void rmsnorm_rows(const float* x, const float* w, void* out, Precision p, int64_t rows, int dim, float eps, cudaStream_t s) {
  if (rows == 0) return;
  // One block per row; rows beyond the 2^31−1 grid limit never occur (a run's rows fit in device memory).
  const unsigned grid = static_cast<unsigned>(rows);
  switch (p) {
    case Precision::kF32: rmsnorm_kernel<float><<<grid, kThreads, 0, s>>>(x, w, static_cast<float*>(out), dim, eps); break;
    case Precision::kBF16: rmsnorm_kernel<__nv_bfloat16><<<grid, kThreads, 0, s>>>(x, w, static_cast<__nv_bfloat16*>(out), dim, eps); break;
    case Precision::kF16: rmsnorm_kernel<__half><<<grid, kThreads, 0, s>>>(x, w, static_cast<__half*>(out), dim, eps); break;
  }
  launched("rmsnorm launch");
}

void convert_from_f32(const float* in, void* out, Precision p, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  switch (p) {
    case Precision::kF32: check(cudaMemcpyAsync(out, in, n * sizeof(float), cudaMemcpyDeviceToDevice, s), "copy"); return;
    case Precision::kBF16: convert_kernel<__nv_bfloat16><<<blocks_for(n), kThreads, 0, s>>>(in, static_cast<__nv_bfloat16*>(out), n); break;
    case Precision::kF16: convert_kernel<__half><<<blocks_for(n), kThreads, 0, s>>>(in, static_cast<__half*>(out), n); break;
  }
  launched("convert launch");
}

void rope_rows(float* x, int64_t rows, int period, int n_heads, int head_dim, bool interleaved, const float* cos_t, const float* sin_t,
               cudaStream_t s) {
  const int64_t n = rows * n_heads * (head_dim / 2);
  if (n == 0) return;
  rope_kernel<<<blocks_for(n), kThreads, 0, s>>>(x, rows, period, n_heads, head_dim, interleaved, cos_t, sin_t);
  launched("rope launch");
}

void causal_attention(const float* q, const float* k, const float* v, float* out, int n_seqs, int seq_len, int n_head, int n_kv_head,
                      int head_dim, int window, cudaStream_t s) {
  if (head_dim > kMaxHeadDim) throw CudaFailure{"head_dim " + std::to_string(head_dim) + " exceeds the CUDA attention kernel's 256"};
  const dim3 grid(static_cast<unsigned>(n_seqs * n_head), static_cast<unsigned>((seq_len + kWarps - 1) / kWarps));
  const size_t shared = 2 * kKeyTile * head_dim * sizeof(float);
  attention_kernel<<<grid, kWarps * 32, shared, s>>>(q, k, v, out, seq_len, n_head, n_kv_head, head_dim, window,
                                                     1.0f / std::sqrt(static_cast<float>(head_dim)));
  launched("attention launch");
}

void swiglu_rows(float* gate, const float* up, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  swiglu_kernel<<<blocks_for(n), kThreads, 0, s>>>(gate, up, n);
  launched("swiglu launch");
}

void add_rows(float* x, const float* y, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  add_kernel<<<blocks_for(n), kThreads, 0, s>>>(x, y, n);
  launched("add launch");
}

void add_bias_rows(float* x, const float* b, int64_t rows, int n, cudaStream_t s) {
  if (rows * n == 0) return;
  bias_kernel<<<blocks_for(rows * n), kThreads, 0, s>>>(x, b, rows, n);
  launched("bias launch");
}

void next_token_nll_rows(const float* lg, int64_t row0, int64_t rows, int T, int V, const int32_t* tokens, float* nll, int32_t* argmax,
                         cudaStream_t s) {
  if (rows <= 0) return;
  next_token_nll_kernel<<<static_cast<unsigned>(rows), kThreads, 0, s>>>(lg, row0, T, V, tokens, nll, argmax);
  launched("next-token loss launch");
}

void log_softmax_rows(const float* lg, float* out, int64_t rows, int V, cudaStream_t s) {
  if (rows <= 0) return;
  log_softmax_kernel<<<static_cast<unsigned>(rows), kThreads, 0, s>>>(lg, out, V);
  launched("log-softmax launch");
}

void kl_next_token_rows(const float* lg, const float* ref, int64_t row0, int64_t rows, int T, int V, const int32_t* tokens, float* kl, float* nll,
                        cudaStream_t s) {
  if (rows <= 0) return;
  kl_next_token_kernel<<<static_cast<unsigned>(rows), kThreads, 0, s>>>(lg, ref, row0, T, V, tokens, kl, nll);
  launched("divergence launch");
}

}  // namespace ep::cuda
