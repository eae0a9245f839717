#include "cuda/moment_kernels.cuh"

#include "cuda/device_memory.cuh"

namespace ep::cuda {

namespace {

constexpr int kTile = 32;  // 32×32 tiles; grouped_cross steps through 32 rows at a time

// cross[g][i][j] += Σ_r (x[r, g·G+i] − c)(x[r, g·G+j] − c) in float64 for the upper triangle of tiles of
// every group g (blockIdx.z); lower tiles mirror the upper ones. Twin of dsyrk in ep::Moments::add.
__global__ void grouped_cross_kernel(const float* __restrict__ x, int64_t n, int64_t ld, int group, const double* __restrict__ shift,
                                     double* __restrict__ cross) {
  const int ti = blockIdx.y, tj = blockIdx.x, g = blockIdx.z;
  if (tj < ti) return;
  __shared__ double a[kTile][kTile + 1];
  __shared__ double b[kTile][kTile + 1];
  const int col0 = g * group;
  const int ca = ti * kTile + threadIdx.x, cb = tj * kTile + threadIdx.x;  // columns (within the group) this thread loads
  const double sa = ca < group ? shift[col0 + ca] : 0.0, sb = cb < group ? shift[col0 + cb] : 0.0;
  double acc = 0;
  for (int64_t r0 = 0; r0 < n; r0 += kTile) {
    const int64_t r = r0 + threadIdx.y;
    a[threadIdx.y][threadIdx.x] = (r < n && ca < group) ? static_cast<double>(x[r * ld + col0 + ca]) - sa : 0.0;
    b[threadIdx.y][threadIdx.x] = (r < n && cb < group) ? static_cast<double>(x[r * ld + col0 + cb]) - sb : 0.0;
    __syncthreads();
#pragma unroll 8
    for (int t = 0; t < kTile; ++t) acc += a[t][threadIdx.y] * b[t][threadIdx.x];
    __syncthreads();
  }
  const int i = ti * kTile + threadIdx.y, j = tj * kTile + threadIdx.x;
  if (i < group && j < group) {
    double* c = cross + static_cast<int64_t>(g) * group * group;
    c[static_cast<int64_t>(i) * group + j] += acc;
    if (ti != tj) c[static_cast<int64_t>(j) * group + i] += acc;
  }
}

// sum[j] += Σ_r (x[r, j] − shift[j]) and sumsq[j] += Σ_r (x[r, j] − shift[j])², in float64; shift and sumsq
// may be null. One thread per column, rows in order. Twin of ChannelStats::add and the capture's a/m sums.
__global__ void column_sums_kernel(const float* __restrict__ x, int64_t n, int k, int64_t ld, const double* __restrict__ shift,
                                   double* __restrict__ sum, double* __restrict__ sumsq) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= k) return;
  const double c = shift ? shift[j] : 0.0;
  double s = 0, s2 = 0;
  for (int64_t r = 0; r < n; ++r) {
    const double v = static_cast<double>(x[r * ld + j]) - c;
    s += v;
    s2 += v * v;
  }
  sum[j] += s;
  if (sumsq) sumsq[j] += s2;
}

__global__ void scale_kernel(double* __restrict__ v, int k, double s) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j < k) v[j] *= s;
}

// out[j, r] = float(x[r, j]) − float(shift[j]) for a chunk of rows: the shifted rows, transposed so that one
// GEMM (y = X·Xᵀ in linear_on_device's terms) forms their cross-products. 32×32 tiles through shared memory.
__global__ void shift_transpose_kernel(const float* __restrict__ x, int64_t n, int k, const double* __restrict__ shift,
                                       float* __restrict__ out) {
  __shared__ float t[kTile][kTile + 1];
  const int64_t r = static_cast<int64_t>(blockIdx.y) * kTile + threadIdx.y;
  const int j = blockIdx.x * kTile + threadIdx.x;
  if (r < n && j < k) t[threadIdx.y][threadIdx.x] = x[r * k + j] - static_cast<float>(shift[j]);
  __syncthreads();
  const int jo = blockIdx.x * kTile + threadIdx.y;
  const int64_t ro = static_cast<int64_t>(blockIdx.y) * kTile + threadIdx.x;
  if (jo < k && ro < n) out[static_cast<int64_t>(jo) * n + ro] = t[threadIdx.x][threadIdx.y];
}

// sum[j] += Σ_r xt[j, r] in float64: one block per row of the transposed chunk, a fixed-shape tree.
__global__ void row_sums_kernel(const float* __restrict__ xt, int64_t n, double* __restrict__ sum) {
  __shared__ double part[256];
  const int j = blockIdx.x;
  double s = 0;
  for (int64_t r = threadIdx.x; r < n; r += blockDim.x) s += xt[static_cast<int64_t>(j) * n + r];
  part[threadIdx.x] = s;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) part[threadIdx.x] += part[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) sum[j] += part[0];
}

__global__ void add_into_f64_kernel(const float* __restrict__ g, int64_t n, double* __restrict__ acc) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) acc[i] += g[i];
}

// cos(h_in[r], h_out[r]) per row in float64 (NaN when the output row is not finite) — twin of the cosine in
// StatisticsCapture::block_output.
__global__ void row_cosines_kernel(const float* __restrict__ h_in, const float* __restrict__ h_out, int d, double* __restrict__ cos_rows) {
  __shared__ double dot[256], na[256], nb[256];
  const int64_t r = blockIdx.x;
  double sd = 0, sa = 0, sb = 0;
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    const double x = h_in[r * d + j], y = h_out[r * d + j];
    sd += x * y;
    sa += x * x;
    sb += y * y;
  }
  dot[threadIdx.x] = sd, na[threadIdx.x] = sa, nb[threadIdx.x] = sb;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) {
      dot[threadIdx.x] += dot[threadIdx.x + w];
      na[threadIdx.x] += na[threadIdx.x + w];
      nb[threadIdx.x] += nb[threadIdx.x + w];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) cos_rows[r] = isfinite(nb[0]) ? dot[0] / fmax(1e-30, sqrt(na[0] * nb[0])) : nan("");
}

unsigned blocks_for(int64_t n, int threads) { return static_cast<unsigned>((n + threads - 1) / threads); }

}  // namespace

void grouped_cross(const float* x, int64_t n, int64_t ld, int groups, int group, const double* shift, double* cross, cudaStream_t s) {
  if (n <= 0 || groups <= 0 || group <= 0) return;
  const unsigned tiles = blocks_for(group, kTile);
  grouped_cross_kernel<<<dim3(tiles, tiles, groups), dim3(kTile, kTile), 0, s>>>(x, n, ld, group, shift, cross);
  check(cudaGetLastError(), "grouped_cross launch");
}

void column_sums(const float* x, int64_t n, int k, int64_t ld, const double* shift, double* sum, double* sumsq, cudaStream_t s) {
  if (n <= 0 || k <= 0) return;
  column_sums_kernel<<<blocks_for(k, 256), 256, 0, s>>>(x, n, k, ld, shift, sum, sumsq);
  check(cudaGetLastError(), "column_sums launch");
}

void column_means(const float* x, int64_t n, int k, int64_t ld, double* out, cudaStream_t s) {
  if (n <= 0 || k <= 0) return;
  check(cudaMemsetAsync(out, 0, k * sizeof(double), s), "column_means");
  column_sums(x, n, k, ld, nullptr, out, nullptr, s);
  scale_kernel<<<blocks_for(k, 256), 256, 0, s>>>(out, k, 1.0 / static_cast<double>(n));
  check(cudaGetLastError(), "column_means launch");
}

void shifted_transpose(const float* x, int64_t n, int k, const double* shift, float* out, cudaStream_t s) {
  if (n <= 0 || k <= 0) return;
  shift_transpose_kernel<<<dim3(blocks_for(k, kTile), blocks_for(n, kTile)), dim3(kTile, kTile), 0, s>>>(x, n, k, shift, out);
  check(cudaGetLastError(), "shifted_transpose launch");
}

void row_sums(const float* xt, int k, int64_t n, double* sum, cudaStream_t s) {
  if (n <= 0 || k <= 0) return;
  row_sums_kernel<<<k, 256, 0, s>>>(xt, n, sum);
  check(cudaGetLastError(), "row_sums launch");
}

void add_into_f64(const float* g, int64_t n, double* acc, cudaStream_t s) {
  if (n <= 0) return;
  add_into_f64_kernel<<<blocks_for(n, 256), 256, 0, s>>>(g, n, acc);
  check(cudaGetLastError(), "add_into_f64 launch");
}

void row_cosines(const float* h_in, const float* h_out, int64_t rows, int d, double* cos_rows, cudaStream_t s) {
  if (rows <= 0) return;
  row_cosines_kernel<<<static_cast<unsigned>(rows), 256, 0, s>>>(h_in, h_out, d, cos_rows);
  check(cudaGetLastError(), "row_cosines launch");
}

}  // namespace ep::cuda
