#include "core/capture/moments.h"

#include <cblas.h>

#include <algorithm>
#include <stdexcept>
#include <string>

namespace ep {

Moments::Moments(int dim, Accumulation mode) : dim_(dim), mode_(mode), shift_(dim, 0.0), sum_(dim, 0.0), cross_(static_cast<size_t>(dim) * dim, 0.0) {}

Moments::Moments(int dim, Accumulation mode, const MomentState& st) : Moments(dim, mode) {
  const size_t k = static_cast<size_t>(dim);
  if (st.shift.size() != k || st.sum.size() != k || st.cross.size() != k * k || st.n < 0)
    throw std::invalid_argument("Moments: raw state does not match dimension " + std::to_string(dim));
  n_ = st.n;
  has_shift_ = st.n > 0;
  shift_ = st.shift;
  sum_ = st.sum;
  cross_ = st.cross;
}

template <typename T>
void Moments::add_rows(const T* x, int64_t n, int64_t stride) {
  if (n <= 0) return;
  if (!has_shift_) {  // shift = mean of the first batch
    for (int64_t r = 0; r < n; ++r)
      for (int j = 0; j < dim_; ++j) shift_[j] += x[r * stride + j];
    for (int j = 0; j < dim_; ++j) shift_[j] /= static_cast<double>(n);
    has_shift_ = true;
  }
  if (mode_ == Accumulation::kBlockedFloat32) {
    // 4096 rows per float block: the block's O(dim²) float→double add then costs ~1/1000 of its ssyrk, and
    // a float sum over 4096 shifted rows still keeps ~1e-6 relative accuracy (the error grows ~√rows).
    constexpr int64_t kBlock = 4096;
    scratch_f_.resize(static_cast<size_t>(std::min(kBlock, n)) * dim_);
    cross_f_.resize(static_cast<size_t>(dim_) * dim_);
    shift_f_.assign(shift_.begin(), shift_.end());
    ones_f_.assign(static_cast<size_t>(std::min(kBlock, n)), 1.0f);
    sum_f_.resize(dim_);
    for (int64_t r0 = 0; r0 < n; r0 += kBlock) {
      const int64_t rows = std::min(kBlock, n - r0);
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < rows; ++r)
        for (int j = 0; j < dim_; ++j) scratch_f_[r * dim_ + j] = static_cast<float>(x[(r0 + r) * stride + j]) - shift_f_[j];
      // The sum uses the same rounded (x − c) as the products, so mean and cross-products stay consistent;
      // a BLAS column sum (1ᵀY) keeps it off the single-threaded path.
      cblas_sgemv(CblasRowMajor, CblasTrans, static_cast<int>(rows), dim_, 1.0f, scratch_f_.data(), dim_, ones_f_.data(), 1, 0.0f,
                  sum_f_.data(), 1);
      for (int j = 0; j < dim_; ++j) sum_[j] += sum_f_[j];
      cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, dim_, static_cast<int>(rows), 1.0f, scratch_f_.data(), dim_, 0.0f,
                  cross_f_.data(), dim_);
#pragma omp parallel for schedule(dynamic, 16)
      for (int i = 0; i < dim_; ++i)
        for (int j = i; j < dim_; ++j) cross_[static_cast<size_t>(i) * dim_ + j] += cross_f_[static_cast<size_t>(i) * dim_ + j];
      n_ += rows;
    }
    return;
  }
  // Convert in blocks of rows so the double scratch stays near 8 MiB.
  const int64_t block = std::max<int64_t>(1, (int64_t(8) << 20) / (8 * std::max(1, dim_)));
  scratch_.resize(static_cast<size_t>(std::min(block, n)) * dim_);
  for (int64_t r0 = 0; r0 < n; r0 += block) {
    const int64_t rows = std::min(block, n - r0);
    for (int64_t r = 0; r < rows; ++r)
      for (int j = 0; j < dim_; ++j) scratch_[r * dim_ + j] = static_cast<double>(x[(r0 + r) * stride + j]) - shift_[j];
    add_shifted(scratch_.data(), rows);
  }
}

void Moments::add(const float* x, int64_t n, int64_t stride) { add_rows(x, n, stride); }
void Moments::add(const double* x, int64_t n, int64_t stride) { add_rows(x, n, stride); }

void Moments::add_shifted(const double* y, int64_t n) {
  for (int64_t r = 0; r < n; ++r)
    for (int j = 0; j < dim_; ++j) sum_[j] += y[r * dim_ + j];
  // cross (upper) += yᵀ y
  cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, dim_, static_cast<int>(n), 1.0, y, dim_, 1.0, cross_.data(), dim_);
  n_ += n;
}

void Moments::merge(const Moments& o) {
  if (o.dim_ != dim_) throw std::invalid_argument("Moments::merge: dimensions differ");
  if (o.n_ == 0) return;
  if (n_ == 0) {
    *this = o;
    return;
  }
  // Re-express o's sums around our shift: y' = y + δ with δ = c_o − c.
  std::vector<double> delta(dim_);
  for (int j = 0; j < dim_; ++j) delta[j] = o.shift_[j] - shift_[j];
  const double on = static_cast<double>(o.n_);
  for (int i = 0; i < dim_; ++i)
    for (int j = i; j < dim_; ++j)
      cross_[static_cast<size_t>(i) * dim_ + j] += o.cross_[static_cast<size_t>(i) * dim_ + j] + o.sum_[i] * delta[j] +
                                                   delta[i] * o.sum_[j] + on * delta[i] * delta[j];
  for (int j = 0; j < dim_; ++j) sum_[j] += o.sum_[j] + on * delta[j];
  n_ += o.n_;
}

std::vector<double> Moments::mean() const {
  std::vector<double> m(dim_, 0.0);
  if (n_ == 0) return m;
  for (int j = 0; j < dim_; ++j) m[j] = shift_[j] + sum_[j] / static_cast<double>(n_);
  return m;
}

std::vector<double> Moments::covariance() const {
  std::vector<double> c(static_cast<size_t>(dim_) * dim_, 0.0);
  if (n_ == 0) return c;
  const double n = static_cast<double>(n_);
  for (int i = 0; i < dim_; ++i)
    for (int j = i; j < dim_; ++j) {
      const double v = cross_[static_cast<size_t>(i) * dim_ + j] / n - (sum_[i] / n) * (sum_[j] / n);
      c[static_cast<size_t>(i) * dim_ + j] = v;
      c[static_cast<size_t>(j) * dim_ + i] = v;
    }
  return c;
}

}  // namespace ep
