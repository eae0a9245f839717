#include "core/measure/sensitivity.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/forward/forward.h"
#include "core/forward/layer_ops.h"
#include "core/forward/ops_cpu.h"
#include "core/forward/simd_math.h"

namespace ep {

namespace {

// The parts measured in each block, by index: 0 its attention, 1 its MLP, 2 the whole block; 3 and 4 a
// partial cut of its attention and of its MLP.
constexpr int kParts = 5;
std::vector<double>& part(PartDamage& p, int kind) { return kind == 0 ? p.attn : kind == 1 ? p.mlp : p.block; }

// A block's weights with some units of one sublayer cut: their columns of the output projection (W_o for
// heads, W_down for channels) zeroed — the same products as slicing them out — and, with means, their mean
// contribution added to the layer's output bias, as apply folds it.
struct CutWeights {
  std::vector<float> proj, bias;
  void make(const float* w, const float* b, int rows, int cols, int unit_width, const PartialCut& cut) {
    proj.assign(w, w + static_cast<size_t>(rows) * cols);
    bias.assign(rows, 0.0f);
    if (b) std::copy(b, b + rows, bias.begin());
    const bool compensate = !cut.means.empty();
    for (size_t k = 0; k < cut.units.size(); ++k) {
      const int c0 = cut.units[k] * unit_width;
      for (int i = 0; i < rows; ++i) {
        float* row = &proj[static_cast<size_t>(i) * cols + c0];
        double add = 0;
        for (int a = 0; a < unit_width; ++a) {
          if (compensate) add += static_cast<double>(row[a]) * cut.means[k * unit_width + a];
          row[a] = 0.0f;
        }
        bias[i] += static_cast<float>(add);
      }
    }
  }
};

void check_cut(const Model& model, const PartialCut& cut, int n_units, int unit_width, const char* what, int l) {
  for (int u : cut.units)
    if (u < 0 || u >= n_units) throw Error(ErrorCode::kInvalidArgument, model.path, std::string("sensitivity: partial cut of ") + what + " " + std::to_string(l) + " names unit " + std::to_string(u) + " of " + std::to_string(n_units));
  if (!cut.means.empty() && cut.means.size() != cut.units.size() * static_cast<size_t>(unit_width))
    throw Error(ErrorCode::kInvalidArgument, model.path, std::string("sensitivity: partial cut of ") + what + " " + std::to_string(l) + ": means do not match its units");
}

// One group of windows: the block passes, and the output head turned into log-probabilities.
class GroupRunner {
 public:
  GroupRunner(const Model& m, const int32_t* tokens, int n_seqs, int T, const std::atomic<bool>* cancel)
      : model_(m), tokens_(tokens), n_seqs_(n_seqs), T_(T), rows_(static_cast<int64_t>(n_seqs) * T), cancel_(cancel), scratch_(m.config, rows_),
        logprobs_(static_cast<size_t>(rows_) * m.config.vocab) {
    rope_tables(m.config, 0, T, rope_.cos, rope_.sin);
  }

  int64_t rows() const { return rows_; }
  void block(const ModelConfig& c, int l, const LayerWeights& w, float* x) { forward_block(c, l, w, x, n_seqs_, T_, rope_, scratch_, nullptr, cancel_); }

  // Blocks from..L−1 as they are, then log-softmax of the output head into `out` ([rows, vocab]).
  void finish(std::vector<float>& x, int from, std::vector<float>& out) {
    for (int l = from; l < model_.config.n_layers(); ++l) {
      LayerBuffers converted;
      block(model_.config, l, model_.layer_weights(l, converted), x.data());
    }
    throw_if_cancelled(cancel_);
    const int d = model_.config.dim, V = model_.config.vocab;
    rmsnorm_cpu(x.data(), model_.output_norm, scratch_.xn.data(), rows_, d, model_.config.norm_eps);
    linear(scratch_.xn.data(), model_.output, nullptr, out.data(), rows_, d, V);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows_; ++r) {
      float* lr = &out[static_cast<size_t>(r) * V];
      const float mx = simd::max(lr, V);
      const float lse = static_cast<float>(std::log(simd::sum_exp_shift(lr, V, mx))) + mx;
      for (int v = 0; v < V; ++v) lr[v] -= lse;
    }
  }

  // Summed NLL of each window's next tokens under log-probabilities lp.
  double nll_sum(const std::vector<float>& lp) const {
    const int V = model_.config.vocab;
    double s = 0;
    for (int64_t r = 0; r < rows_; ++r)
      if (r % T_ != T_ - 1) s -= lp[static_cast<size_t>(r) * V + tokens_[r + 1]];
    return s;
  }

  // Summed KL(base ‖ lp) over every row.
  double kl_sum(const std::vector<float>& base, const std::vector<float>& lp) const {
    const int V = model_.config.vocab;
    double s = 0;
#pragma omp parallel for schedule(static) reduction(+ : s)
    for (int64_t r = 0; r < rows_; ++r) {
      const float* p = &base[static_cast<size_t>(r) * V];
      const float* q = &lp[static_cast<size_t>(r) * V];
      double k = 0;
      for (int v = 0; v < V; ++v) k += std::exp(static_cast<double>(p[v])) * (static_cast<double>(p[v]) - q[v]);
      s += std::max(0.0, k);
    }
    return s;
  }

  std::vector<float>& scratch_logprobs() { return logprobs_; }

 private:
  const Model& model_;
  const int32_t* tokens_;
  int n_seqs_, T_;
  int64_t rows_;
  const std::atomic<bool>* cancel_;
  RopeTables rope_;
  ForwardScratch scratch_;
  std::vector<float> logprobs_;
};

}  // namespace

RemovalDamage measure_removal_damage(const Model& model, const int32_t* tokens, int n_seqs, int seq_len, const SublayerMeans& means,
                                     const std::atomic<bool>* cancel, const std::function<void(int64_t, int64_t)>& progress,
                                     const PartialCuts* partial) {
  const ModelConfig& c = model.config;
  const int L = c.n_layers(), d = c.dim, V = c.vocab;
  if (n_seqs <= 0 || seq_len < 2) throw Error(ErrorCode::kInvalidArgument, model.path, "sensitivity needs at least one window of 2 or more tokens");
  const bool compensate = !means.attn_out.empty();
  if (compensate && (static_cast<int>(means.attn_out.size()) != L || static_cast<int>(means.mlp_out.size()) != L))
    throw Error(ErrorCode::kInvalidArgument, model.path, "sensitivity: the means do not match the model's block count");
  check_tokens(model, tokens, static_cast<int64_t>(n_seqs) * seq_len);
  if (partial) {
    if (static_cast<int>(partial->attn.size()) != L || static_cast<int>(partial->mlp.size()) != L)
      throw Error(ErrorCode::kInvalidArgument, model.path, "sensitivity: the partial cuts do not match the model's block count");
    for (int l = 0; l < L; ++l) {
      check_cut(model, partial->attn[l], c.layers[l].n_head, c.head_dim, "attention layer", l);
      check_cut(model, partial->mlp[l], c.layers[l].ffn, 1, "MLP layer", l);
    }
  }

  // Windows per group: the intact and the changed log-probabilities of a group take 2·rows·V floats.
  const int64_t per_window = static_cast<int64_t>(seq_len) * V * 4 * 2;
  const int group = static_cast<int>(std::clamp<int64_t>((256ll << 20) / std::max<int64_t>(1, per_window), 1, n_seqs));
  const int n_groups = (n_seqs + group - 1) / group;

  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> nll_sum(kParts * L, 0.0), kl_sum(kParts * L, 0.0);
  double base_sum = 0;
  int64_t done = 0;
  const int64_t total = static_cast<int64_t>(n_groups) * (1 + static_cast<int64_t>(kParts) * L);
  auto has = [&](int l, int kind) {
    const LayerShape& s = c.layers[l];
    if (kind == 3) return s.n_head > 0 && partial && !partial->attn[l].units.empty();
    if (kind == 4) return s.ffn > 0 && partial && !partial->mlp[l].units.empty();
    return kind == 0 ? s.n_head > 0 : kind == 1 ? s.ffn > 0 : (s.n_head > 0 || s.ffn > 0);
  };

  for (int g0 = 0; g0 < n_seqs; g0 += group) {
    const int n = std::min(group, n_seqs - g0);
    const int32_t* toks = tokens + static_cast<size_t>(g0) * seq_len;
    GroupRunner run(model, toks, n, seq_len, cancel);
    const int64_t N = run.rows();
    std::vector<float> h(static_cast<size_t>(N) * d), x, base(static_cast<size_t>(N) * V);
    embed_tokens(model, toks, N, h.data());
    x = h;
    run.finish(x, 0, base);
    const double base_nll = run.nll_sum(base);
    base_sum += base_nll;
    progress(++done, total);

    for (int l = 0; l < L; ++l) {
      const LayerShape& s = c.layers[l];
      LayerBuffers converted;
      const LayerWeights w = model.layer_weights(l, converted);
      CutWeights cut_weights;
      for (int kind = 0; kind < kParts; ++kind) {
        if (has(l, kind)) {
          // The removed part becomes a constant: its calibration mean carried in the bias the forward pass
          // still adds for an absent layer (exactly what apply folds in), or nothing.
          ModelConfig cut = c;
          LayerWeights wc = w;
          if (kind == 3) {
            cut_weights.make(w.wo, w.bo, d, s.n_head * c.head_dim, c.head_dim, partial->attn[l]);
            wc.wo = cut_weights.proj.data();
            wc.bo = cut_weights.bias.data();
          } else if (kind == 4) {
            cut_weights.make(w.w_down, w.b_down, d, s.ffn, 1, partial->mlp[l]);
            wc.w_down = cut_weights.proj.data();
            wc.b_down = cut_weights.bias.data();
          } else {
            if (kind != 1 && s.n_head > 0) {
              cut.layers[l].n_head = 0;
              wc.bo = compensate ? means.attn_out[l].data() : nullptr;
            }
            if (kind != 0 && s.ffn > 0) {
              cut.layers[l].ffn = 0;
              wc.b_down = compensate ? means.mlp_out[l].data() : nullptr;
            }
          }
          x = h;
          run.block(cut, l, wc, x.data());
          std::vector<float>& lp = run.scratch_logprobs();
          run.finish(x, l + 1, lp);
          nll_sum[kParts * l + kind] += run.nll_sum(lp) - base_nll;
          kl_sum[kParts * l + kind] += run.kl_sum(base, lp);
        }
        progress(++done, total);
      }
      run.block(c, l, w, h.data());  // advance the kept states through the intact block
    }
  }

  const double predicted = static_cast<double>(n_seqs) * (seq_len - 1), positions = static_cast<double>(n_seqs) * seq_len;
  RemovalDamage out;
  out.base_nll = base_sum / predicted;
  for (int kind = 0; kind < kParts; ++kind) {
    PartDamage& nll = kind < 3 ? out.nll : out.partial_nll;
    PartDamage& kl = kind < 3 ? out.kl : out.partial_kl;
    const int k = kind < 3 ? kind : kind - 3;
    part(nll, k).assign(L, nan);
    part(kl, k).assign(L, nan);
    for (int l = 0; l < L; ++l)
      if (has(l, kind)) {
        part(nll, k)[l] = nll_sum[kParts * l + kind] / predicted;
        part(kl, k)[l] = kl_sum[kParts * l + kind] / positions;
      }
  }
  out.partial_nll.block.assign(L, nan);
  out.partial_kl.block.assign(L, nan);
  return out;
}

}  // namespace ep
