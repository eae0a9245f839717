// Random fixtures shared by the least-squares, refit-damage and layer-input tests: correlated samples with their
// sample moments, Gaussian weight matrices, token ids.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

namespace ep::test {

struct Samples {
  int64_t n, cols;
  std::vector<double> x;  // n × cols
  std::vector<double> mean, cov;  // sample mean, population covariance (cols × cols)
};

// x = A z + c (z standard normal): correlated units; with `diagonal`, A = diag(0.5, 1.5, …): uncorrelated ones.
inline Samples correlated_samples(int64_t n, int64_t cols, int seed, bool diagonal = false) {
  std::mt19937 g(seed);
  std::normal_distribution<double> nd(0, 1);
  std::vector<double> a(cols * cols, 0), c(cols);
  for (int64_t i = 0; i < cols; ++i)
    for (int64_t j = 0; j < cols; ++j) a[i * cols + j] = diagonal ? (i == j ? 0.5 + i : 0) : nd(g);
  for (double& v : c) v = nd(g);
  Samples s{n, cols, std::vector<double>(n * cols), std::vector<double>(cols, 0), std::vector<double>(cols * cols, 0)};
  std::vector<double> z(cols);
  for (int64_t t = 0; t < n; ++t) {
    for (double& v : z) v = nd(g);
    for (int64_t i = 0; i < cols; ++i) {
      double v = c[i];
      for (int64_t j = 0; j < cols; ++j) v += a[i * cols + j] * z[j];
      s.x[t * cols + i] = v;
    }
  }
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < cols; ++i) s.mean[i] += s.x[t * cols + i] / n;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < cols; ++i)
      for (int64_t j = 0; j < cols; ++j) s.cov[i * cols + j] += (s.x[t * cols + i] - s.mean[i]) * (s.x[t * cols + j] - s.mean[j]) / n;
  return s;
}

// rows × cols standard-normal floats, row-major
inline std::vector<float> random_weight(int64_t rows, int64_t cols, int seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> w(rows * cols);
  for (float& v : w) v = nd(g);
  return w;
}

// n token ids below `vocab`
inline std::vector<int32_t> random_tokens(int n, int vocab, int seed) {
  std::mt19937 g(seed);
  std::vector<int32_t> t(n);
  for (int32_t& v : t) v = static_cast<int32_t>(g() % vocab);
  return t;
}

}  // namespace ep::test
