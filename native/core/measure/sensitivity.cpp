#include "core/measure/sensitivity.h"

#include <algorithm>

#include "core/error.h"
#include "core/forward/forward.h"
#include "core/forward/layer_ops.h"
#include "core/forward/ops_cpu.h"
#include "core/forward/divergence.h"
#include "core/measure/removal_parts.h"

namespace ep {

namespace {

using namespace removal;

void check_cut(const Model& model, const PartialCut& cut, int n_units, int unit_width, const char* what, int l) {
  for (int u : cut.units)
    if (u < 0 || u >= n_units) throw Error(ErrorCode::kInvalidArgument, model.path, std::string("sensitivity: partial cut of ") + what + " " + std::to_string(l) + " names unit " + std::to_string(u) + " of " + std::to_string(n_units));
  if (!cut.means.empty() && cut.means.size() != cut.units.size() * static_cast<size_t>(unit_width))
    throw Error(ErrorCode::kInvalidArgument, model.path, std::string("sensitivity: partial cut of ") + what + " " + std::to_string(l) + ": means do not match its units");
}

// One group of windows on the CPU: the block passes, and the output head's log-probabilities.
class GroupRunner {
 public:
  GroupRunner(const Model& m, const int32_t* tokens, int n_seqs, int T, const std::atomic<bool>* cancel)
      : model_(m), tokens_(tokens), n_seqs_(n_seqs), T_(T), rows_(static_cast<int64_t>(n_seqs) * T), cancel_(cancel), scratch_(m.config, rows_),
        logits_(static_cast<size_t>(rows_) * m.config.vocab), kl_(rows_), nll_(static_cast<size_t>(n_seqs) * (T - 1)) {
    rope_tables(m.config, 0, T, rope_.cos, rope_.sin);
  }

  int64_t rows() const { return rows_; }
  void block(const ModelConfig& c, int l, const LayerWeights& w, float* x) { forward_block(c, l, w, x, n_seqs_, T_, rope_, scratch_, nullptr, cancel_); }

  // Blocks from..L−1 as they are, then the output head's logits into `out` ([rows, vocab]).
  void finish(std::vector<float>& x, int from, std::vector<float>& out) {
    for (int l = from; l < model_.config.n_layers(); ++l) {
      LayerBuffers converted;
      block(model_.config, l, model_.layer_weights(l, converted), x.data());
    }
    throw_if_cancelled(cancel_);
    const int d = model_.config.dim, V = model_.config.vocab;
    rmsnorm_cpu(x.data(), model_.output_norm, scratch_.xn.data(), rows_, d, model_.config.norm_eps);
    linear(scratch_.xn.data(), model_.output, nullptr, out.data(), rows_, d, V);
  }

  // The intact model's log-probabilities from the embeddings x (into ref) and its summed next-token NLL.
  double reference(std::vector<float>& x, std::vector<float>& ref) {
    finish(x, 0, ref);
    log_softmax_rows_cpu(ref.data(), rows_, model_.config.vocab);
    const int V = model_.config.vocab;
    double s = 0;
    for (int64_t r = 0; r < rows_; ++r)
      if (r % T_ != T_ - 1) s -= ref[static_cast<size_t>(r) * V + tokens_[r + 1]];
    return s;
  }

  // A changed model from block `from` on: its summed next-token NLL and summed KL(ref ‖ it).
  void compare(std::vector<float>& x, int from, const std::vector<float>& ref, double& nll, double& kl) {
    finish(x, from, logits_);
    kl_next_token_rows_cpu(logits_.data(), ref.data(), rows_, T_, model_.config.vocab, tokens_, kl_.data(), nll_.data());
    nll = kl = 0;
    for (float v : nll_) nll += v;
    for (float v : kl_) kl += v;
  }

 private:
  const Model& model_;
  const int32_t* tokens_;
  int n_seqs_, T_;
  int64_t rows_;
  const std::atomic<bool>* cancel_;
  RopeTables rope_;
  ForwardScratch scratch_;
  std::vector<float> logits_, kl_, nll_;
};

// The CPU driver, in groups of windows: each group's hidden states h_{l−1} are kept; each removal at block l
// runs from there (block l changed, blocks l+1.. as they are, the output head) and block l then advances the
// kept states.
DamageSums measure_on_cpu(const Model& model, const int32_t* tokens, int n_seqs, int seq_len, const SublayerMeans& means, const std::atomic<bool>* cancel,
                          const std::function<void(int64_t, int64_t)>& progress, const PartialCuts* partial) {
  const ModelConfig& c = model.config;
  const int L = c.n_layers(), d = c.dim, V = c.vocab;
  const bool compensate = !means.attn_out.empty();
  // Windows per group: the intact log-probabilities and the changed logits of a group take 2·rows·V floats.
  const int64_t per_window = static_cast<int64_t>(seq_len) * V * 4 * 2;
  const int group = static_cast<int>(std::clamp<int64_t>((256ll << 20) / std::max<int64_t>(1, per_window), 1, n_seqs));
  const int n_groups = (n_seqs + group - 1) / group;

  DamageSums sums(L);
  int64_t done = 0;
  const int64_t total = static_cast<int64_t>(n_groups) * (1 + static_cast<int64_t>(kKinds) * L);
  for (int g0 = 0; g0 < n_seqs; g0 += group) {
    const int n = std::min(group, n_seqs - g0);
    const int32_t* toks = tokens + static_cast<size_t>(g0) * seq_len;
    GroupRunner run(model, toks, n, seq_len, cancel);
    const int64_t N = run.rows();
    std::vector<float> h(static_cast<size_t>(N) * d), x, base(static_cast<size_t>(N) * V);
    embed_tokens(model, toks, N, h.data());
    x = h;
    const double base_nll = run.reference(x, base);
    sums.base_nll += base_nll;
    progress(++done, total);

    for (int l = 0; l < L; ++l) {
      const LayerShape& s = c.layers[l];
      LayerBuffers converted;
      const LayerWeights w = model.layer_weights(l, converted);
      for (int kind = 0; kind < kKinds; ++kind) {
        if (present(c, partial, l, kind)) {
          // Whole removals drop the layer from the block (the forward pass still adds the bias of an absent
          // layer: its calibration mean, exactly what apply folds in, or nothing); partial cuts change weights.
          ModelConfig cut = c;
          LayerWeights wc = w;
          CutProjection storage[2];
          if (kind == kAttnCut || kind == kMlpCut) {
            wc = removed_by_weights(model, l, w, kind, means, partial, storage);
          } else {
            if (kind != kMlp && s.n_head > 0) {
              cut.layers[l].n_head = 0;
              wc.bo = compensate ? means.attn_out[l].data() : nullptr;
            }
            if (kind != kAttn && s.ffn > 0) {
              cut.layers[l].ffn = 0;
              wc.b_down = compensate ? means.mlp_out[l].data() : nullptr;
            }
          }
          x = h;
          run.block(cut, l, wc, x.data());
          double nll = 0, kl = 0;
          run.compare(x, l + 1, base, nll, kl);
          sums.nll[kKinds * l + kind] += nll - base_nll;
          sums.kl[kKinds * l + kind] += kl;
        }
        progress(++done, total);
      }
      run.block(c, l, w, h.data());  // advance the kept states through the intact block
    }
  }
  return sums;
}

}  // namespace

RemovalDamage measure_removal_damage(const Model& model, const int32_t* tokens, int n_seqs, int seq_len, const SublayerMeans& means,
                                     const std::atomic<bool>* cancel, const std::function<void(int64_t, int64_t)>& progress,
                                     const PartialCuts* partial, const RunDevices& device) {
  const ModelConfig& c = model.config;
  const int L = c.n_layers();
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
  const DamageSums sums = device.cuda_devices.empty() ? measure_on_cpu(model, tokens, n_seqs, seq_len, means, cancel, progress, partial)
                                                      : measure_on_gpus(model, tokens, n_seqs, seq_len, means, cancel, progress, partial, device);
  return to_damage(c, partial, sums, n_seqs, seq_len);
}

}  // namespace ep
