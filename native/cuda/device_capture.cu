// The fused GPU capture (device_capture.cuh): the order of the CPU capture's steps, with the kernels of
// moment_kernels.cuh on the runner's stream.
#include "cuda/device_capture.cuh"

#include <algorithm>
#include <cmath>

#include "core/capture/capture.h"  // NonFiniteActivations (header-only)
#include "cuda/gemm.cuh"
#include "cuda/moment_kernels.cuh"

namespace ep::cuda {

namespace {
constexpr int64_t kChunkRows = 4096;  // float32 products: rows per GEMM (the CPU's blocked ssyrk uses the same)
}  // namespace

DeviceCapture::DeviceCapture(const ModelConfig& c, const CaptureLayout& layout, int64_t max_rows, DeviceArena& arena, const Cublas::Handle* blas,
                             cudaStream_t stream)
    : c_(c), r_(layout.joint_dim), f64_products_(layout.float64_products), max_rows_(max_rows), blas_(blas), stream_(stream) {
  const int d = c.dim, k = 4 * r_;
  const bool projected = !layout.projection.empty();
  if (r_ <= 0 || (projected ? layout.projection.size() != static_cast<size_t>(d) * r_ : r_ != d))
    throw CudaFailure{"fused capture: the projection does not match the model's dimension"};
  int max_qd = 0, max_ffn = 0;
  for (const LayerShape& s : c.layers) max_qd = std::max(max_qd, s.n_head * c.head_dim), max_ffn = std::max(max_ffn, s.ffn);
  joint_rows_ = arena.array<float>(max_rows * k);
  h_in_ = arena.array<float>(max_rows * d);
  proj_out_ = projected ? arena.array<float>(max_rows * r_) : nullptr;
  chunk_t_ = f64_products_ ? nullptr : arena.array<float>(static_cast<int64_t>(k) * std::min(kChunkRows, max_rows));
  gram_ = f64_products_ ? nullptr : arena.array<float>(static_cast<int64_t>(k) * k);
  cos_rows_ = arena.array<double>(max_rows);
  attn_sum_ = arena.array<double>(d);
  mlp_sum_ = arena.array<double>(d);
  channel_shift_ = arena.array<double>(std::max(1, max_ffn));
  channel_sum_ = arena.array<double>(std::max(1, max_ffn));
  channel_sumsq_ = arena.array<double>(std::max(1, max_ffn));
  joint_ = {k, k, 0, arena.array<double>(k), arena.array<double>(k), arena.array<double>(static_cast<int64_t>(k) * k)};
  const int64_t head_cross = static_cast<int64_t>(std::max(1, max_qd)) * c.head_dim;  // n_head · hd²
  heads_ = {0, c.head_dim, 0, arena.array<double>(std::max(1, max_qd)), arena.array<double>(std::max(1, max_qd)), arena.array<double>(head_cross)};
  if (projected) {  // upload Pᵀ (r×d): linear_on_device computes x·Wᵀ with W = Pᵀ
    std::vector<float> pt(static_cast<size_t>(r_) * d);
    for (int i = 0; i < d; ++i)
      for (int j = 0; j < r_; ++j) pt[static_cast<size_t>(j) * d + i] = layout.projection[static_cast<size_t>(i) * r_ + j];
    projection_t_ = arena.array<float>(static_cast<int64_t>(r_) * d);
    check(cudaMemcpyAsync(projection_t_, pt.data(), pt.size() * sizeof(float), cudaMemcpyHostToDevice, stream_), "upload projection");
    check(cudaStreamSynchronize(stream_), "upload projection");
  }
  cos_host_.resize(max_rows);
}

void DeviceCapture::clear(Accumulator& acc) {
  const int64_t groups = acc.group ? acc.dim / acc.group : 0;
  check(cudaMemsetAsync(acc.shift, 0, std::max(1, acc.dim) * sizeof(double), stream_), "clear capture");
  check(cudaMemsetAsync(acc.sum, 0, std::max(1, acc.dim) * sizeof(double), stream_), "clear capture");
  check(cudaMemsetAsync(acc.cross, 0, std::max<int64_t>(1, groups * acc.group * acc.group) * sizeof(double), stream_), "clear capture");
  acc.n = 0;
}

void DeviceCapture::begin_block(int l) {
  l_ = l;
  const LayerShape& s = c_.layers[l];
  heads_.dim = s.n_head * c_.head_dim;
  clear(joint_);
  clear(heads_);
  for (double* p : {attn_sum_, mlp_sum_}) check(cudaMemsetAsync(p, 0, c_.dim * sizeof(double), stream_), "clear capture");
  for (double* p : {channel_shift_, channel_sum_, channel_sumsq_})
    check(cudaMemsetAsync(p, 0, std::max(1, s.ffn) * sizeof(double), stream_), "clear capture");
  channel_n_ = 0;
  cos_sum_ = 0;
}

void DeviceCapture::project_into_joint(const float* x, int64_t rows, int part) {
  const float* src = x;
  if (projection_t_) {
    linear_on_device(x, projection_t_, nullptr, proj_out_, rows, c_.dim, r_, Precision::kF32, blas_, stream_);
    src = proj_out_;
  }
  check(cudaMemcpy2DAsync(joint_rows_ + static_cast<int64_t>(part) * r_, 4 * r_ * sizeof(float), src, r_ * sizeof(float), r_ * sizeof(float), rows,
                          cudaMemcpyDeviceToDevice, stream_),
        "capture: joint part");
}

void DeviceCapture::block_input(const float* h, int64_t rows, const float* y_projected_host) {
  if (l_ < 0 || rows > max_rows_) throw CudaFailure{"fused capture: batch before begin_block or larger than sized for"};
  rows_ = rows;
  // parts a and m stay zero for a block without attention or MLP, as the CPU capture's buffers do
  check(cudaMemsetAsync(joint_rows_, 0, rows * 4 * r_ * sizeof(float), stream_), "capture: clear joint rows");
  check(cudaMemcpy2DAsync(joint_rows_, 4 * r_ * sizeof(float), y_projected_host, r_ * sizeof(float), r_ * sizeof(float), rows,
                          cudaMemcpyHostToDevice, stream_),
        "capture: upload projected y");
  check(cudaMemcpyAsync(h_in_, h, rows * c_.dim * sizeof(float), cudaMemcpyDeviceToDevice, stream_), "capture: keep block input");
  project_into_joint(h_in_, rows, 1);
}

void DeviceCapture::set_shift_if_first(Accumulator& acc, const float* x, int64_t rows, int64_t ld) {
  if (acc.n > 0 || rows == 0) return;
  column_means(x, rows, acc.dim, ld, acc.shift, stream_);
}

void DeviceCapture::accumulate_grouped(Accumulator& acc, const float* x, int64_t rows, int64_t ld) {
  grouped_cross(x, rows, ld, acc.dim / acc.group, acc.group, acc.shift, acc.cross, stream_);
  column_sums(x, rows, acc.dim, ld, acc.shift, acc.sum, nullptr, stream_);
  acc.n += rows;
}

void DeviceCapture::accumulate_chunked_f32(Accumulator& acc, const float* x, int64_t rows) {
  const int k = acc.dim;
  for (int64_t r0 = 0; r0 < rows; r0 += kChunkRows) {
    const int64_t n = std::min(kChunkRows, rows - r0);
    shifted_transpose(x + r0 * k, n, k, acc.shift, chunk_t_, stream_);
    row_sums(chunk_t_, k, n, acc.sum, stream_);
    linear_on_device(chunk_t_, chunk_t_, nullptr, gram_, k, n, k, Precision::kF32, blas_, stream_);  // (X−c)ᵀ(X−c) of the chunk
    add_into_f64(gram_, static_cast<int64_t>(k) * k, acc.cross, stream_);
    acc.n += n;
  }
}

void DeviceCapture::attn_heads(const float* att, int64_t rows) {
  set_shift_if_first(heads_, att, rows, heads_.dim);
  accumulate_grouped(heads_, att, rows, heads_.dim);
}

void DeviceCapture::attn_output(const float* a, int64_t rows) {
  project_into_joint(a, rows, 2);
  column_sums(a, rows, c_.dim, c_.dim, nullptr, attn_sum_, nullptr, stream_);
}

void DeviceCapture::mlp_act(const float* act, int64_t rows) {
  const int f = c_.layers[l_].ffn;
  if (channel_n_ == 0) column_means(act, rows, f, f, channel_shift_, stream_);
  column_sums(act, rows, f, f, channel_shift_, channel_sum_, channel_sumsq_, stream_);
  channel_n_ += rows;
}

void DeviceCapture::mlp_output(const float* m, int64_t rows) {
  project_into_joint(m, rows, 3);
  column_sums(m, rows, c_.dim, c_.dim, nullptr, mlp_sum_, nullptr, stream_);
}

void DeviceCapture::block_output(const float* h, int64_t rows) {
  row_cosines(h_in_, h, rows, c_.dim, cos_rows_, stream_);
  check(cudaMemcpyAsync(cos_host_.data(), cos_rows_, rows * sizeof(double), cudaMemcpyDeviceToHost, stream_), "capture: cosines");
  check(cudaStreamSynchronize(stream_), "capture: cosines");
  for (int64_t r = 0; r < rows; ++r)  // a non-finite output stops the run before it reaches any moment
    if (std::isnan(cos_host_[r])) throw NonFiniteActivations(l_);
  for (int64_t r = 0; r < rows; ++r) cos_sum_ += cos_host_[r];
  set_shift_if_first(joint_, joint_rows_, rows, 4 * r_);
  if (f64_products_)
    accumulate_grouped(joint_, joint_rows_, rows, 4 * r_);
  else
    accumulate_chunked_f32(joint_, joint_rows_, rows);
}

std::vector<double> DeviceCapture::fetch(const double* dev, int64_t n) const {
  std::vector<double> v(n);
  check(cudaMemcpyAsync(v.data(), dev, n * sizeof(double), cudaMemcpyDeviceToHost, stream_), "download capture");
  return v;
}

MomentState DeviceCapture::download(const Accumulator& acc, int group_index) const {
  const int64_t g = acc.group;
  return {acc.n, fetch(acc.shift + group_index * g, g), fetch(acc.sum + group_index * g, g), fetch(acc.cross + group_index * g * g, g * g)};
}

BlockStatistics DeviceCapture::take() {
  if (l_ < 0) throw CudaFailure{"fused capture: take before begin_block"};
  const LayerShape& s = c_.layers[l_];
  BlockStatistics out;
  out.joint = download(joint_, 0);
  for (int h = 0; h < s.n_head; ++h) out.heads.push_back(download(heads_, h));
  if (s.ffn > 0) {
    out.channels.n = channel_n_;
    out.channels.shift = fetch(channel_shift_, s.ffn);
    out.channels.sum = fetch(channel_sum_, s.ffn);
    out.channels.sumsq = fetch(channel_sumsq_, s.ffn);
  }
  if (s.n_head > 0) out.attn_sum = fetch(attn_sum_, c_.dim);
  if (s.ffn > 0) out.mlp_sum = fetch(mlp_sum_, c_.dim);
  check(cudaStreamSynchronize(stream_), "download capture");  // every fetch above has landed
  out.cosine_sum = cos_sum_;
  begin_block(l_);
  return out;
}

}  // namespace ep::cuda
