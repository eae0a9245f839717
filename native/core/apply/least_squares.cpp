#include "core/apply/least_squares.h"

#include <cblas.h>

#include <algorithm>
#include <stdexcept>

// LAPACK (OpenBLAS): Cholesky factorisation and the solve with its factor, column-major.
extern "C" void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info);
extern "C" void dpotrs_(const char* uplo, const int* n, const int* nrhs, const double* a, const int* lda, double* b, const int* ldb, int* info);

namespace ep {

ColumnRefit refit_kept_columns(const float* w, int64_t rows, int64_t cols, const std::vector<int64_t>& kept, const std::vector<double>& mean,
                               const std::vector<double>& cov, double damping) {
  const int64_t k = static_cast<int64_t>(kept.size());
  if (k == 0 || rows <= 0 || cols <= 0) throw std::invalid_argument("refit_kept_columns: nothing kept");
  if (static_cast<int64_t>(mean.size()) != cols || static_cast<int64_t>(cov.size()) != cols * cols)
    throw std::invalid_argument("refit_kept_columns: mean/covariance do not match the weight's columns");
  // W as a column-major cols × rows matrix is the row-major rows × cols one read as is: Wᵀ.
  std::vector<double> wt(static_cast<size_t>(rows * cols));
  for (int64_t i = 0; i < rows * cols; ++i) wt[i] = w[i];
  // S = Σ_{K,:} (k × cols, column-major) and B = S · Wᵀ = Σ_{K,:} Wᵀ (k × rows, column-major).
  std::vector<double> s(static_cast<size_t>(k * cols));
  for (int64_t j = 0; j < cols; ++j)
    for (int64_t i = 0; i < k; ++i) s[i + j * k] = cov[kept[i] * cols + j];
  std::vector<double> rhs(static_cast<size_t>(k * rows));
  cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(k), static_cast<int>(rows), static_cast<int>(cols), 1.0, s.data(),
              static_cast<int>(k), wt.data(), static_cast<int>(cols), 0.0, rhs.data(), static_cast<int>(k));
  double trace = 0;
  for (int64_t i = 0; i < k; ++i) trace += cov[kept[i] * cols + kept[i]];
  ColumnRefit out;
  out.weight.resize(static_cast<size_t>(rows * k));
  out.shift.assign(static_cast<size_t>(rows), 0.0);
  const int kk = static_cast<int>(k), nr = static_cast<int>(rows);
  std::vector<double> a(static_cast<size_t>(k * k));
  // The asked damping first, then ten times more per retry (from 1e-6 when none was asked), four retries.
  std::vector<double> dampings{damping};
  for (double lambda = std::max(damping, 1e-7) * 10; dampings.size() < 5; lambda *= 10) dampings.push_back(lambda);
  for (double lambda : dampings) {
    if (out.refitted) break;
    for (int64_t c = 0; c < k; ++c)
      for (int64_t r = 0; r < k; ++r) a[r + c * k] = cov[kept[r] * cols + kept[c]];
    const double ridge = lambda * trace / static_cast<double>(k);
    for (int64_t i = 0; i < k; ++i) a[i + i * k] += ridge;
    int info = 0;
    dpotrf_("L", &kk, a.data(), &kk, &info);
    if (info != 0) continue;
    // X = (Σ_KK + rI)⁻¹ (Σ_{K,:} Wᵀ + r W_Kᵀ): the ridge pulls W' toward the kept columns as they are (the bias
    // compensation's W'), not toward zero. Column o of X is row o of W', so X's layout is W' row-major.
    std::vector<double> x = rhs;
    for (int64_t o = 0; o < rows; ++o)
      for (int64_t i = 0; i < k; ++i) x[i + o * k] += ridge * w[o * cols + kept[i]];
    dpotrs_("L", &kk, &nr, a.data(), &kk, x.data(), &kk, &info);
    if (info != 0) continue;
    for (int64_t i = 0; i < rows * k; ++i) out.weight[i] = static_cast<float>(x[i]);
    out.damping = lambda;
    out.refitted = true;
  }
  if (!out.refitted)  // the paper's compensation: the kept columns as they are
    for (int64_t o = 0; o < rows; ++o)
      for (int64_t i = 0; i < k; ++i) out.weight[o * k + i] = w[o * cols + kept[i]];
  // b = W μ − W' μ_K, with W' as rounded to float (the weight the output will hold)
  for (int64_t o = 0; o < rows; ++o) {
    double full = 0, part = 0;
    for (int64_t j = 0; j < cols; ++j) full += static_cast<double>(w[o * cols + j]) * mean[j];
    for (int64_t i = 0; i < k; ++i) part += static_cast<double>(out.weight[o * k + i]) * mean[kept[i]];
    out.shift[o] = full - part;
  }
  return out;
}

}  // namespace ep
