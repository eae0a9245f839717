#include "core/sensitivity.h"

#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/forward.h"
#include "core/layer_ops.h"
#include "core/ops_cpu.h"

namespace ep {

namespace {

enum class Removal { kAttention, kMlp, kBlock };

struct Runner {
  const Model& model;
  int n_seqs, T;
  const int32_t* tokens;
  const std::atomic<bool>* cancel;
  RopeTables rope;
  ForwardScratch scratch;
  std::vector<float> nll;

  Runner(const Model& m, const int32_t* t, int n, int len, const std::atomic<bool>* c)
      : model(m), n_seqs(n), T(len), tokens(t), cancel(c), scratch(m.config, static_cast<int64_t>(n) * len), nll(static_cast<size_t>(n) * (len - 1)) {
    rope_tables(m.config, 0, T, rope.cos, rope.sin);
  }

  void block(const ModelConfig& c, int l, const LayerWeights& w, float* x) { forward_block(c, l, w, x, n_seqs, T, rope, scratch, nullptr, cancel); }

  // Blocks from..L−1 as they are, then the output head: the mean NLL over the predicted positions.
  double finish(std::vector<float>& x, int from) {
    for (int l = from; l < model.config.n_layers(); ++l) {
      LayerBuffers converted;
      block(model.config, l, model.layer_weights(l, converted), x.data());
    }
    throw_if_cancelled(cancel);
    const int64_t N = static_cast<int64_t>(n_seqs) * T;
    rmsnorm_cpu(x.data(), model.output_norm, scratch.xn.data(), N, model.config.dim, model.config.norm_eps);
    next_token_nll(model, scratch.xn.data(), tokens, n_seqs, T, nll.data(), nullptr);
    double s = 0;
    for (float v : nll) s += v;
    return s / static_cast<double>(nll.size());
  }
};

}  // namespace

RemovalDamage measure_removal_damage(const Model& model, const int32_t* tokens, int n_seqs, int seq_len, const SublayerMeans& means,
                                     const std::atomic<bool>* cancel, const std::function<void(int64_t, int64_t)>& progress) {
  const ModelConfig& c = model.config;
  const int L = c.n_layers(), d = c.dim;
  if (n_seqs <= 0 || seq_len < 2) throw Error(ErrorCode::kInvalidArgument, model.path, "sensitivity needs at least one window of 2 or more tokens");
  const bool compensate = !means.attn_out.empty();
  if (compensate && (static_cast<int>(means.attn_out.size()) != L || static_cast<int>(means.mlp_out.size()) != L))
    throw Error(ErrorCode::kInvalidArgument, model.path, "sensitivity: the means do not match the model's block count");
  const int64_t N = static_cast<int64_t>(n_seqs) * seq_len;
  check_tokens(model, tokens, N);
  Runner run(model, tokens, n_seqs, seq_len, cancel);
  std::vector<float> h(static_cast<size_t>(N) * d), x;
  embed_tokens(model, tokens, N, h.data());

  RemovalDamage out;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  out.attn.assign(L, nan);
  out.mlp.assign(L, nan);
  out.block.assign(L, nan);
  int64_t done = 0;
  const int64_t total = 1 + 3ll * L;
  x = h;
  out.base_nll = run.finish(x, 0);
  progress(++done, total);

  for (int l = 0; l < L; ++l) {
    const LayerShape& s = c.layers[l];
    LayerBuffers converted;
    const LayerWeights w = model.layer_weights(l, converted);
    for (Removal kind : {Removal::kAttention, Removal::kMlp, Removal::kBlock}) {
      const bool has = kind == Removal::kAttention ? s.n_head > 0 : kind == Removal::kMlp ? s.ffn > 0 : (s.n_head > 0 || s.ffn > 0);
      if (has) {
        // The removed part becomes a constant: its calibration mean carried in the bias the forward pass
        // still adds for an absent layer (exactly what apply folds in), or nothing.
        ModelConfig cut = c;
        LayerWeights wc = w;
        if (kind != Removal::kMlp && s.n_head > 0) {
          cut.layers[l].n_head = 0;
          wc.bo = compensate ? means.attn_out[l].data() : nullptr;
        }
        if (kind != Removal::kAttention && s.ffn > 0) {
          cut.layers[l].ffn = 0;
          wc.b_down = compensate ? means.mlp_out[l].data() : nullptr;
        }
        x = h;
        run.block(cut, l, wc, x.data());
        const double v = run.finish(x, l + 1) - out.base_nll;
        (kind == Removal::kAttention ? out.attn : kind == Removal::kMlp ? out.mlp : out.block)[l] = v;
      }
      progress(++done, total);
    }
    run.block(c, l, w, h.data());  // advance the kept states through the intact block
  }
  return out;
}

}  // namespace ep
