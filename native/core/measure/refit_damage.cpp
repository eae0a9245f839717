#include "core/measure/refit_damage.h"

#include <cblas.h>

#include <stdexcept>
#include <string>

#include "core/device/layer_input_passes.h"
#include "core/error.h"

// LAPACK (OpenBLAS): Cholesky factorisation, column-major.
extern "C" void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info);

namespace ep {

std::vector<double> refit_removal_steps(const float* w, int64_t rows, int64_t cols, const std::vector<double>& cov,
                                        const std::vector<std::vector<int64_t>>& units) {
  if (static_cast<int64_t>(cov.size()) != cols * cols) throw std::invalid_argument("refit_removal_steps: covariance does not match the weight's columns");
  // π: the columns in reverse removal order (the unit removed last first).
  std::vector<int64_t> perm;
  std::vector<char> seen(static_cast<size_t>(cols), 0);
  for (auto u = units.rbegin(); u != units.rend(); ++u)
    for (int64_t j : *u) {
      if (j < 0 || j >= cols || seen[j]) throw std::invalid_argument("refit_removal_steps: a column out of range or in two units");
      seen[j] = 1;
      perm.push_back(j);
    }
  const int64_t n = static_cast<int64_t>(perm.size());
  std::vector<double> steps(units.size(), 0.0);
  if (n == 0 || rows <= 0) return steps;
  double mean_var = 0;
  for (int64_t i = 0; i < n; ++i) mean_var += cov[perm[i] * cols + perm[i]];
  mean_var /= static_cast<double>(n);
  if (!(mean_var > 0)) return steps;  // every unit constant: nothing for the mean compensation to miss
  const int nn = static_cast<int>(n);
  std::vector<double> a(static_cast<size_t>(n * n));
  bool factored = false;
  for (double lambda = 1e-9; lambda <= 1e-1 && !factored; lambda *= 100) {
    for (int64_t c = 0; c < n; ++c)
      for (int64_t r = 0; r < n; ++r) a[r + c * n] = cov[perm[r] * cols + perm[c]];
    for (int64_t i = 0; i < n; ++i) a[i + i * n] += lambda * mean_var;
    int info = 0;
    dpotrf_("L", &nn, a.data(), &nn, &info);
    factored = info == 0;
  }
  if (!factored) throw std::runtime_error("refit_removal_steps: the input covariance could not be factored");
  // M = W_π L (rows × n, column-major): W_π column-major is w's columns π gathered; dtrmm reads only L's lower
  // triangle (dpotrf leaves the upper one as Σ_π was).
  std::vector<double> m(static_cast<size_t>(rows * n));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t o = 0; o < rows; ++o) m[o + i * rows] = w[o * cols + perm[i]];
  cblas_dtrmm(CblasColMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, static_cast<int>(rows), nn, 1.0, a.data(), nn, m.data(),
              static_cast<int>(rows));
  int64_t col = 0;
  for (size_t k = units.size(); k-- > 0;) {
    double s = 0;
    for (size_t e = 0; e < units[k].size(); ++e, ++col) {
      const double* mc = m.data() + col * rows;
      s += cblas_ddot(static_cast<int>(rows), mc, 1, mc, 1);
    }
    steps[k] = s;
  }
  return steps;
}

std::vector<RefitDamage> measure_refit_damage(const Model& model, const std::vector<RemovalOrders>& sets, const TokenBatches& calibration,
                                              uint64_t memory_budget, const std::atomic<bool>* cancel, const StageProgress& progress, int* passes,
                                              const LayerInputRunnerFactory& runner) {
  const ModelConfig& c = model.config;
  const int L = c.n_layers();
  const int64_t d = c.dim, hd = c.head_dim;
  std::vector<RefitDamage> out(sets.size());
  std::vector<char> want_attn(L, 0), want_mlp(L, 0);
  for (size_t k = 0; k < sets.size(); ++k) {
    const RemovalOrders& orders = sets[k];
    if (static_cast<int>(orders.attn_groups.size()) != L || static_cast<int>(orders.mlp_channels.size()) != L)
      throw Error(ErrorCode::kInvalidArgument, model.path, "refit damage: one removal order per block and sublayer");
    out[k].attn.resize(L);
    out[k].mlp.resize(L);
    for (int l = 0; l < L; ++l) {
      const LayerShape& s = c.layers[l];
      const auto check = [&](const std::vector<int>& order, int count, const char* what) {
        std::vector<char> seen(static_cast<size_t>(count), 0);
        for (int u : order) {
          if (u < 0 || u >= count || seen[u])
            throw Error(ErrorCode::kInvalidArgument, model.path, std::string("refit damage: block ") + std::to_string(l) + "'s " + what + " order is not a list of distinct units");
          seen[u] = 1;
        }
      };
      check(orders.attn_groups[l], s.n_kv_head, "attention");
      check(orders.mlp_channels[l], s.ffn, "MLP");
      want_attn[l] |= !orders.attn_groups[l].empty();
      want_mlp[l] |= !orders.mlp_channels[l].empty();
    }
  }
  std::vector<LayerInputTarget> targets;
  for (int l = 0; l < L; ++l) {
    if (want_attn[l]) targets.push_back({l, false});
    if (want_mlp[l]) targets.push_back({l, true});
  }
  const int n = capture_layer_inputs(model, targets, calibration, memory_budget, cancel, progress, [&](const LayerInputTarget& t, const Moments& mo) {
    LayerBuffers converted;  // a streamed model's block matrices, for this layer only
    const LayerWeights w = model.layer_weights(t.layer, converted);
    const LayerShape& s = c.layers[t.layer];
    const std::vector<double> cov = mo.covariance();
    const int group = t.mlp ? 1 : s.n_head / s.n_kv_head;  // query heads per KV group
    for (size_t k = 0; k < sets.size(); ++k) {
      const std::vector<int>& order = t.mlp ? sets[k].mlp_channels[t.layer] : sets[k].attn_groups[t.layer];
      if (order.empty()) continue;
      std::vector<std::vector<int64_t>> units;
      for (int u : order) {
        std::vector<int64_t> cols;
        if (t.mlp) cols.push_back(u);
        else
          for (int64_t q = static_cast<int64_t>(u) * group; q < static_cast<int64_t>(u + 1) * group; ++q)
            for (int64_t e = 0; e < hd; ++e) cols.push_back(q * hd + e);
        units.push_back(std::move(cols));
      }
      const std::vector<double> steps = refit_removal_steps(t.mlp ? w.w_down : w.wo, d, t.dim, cov, units);
      std::vector<double>& by_index = t.mlp ? out[k].mlp[t.layer] : out[k].attn[t.layer];
      by_index.assign(static_cast<size_t>(t.mlp ? s.ffn : s.n_kv_head), 0.0);
      for (size_t i = 0; i < order.size(); ++i) by_index[order[i]] = steps[i];
    }
  }, LayerInputOrder::kAuto, runner);
  if (passes) *passes = n;
  return out;
}

}  // namespace ep
