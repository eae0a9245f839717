// Entropies under the Gaussian assumption (docs/METHOD.md section 1):
//   H(z) = ½·log((2πe)^k · det Σ),  H(z|w) = H(z,w) − H(w),  I(y;x|z) = H(y,z) − H(z) − H(y,z,x) + H(z,x).
// log det through Cholesky (LAPACK dpotrf) of Σ + λ·(tr Σ / k)·I; `ridge_effect` reports how much the ridge
// moved the log det relative to the unridged value (NaN when Σ itself is not positive definite).
#pragma once
#include <vector>

namespace ep {

struct LogDet {
  double value = 0;
  double ridge_effect = 0;  // |logdet(Σ+ridge) − logdet(Σ)| / max(1, |logdet(Σ)|)
};

constexpr double kDefaultRidge = 1e-6;

// cov: k×k row-major symmetric. Throws std::domain_error if even the ridged matrix is not positive definite.
LogDet log_det_spd(const std::vector<double>& cov, int k, double ridge = kDefaultRidge);
// The same with an absolute ridge: Σ + add·I. The terms of one conditional mutual information must share one
// absolute ridge (a ridge relative to each submatrix's own trace shifts each term differently, which moved
// a TE_attn of stories260K from 0.59 to 2.36).
LogDet log_det_spd_absolute(const std::vector<double>& cov, int k, double add);
double gaussian_entropy(const std::vector<double>& cov, int k, double ridge = kDefaultRidge);

// The principal submatrix of a k×k matrix over `index` (in that order).
std::vector<double> submatrix(const std::vector<double>& cov, int k, const std::vector<int>& index);

// Entropy of the sub-vector `index` of a joint Gaussian with covariance cov (k×k).
double joint_entropy(const std::vector<double>& cov, int k, const std::vector<int>& index, double ridge = kDefaultRidge);
double conditional_entropy(const std::vector<double>& cov, int k, const std::vector<int>& z, const std::vector<int>& w,
                           double ridge = kDefaultRidge);
// I(y; x | z): the transfer entropy of docs/METHOD.md section 2 with y the output, x the source, z the past.
// One absolute ridge, `ridge` × the mean variance of the joint (y, z, x), serves all four log-determinants.
// ridge_effect (optional) receives the largest relative change the ridge made to one of them (1 when a term
// is singular without it).
double conditional_mutual_information(const std::vector<double>& cov, int k, const std::vector<int>& y, const std::vector<int>& x,
                                      const std::vector<int>& z, double ridge = kDefaultRidge, double* ridge_effect = nullptr);

// Stream-targeted transfer entropy (docs/METHOD.md §2b): the residual stream h read at a noise floor
// ε ~ N(0, noise·σ̄²·I), σ̄² = tr Σ_hh / |h|:  TE(x) = I(h + x + ε; x | h) = ½ log det(I + Σ_{x|h} / (noise·σ̄²)).
// `ridge` (relative to σ̄²) regularises Σ_hh. x and h must have the same width for h + x to exist; the
// formula itself only needs the covariance.
double stream_transfer_entropy(const std::vector<double>& cov, int k, const std::vector<int>& x, const std::vector<int>& h, double noise,
                               double ridge = kDefaultRidge);

}  // namespace ep
