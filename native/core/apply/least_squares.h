// Least-squares compensation [ours; the paper compensates with a bias only]: when a layer keeps only some of
// its input units (o_proj: the kept heads' dimensions; down_proj: the kept channels), refit the kept columns so
// that the layer's output matches the unpruned layer's on the calibration inputs, in the least-squares sense:
//
//   min over W', b of  E‖W x − W' x_K − b‖² + r ‖W' − W_{:,K}‖²
//     ⇒   W' = (W Σ_{:,K} + r W_{:,K}) (Σ_KK + r I)⁻¹,   b = W μ − W' μ_K
//
// with μ, Σ the calibration mean and covariance of the layer input x. When the removed units are uncorrelated
// with the kept ones, W' = W_{:,K} and b = W_{:,removed} μ_removed: the paper's bias compensation, exactly. The
// kept units then also carry the part of the removed units' output that they predict, not only its mean.
// The ridge r = λ · tr(Σ_KK) / |K| keeps the solve well posed when kept units are (nearly) collinear, and pulls
// W' toward the original kept columns — the paper's compensation is the limit r → ∞ — rather than toward zero.
// λ = 0.01 is the relative damping GPTQ and SparseGPT use for the same kind of solve.
#pragma once
#include <cstdint>
#include <vector>

namespace ep {

inline constexpr double kLeastSquaresDamping = 0.01;

struct ColumnRefit {
  std::vector<float> weight;  // [rows × kept.size()], row-major: the kept columns, refitted
  std::vector<double> shift;  // [rows]: what the output bias gains (b above)
  double damping = 0;         // λ actually used (raised ×10 per retry when Σ_KK + rI was not positive definite)
  bool refitted = false;      // false: Σ_KK could not be factored at any damping; weight = W_{:,K}, shift = W_{:,removed}·μ_removed
};

// One block's refits, as apply folds them in (apply/refit.h computes them for a plan).
struct LayerRefit {
  bool attn = false, mlp = false;  // which of the two was refitted
  ColumnRefit o_proj, down_proj;   // o_proj columns in the plan's kept-head order (head_dim each); down_proj in kept-channel order
};

// w: [rows × cols] row-major (the layer's weight, y = w·x); mean [cols], cov [cols × cols] row-major (population
// covariance of x); kept: ascending column indices, at least one.
ColumnRefit refit_kept_columns(const float* w, int64_t rows, int64_t cols, const std::vector<int64_t>& kept, const std::vector<double>& mean,
                               const std::vector<double>& cov, double damping = kLeastSquaresDamping);

}  // namespace ep
