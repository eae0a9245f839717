#include "core/measure/gaussian_entropy.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

extern "C" void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info);

namespace ep {

namespace {
// log det by Cholesky; false when not positive definite.
bool cholesky_logdet(std::vector<double> a, int k, double* out) {
  int info = 0;
  // Row-major symmetric == column-major symmetric: "L" here factors the same matrix.
  dpotrf_("L", &k, a.data(), &k, &info);
  if (info != 0) return false;
  double s = 0;
  for (int i = 0; i < k; ++i) s += std::log(a[static_cast<size_t>(i) * k + i]);
  *out = 2 * s;
  return true;
}
}  // namespace

LogDet log_det_spd(const std::vector<double>& cov, int k, double ridge) {
  if (k == 0) return {};
  double trace = 0;
  for (int i = 0; i < k; ++i) trace += cov[static_cast<size_t>(i) * k + i];
  return log_det_spd_absolute(cov, k, ridge * (trace / k));
}

LogDet log_det_spd_absolute(const std::vector<double>& cov, int k, double add) {
  LogDet r;
  if (k == 0) return r;
  std::vector<double> a = cov;
  for (int i = 0; i < k; ++i) a[static_cast<size_t>(i) * k + i] += add;
  if (!cholesky_logdet(a, k, &r.value))
    throw std::domain_error("covariance is not positive definite even with the ridge (degenerate or NaN activations)");
  double plain;
  r.ridge_effect = cholesky_logdet(cov, k, &plain) ? std::abs(r.value - plain) / std::max(1.0, std::abs(plain))
                                                    : std::numeric_limits<double>::quiet_NaN();
  return r;
}

double gaussian_entropy(const std::vector<double>& cov, int k, double ridge) {
  const double log2pie = std::log(2 * M_PI * M_E);
  return 0.5 * (k * log2pie + log_det_spd(cov, k, ridge).value);
}

std::vector<double> submatrix(const std::vector<double>& cov, int k, const std::vector<int>& index) {
  const size_t m = index.size();
  std::vector<double> s(m * m);
  for (size_t i = 0; i < m; ++i)
    for (size_t j = 0; j < m; ++j) s[i * m + j] = cov[static_cast<size_t>(index[i]) * k + index[j]];
  return s;
}

double joint_entropy(const std::vector<double>& cov, int k, const std::vector<int>& index, double ridge) {
  return gaussian_entropy(submatrix(cov, k, index), static_cast<int>(index.size()), ridge);
}

static std::vector<int> concat(std::vector<int> a, const std::vector<int>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

double conditional_entropy(const std::vector<double>& cov, int k, const std::vector<int>& z, const std::vector<int>& w, double ridge) {
  return joint_entropy(cov, k, concat(z, w), ridge) - joint_entropy(cov, k, w, ridge);
}

double conditional_mutual_information(const std::vector<double>& cov, int k, const std::vector<int>& y, const std::vector<int>& x,
                                      const std::vector<int>& z, double ridge, double* ridge_effect) {
  // One absolute ridge for all four terms (the joint (y, z, x) regularised once; every term is a principal
  // submatrix of it), so the value is the CMI of one Gaussian and never negative. The (2πe) factors cancel.
  const std::vector<int> all = concat(concat(y, z), x);
  const std::vector<double> joint = submatrix(cov, k, all);
  double trace = 0;
  for (size_t i = 0; i < all.size(); ++i) trace += joint[i * all.size() + i];
  const double add = ridge * trace / static_cast<double>(all.size());
  double worst = 0;
  auto ld = [&](const std::vector<int>& idx) {
    const LogDet d = log_det_spd_absolute(submatrix(cov, k, idx), static_cast<int>(idx.size()), add);
    worst = std::max(worst, std::isfinite(d.ridge_effect) ? d.ridge_effect : 1.0);  // not finite: the ridge decided the value
    return d.value;
  };
  const double v = 0.5 * (ld(concat(y, z)) - ld(z) - ld(all) + ld(concat(z, x)));
  if (ridge_effect) *ridge_effect = worst;
  return v;
}

double stream_transfer_entropy(const std::vector<double>& cov, int k, const std::vector<int>& x, const std::vector<int>& h, double noise, double ridge) {
  const std::vector<int> hx = concat(h, x);
  std::vector<double> K = submatrix(cov, k, hx);
  const int nh = static_cast<int>(h.size()), n = static_cast<int>(hx.size()), nx = n - nh;
  double trace_h = 0;
  for (int i = 0; i < nh; ++i) trace_h += K[static_cast<size_t>(i) * n + i];
  const double sigma2 = trace_h / nh, c = noise * sigma2, add = ridge * sigma2;
  // log det(Σ_{x|h} + cI) = log det([Σ_hh Σ_hx; Σ_xh Σ_xx + cI]) − log det(Σ_hh) (Schur complement)
  for (int i = 0; i < n; ++i) K[static_cast<size_t>(i) * n + i] += i < nh ? add : c;
  const double joint = log_det_spd_absolute(K, n, 0).value;
  const double cond = log_det_spd_absolute(submatrix(cov, k, h), nh, add).value;
  return 0.5 * (joint - cond - nx * std::log(c));
}

}  // namespace ep
