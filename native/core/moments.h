// Streaming first and second moments of a random vector, in float64, mergeable: the measure stage feeds
// activations batch by batch and never holds them all; partial accumulators (threads, devices, batches)
// merge into exactly what one pass over all observations gives.
//
// Cancellation: sums are taken of x − c for a fixed shift c (the mean of the first batch), the "shifted
// data" algorithm, so Σ(x−c)(x−c)ᵀ − n·m·mᵀ does not lose the digits that the raw Σxxᵀ would for activations
// with large means. Cross-products go through BLAS dsyrk (upper triangle).
#pragma once
#include <cstdint>
#include <vector>

namespace ep {

class Moments {
 public:
  Moments() = default;
  explicit Moments(int dim);

  // Add n observations: rows of `x` (float32), row stride `stride` elements (>= dim).
  void add(const float* x, int64_t n, int64_t stride);
  void add(const double* x, int64_t n, int64_t stride);
  // this += other (same dim); shifts are reconciled exactly.
  void merge(const Moments& other);

  int dim() const { return dim_; }
  int64_t count() const { return n_; }
  std::vector<double> mean() const;
  // Population covariance (divided by n), full symmetric dim×dim, row-major.
  std::vector<double> covariance() const;

  // Raw state, for serialisation (analysis side files) and tests.
  const std::vector<double>& shift() const { return shift_; }
  const std::vector<double>& shifted_sum() const { return sum_; }
  const std::vector<double>& shifted_cross() const { return cross_; }  // upper triangle valid

 private:
  template <typename T>
  void add_rows(const T* x, int64_t n, int64_t stride);
  void add_shifted(const double* y, int64_t n);  // y rows already shifted, stride dim_
  int dim_ = 0;
  int64_t n_ = 0;
  bool has_shift_ = false;
  std::vector<double> shift_, sum_, cross_;
  std::vector<double> scratch_;
};

}  // namespace ep
