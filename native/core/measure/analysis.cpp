#include "core/measure/analysis.h"

#include <cmath>
#include <utility>

#include "core/measure/gaussian_entropy.h"

namespace ep {

namespace {

// A vector built as Σ coefficient·part of the joint (y, h, a, m), each part r wide.
using Combo = std::vector<std::pair<int, double>>;

// Covariance of the concatenation of `vars`, from the joint covariance C of the 4 parts.
std::vector<double> combined_cov(const std::vector<double>& C, int r, const std::vector<Combo>& vars) {
  const int K = 4 * r, n = static_cast<int>(vars.size()) * r;
  std::vector<double> out(static_cast<size_t>(n) * n, 0.0);
  for (size_t p = 0; p < vars.size(); ++p)
    for (size_t q = 0; q < vars.size(); ++q)
      for (auto [bp, cp] : vars[p])
        for (auto [bq, cq] : vars[q])
          for (int i = 0; i < r; ++i) {
            const double* src = &C[static_cast<size_t>(bp * r + i) * K + bq * r];
            double* dst = &out[static_cast<size_t>(p * r + i) * n + q * r];
            for (int j = 0; j < r; ++j) dst[j] += cp * cq * src[j];
          }
  return out;
}

struct TeTerm {
  double value;
  double ridge_effect;
};

// I(y; x | z) for y, x, z given as combos, on their joint covariance (gaussian_entropy.h: one ridge for
// all four terms).
TeTerm conditional_mi(const std::vector<double>& C, int r, const Combo& y, const Combo& x, const Combo& z, double ridge) {
  std::vector<int> Y, Z, X;
  for (int i = 0; i < r; ++i) {
    Y.push_back(i);
    Z.push_back(r + i);
    X.push_back(2 * r + i);
  }
  TeTerm t{0, 0};
  t.value = conditional_mutual_information(combined_cov(C, r, {y, z, x}), 3 * r, Y, X, Z, ridge, &t.ridge_effect);
  return t;
}

// Stream-targeted TE of x given the block input h (gaussian_entropy.h), on the joint (h, x).
double stream_te(const std::vector<double>& C, int r, const Combo& x, const Combo& h, double ridge) {
  std::vector<int> H, X;
  for (int i = 0; i < r; ++i) {
    H.push_back(i);
    X.push_back(r + i);
  }
  return stream_transfer_entropy(combined_cov(C, r, {h, x}), 2 * r, X, H, kStreamNoise, ridge);
}

// The variance each unit adds to the residual stream (what mean compensation cannot restore): a channel j
// writes x_j · W_down[:, j], so Var(x_j)·‖W_down[:, j]‖²; a head h writes W_o[:, h] · o_h, so
// tr(W_o,hᵀ W_o,h Σ_h). Needs the block's weights; the planner shares a sublayer's sensitivity out by these.
void unit_contributions(const StatisticsCapture& cap, const Model& model, int l, BlockAnalysis& b) {
  const ModelConfig& c = model.config;
  const LayerShape& s = c.layers[l];
  LayerBuffers converted;
  const LayerWeights w = model.layer_weights(l, converted);
  const int d = c.dim, hd = c.head_dim;
  if (s.n_head > 0) {
    const int qd = s.n_head * hd;
    const std::vector<Moments>& heads = cap.head_moments(l);
    for (int h = 0; h < s.n_head; ++h) {
      const std::vector<double> cov = heads[h].covariance();
      std::vector<double> gram(static_cast<size_t>(hd) * hd, 0.0);
      for (int i = 0; i < d; ++i) {
        const float* row = w.wo + static_cast<size_t>(i) * qd + static_cast<size_t>(h) * hd;
        for (int a = 0; a < hd; ++a)
          for (int e = 0; e < hd; ++e) gram[static_cast<size_t>(a) * hd + e] += static_cast<double>(row[a]) * row[e];
      }
      double t = 0;
      for (size_t k = 0; k < gram.size(); ++k) t += gram[k] * cov[k];
      b.head_contribution.push_back(std::max(0.0, t));
    }
  }
  if (s.ffn > 0) {
    const std::vector<double> var = cap.channel_stats(l).variance();
    std::vector<double> norm2(s.ffn, 0.0);
    for (int i = 0; i < d; ++i)
      for (int j = 0; j < s.ffn; ++j) {
        const double v = w.w_down[static_cast<size_t>(i) * s.ffn + j];
        norm2[j] += v * v;
      }
    for (int j = 0; j < s.ffn; ++j) b.channel_contribution.push_back(std::max(0.0, var[j]) * norm2[j]);
  }
}

}  // namespace

AnalysisResult analyze_capture(const StatisticsCapture& cap, const ModelConfig& config, double ridge, const Model* model) {
  AnalysisResult res;
  res.tokens = cap.tokens();
  res.joint_dim = cap.joint_dim();
  res.projected = cap.projected();
  res.float32_products = cap.products() == Accumulation::kBlockedFloat32;
  res.ridge = ridge;
  const int r = cap.joint_dim();
  const Combo Y{{0, 1.0}}, H{{1, 1.0}}, A{{2, 1.0}}, M{{3, 1.0}}, U{{1, 1.0}, {2, 1.0}}, D{{2, 1.0}, {3, 1.0}};
  const double log2pie = std::log(2 * M_PI * M_E);
  for (int l = 0; l < config.n_layers(); ++l) {
    const LayerShape& s = config.layers[l];
    BlockAnalysis b;
    b.has_attn = s.n_head > 0;
    b.has_mlp = s.ffn > 0;
    b.cosine = cap.block_cosine(l);
    const std::vector<double> C = cap.block_moments(l).covariance();
    // A joint covariance that is singular to rounding (fewer tokens than its dimension, or float32 products
    // on a near-deterministic last block) can fail Cholesky even with the ridge: retry the whole block with
    // a 10× larger ridge, up to kMaxRidge, so its three TE terms keep one consistent ridge (recorded).
    for (b.ridge = ridge;; b.ridge *= 10) {
      try {
        b.max_ridge_effect = 0;
        if (b.has_attn || b.has_mlp) {
          TeTerm t = conditional_mi(C, r, Y, D, H, b.ridge);
          b.te = t.value;
          b.max_ridge_effect = std::max(b.max_ridge_effect, t.ridge_effect);
        }
        if (b.has_attn) {
          TeTerm t = conditional_mi(C, r, Y, A, H, b.ridge);
          b.te_attn = t.value;
          b.max_ridge_effect = std::max(b.max_ridge_effect, t.ridge_effect);
        }
        if (b.has_mlp) {
          TeTerm t = conditional_mi(C, r, Y, M, U, b.ridge);
          b.te_mlp = t.value;
          b.max_ridge_effect = std::max(b.max_ridge_effect, t.ridge_effect);
        }
        // Stream-targeted TE: both sublayers conditioned on the block input h_{l−1}.
        if (b.has_attn || b.has_mlp) b.te_stream = stream_te(C, r, D, H, b.ridge);
        if (b.has_attn) b.te_stream_attn = stream_te(C, r, A, H, b.ridge);
        if (b.has_mlp) b.te_stream_mlp = stream_te(C, r, M, H, b.ridge);
        break;
      } catch (const std::domain_error&) {
        if (b.ridge * 10 > kMaxRidge)
          throw std::domain_error("block " + std::to_string(l) + ": the joint covariance is not positive definite even with a ridge of " +
                                  std::to_string(b.ridge) + " (NaN activations, or far fewer calibration tokens than its dimension " +
                                  std::to_string(4 * r) + ")");
      }
    }
    const int hd = config.head_dim;
    for (const Moments& hm : cap.head_moments(l)) {
      const std::vector<double> cov = hm.covariance(), mu = hm.mean();
      b.head_entropy.push_back(0.5 * (hd * log2pie + log_det_spd(cov, hd, ridge).value));
      double energy = 0;
      for (int i = 0; i < hd; ++i) energy += cov[static_cast<size_t>(i) * hd + i] + mu[i] * mu[i];
      b.head_energy.push_back(energy);
      b.head_mean.insert(b.head_mean.end(), mu.begin(), mu.end());
    }
    const ChannelStats& cs = cap.channel_stats(l);
    b.channel_mean = cs.mean();
    const std::vector<double> var = cs.variance();
    double mean_var = 0;
    for (double v : var) mean_var += v;
    mean_var = var.empty() ? 0 : mean_var / var.size();
    for (size_t j = 0; j < var.size(); ++j) {
      // The same relative ridge as for matrices, so a dead channel gets a finite (very low) entropy.
      b.channel_entropy.push_back(0.5 * (log2pie + std::log(var[j] + ridge * mean_var + 1e-300)));
      b.channel_energy.push_back(var[j] + b.channel_mean[j] * b.channel_mean[j]);
    }
    if (model) unit_contributions(cap, *model, l, b);
    b.attn_out_mean = cap.attn_output_mean(l);
    b.mlp_out_mean = cap.mlp_output_mean(l);
    res.blocks.push_back(std::move(b));
  }
  return res;
}

}  // namespace ep
