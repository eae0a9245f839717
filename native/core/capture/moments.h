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

#include "core/capture/block_statistics.h"

namespace ep {

// How cross-products are formed. kFloat64: every product in double (dsyrk) — exact streaming/merging to
// rounding, used for small vectors. kBlockedFloat32: ssyrk over blocks of 4096 shifted rows (twice the SIMD
// width of dsyrk), each block's float result added into the float64 accumulator — relative error ~1e-6,
// used for the wide joint (y, h, a, m) moments where throughput matters.
enum class Accumulation { kFloat64, kBlockedFloat32 };

class Moments {
 public:
  Moments() = default;
  explicit Moments(int dim, Accumulation mode = Accumulation::kFloat64);
  // An accumulator holding raw state summed elsewhere (e.g. on the GPU): merge() it into another.
  // Throws std::invalid_argument when the vectors do not have the sizes `dim` implies.
  Moments(int dim, Accumulation mode, const MomentState& state);
  MomentState state() const { return {n_, shift_, sum_, cross_}; }

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
  Accumulation mode_ = Accumulation::kFloat64;
  int64_t n_ = 0;
  bool has_shift_ = false;
  std::vector<double> shift_, sum_, cross_;
  std::vector<double> scratch_;
  std::vector<float> scratch_f_, cross_f_, shift_f_, ones_f_, sum_f_;
};

}  // namespace ep
