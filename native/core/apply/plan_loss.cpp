#include "core/apply/plan_loss.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <string>

#include "core/error.h"
#include "core/forward/forward.h"
#include "core/forward/layer_ops.h"
#include "core/forward/ops_cpu.h"
#include "core/device/block_runner.h"
#include "core/forward/divergence.h"

namespace ep {

bool attention_partly_cut(const ModelConfig& c, const PlanBlock& b, int l) {
  const int n = c.layers[l].n_head;
  return !b.removed && n > 0 && !b.kept_heads.empty() && static_cast<int>(b.kept_heads.size()) < n;
}

bool mlp_partly_cut(const ModelConfig& c, const PlanBlock& b, int l) {
  const int n = c.layers[l].ffn;
  return !b.removed && n > 0 && !b.kept_channels.empty() && static_cast<int>(b.kept_channels.size()) < n;
}

namespace {

// Block l of the pruned model as the forward pass reads it: the source's views, with o_proj / down_proj and
// their biases taken from the zero-mode pruned tensors (removed columns zero, refitted columns, compensation).
// q/k/v and gate/up stay the source's: the rows apply zeroes feed only the zeroed output columns.
struct PlanBlockWeights {
  LayerWeights w;
  std::vector<float> wo, bo, w_down, b_down;
};

class PlanBlocks {
 public:
  PlanBlocks(const PrunedModel& pruned) : pruned_(pruned) {
    for (size_t i = 0; i < pruned.tensors.size(); ++i) index_[pruned.tensors[i].name] = i;
  }
  // Fills `out` with the named tensor and returns true, or returns false when the pruned model has none.
  bool fill(const std::string& name, std::vector<float>& out) const {
    auto it = index_.find(name);
    if (it == index_.end()) return false;
    const PrunedTensor& t = pruned_.tensors[it->second];
    int64_t n = 1;
    for (int64_t s : t.shape) n *= s;
    out.resize(static_cast<size_t>(n));
    t.fill(out.data());
    return true;
  }
  void block(int l, const LayerWeights& source, PlanBlockWeights& b) const {
    const std::string p = "blk." + std::to_string(l) + ".";
    b.w = source;
    if (fill(p + "attn_output", b.wo)) b.w.wo = b.wo.data();
    b.w.bo = fill(p + "attn_output.bias", b.bo) ? b.bo.data() : nullptr;
    if (fill(p + "ffn_down", b.w_down)) b.w.w_down = b.w_down.data();
    b.w.b_down = fill(p + "ffn_down.bias", b.b_down) ? b.b_down.data() : nullptr;
  }

 private:
  const PrunedModel& pruned_;
  std::map<std::string, size_t> index_;
};

// What a partly cut layer's own compensation added to its output bias (apply's add_partial_cut_compensation); zero
// without compensation.
std::vector<double> own_shift(const Model& m, const LayerWeights& source, const PlanLossRequest& r, int l, bool attn) {
  std::vector<double> shift(m.config.dim, 0.0);
  if (!r.plan[l].compensate || l >= static_cast<int>(r.means.size())) return shift;
  const LayerRefit* refit = r.refits && l < static_cast<int>(r.refits->size()) ? &(*r.refits)[l] : nullptr;
  add_partial_cut_compensation(m.config, l, source, r.plan[l], r.means[l], refit, attn, shift);
  return shift;
}

// The plan's block l with one partly cut layer restored: the source's projection, and the plan's bias less
// that layer's own compensation (what stays in it was folded there from other layers, or was there before).
LayerWeights restored(const Model& m, const LayerWeights& source, const PlanBlockWeights& plan, const PlanLossRequest& r, int l, bool attn,
                      std::vector<float>& bias) {
  LayerWeights w = plan.w;
  const float* plan_bias = attn ? plan.w.bo : plan.w.b_down;
  if (attn) w.wo = source.wo;
  else w.w_down = source.w_down;
  if (plan_bias) {
    const std::vector<double> shift = own_shift(m, source, r, l, attn);
    bias.resize(shift.size());
    for (size_t o = 0; o < shift.size(); ++o) bias[o] = static_cast<float>(plan_bias[o] - shift[o]);
  }
  (attn ? w.bo : w.b_down) = plan_bias ? bias.data() : nullptr;
  return w;
}

struct Variant {
  int block;
  bool attn;
};

// What both drivers need of a request: the zero-mode pruned model, the plan's configuration and the variants.
struct Prepared {
  PrunedModel pruned;
  ModelConfig plan_cfg;  // a layer removed whole (or with its block) is skipped, its bias still added
  std::vector<Variant> variants;
};

Prepared prepare(const Model& model, const TokenBatches& windows, const PlanLossRequest& request) {
  const ModelConfig& c = model.config;
  const int L = c.n_layers();
  if (windows.n_seqs <= 0 || windows.seq_len < 2) throw Error(ErrorCode::kInvalidArgument, model.path, "plan loss needs at least one window of 2 or more tokens");
  check_tokens(model, windows.tokens, static_cast<int64_t>(windows.n_seqs) * windows.seq_len);
  ApplyOptions zero;
  zero.zero_instead_of_slice = true;
  zero.refits = request.refits;
  Prepared p{prune_model(model, request.plan, request.means, zero), c, {}};  // prune_model checks the plan
  for (int l = 0; l < L; ++l) {
    const PlanBlock& b = request.plan[l];
    if (b.removed || b.kept_heads.empty()) p.plan_cfg.layers[l].n_head = 0;
    if (b.removed || b.kept_channels.empty()) p.plan_cfg.layers[l].ffn = 0;
  }
  if (request.leave_one_out)
    for (int l = 0; l < L; ++l) {
      if (attention_partly_cut(c, request.plan[l], l)) p.variants.push_back({l, true});
      if (mlp_partly_cut(c, request.plan[l], l)) p.variants.push_back({l, false});
    }
  return p;
}

// The token embeddings of the pruned model: the source's rows plus the shift apply folds into them, rounded as
// apply writes them.
void embed_pruned(const Model& model, const PrunedModel& pruned, const int32_t* toks, int64_t N, std::vector<float>& h) {
  const int d = model.config.dim;
  h.resize(static_cast<size_t>(N) * d);
  embed_tokens(model, toks, N, h.data());
  if (!pruned.embedding_shift.empty())
    for (int64_t r = 0; r < N; ++r)
      for (int j = 0; j < d; ++j) h[r * d + j] = static_cast<float>(h[r * d + j] + pruned.embedding_shift[j]);
}

// A group's per-position losses into a model's sums.
void add_sums(const std::vector<float>& nll, const std::vector<float>& kl, PlanLoss& sum) {
  for (float v : nll) sum.nll += v;
  for (float v : kl) sum.kl += v;
}

// What both drivers add each group's losses into: sums over every window (the intact model's NLL, the plan's, each
// variant's), made means by to_losses.
struct LossSums {
  explicit LossSums(size_t variants) : variant(variants) {}
  double intact = 0;
  PlanLoss plan;
  std::vector<PlanLoss> variant;
};

// Means of the sums over the windows, NaN for the variants not measured.
PlanLosses to_losses(int L, const std::vector<Variant>& variants, const LossSums& sums, const TokenBatches& windows) {
  const double predicted = static_cast<double>(windows.n_seqs) * (windows.seq_len - 1), positions = static_cast<double>(windows.n_seqs) * windows.seq_len;
  auto mean = [&](const PlanLoss& s) { return PlanLoss{s.nll / predicted, s.kl / positions}; };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  PlanLosses out;
  out.intact_nll = sums.intact / predicted;
  out.plan = mean(sums.plan);
  out.attn_restored.assign(L, PlanLoss{nan, nan});
  out.mlp_restored.assign(L, PlanLoss{nan, nan});
  for (size_t v = 0; v < variants.size(); ++v) (variants[v].attn ? out.attn_restored : out.mlp_restored)[variants[v].block] = mean(sums.variant[v]);
  return out;
}

// The CPU driver: block-major over groups of windows on the host, forward_block per state.
PlanLosses measure_on_cpu(const Model& model, const TokenBatches& windows, const PlanLossRequest& request, const std::atomic<bool>* cancel,
                          const StageProgress& progress) {
  const ModelConfig& c = model.config;
  const int L = c.n_layers(), d = c.dim, T = windows.seq_len, V = c.vocab;
  const Prepared prep = prepare(model, windows, request);
  const PrunedModel& pruned = prep.pruned;
  const PlanBlocks plan_blocks(pruned);
  const ModelConfig& plan_cfg = prep.plan_cfg;
  const std::vector<Variant>& variants = prep.variants;
  const int64_t per_window = static_cast<int64_t>(T) * 4 * (static_cast<int64_t>(d) * static_cast<int64_t>(2 + variants.size()) + 2ll * V);
  const int group = static_cast<int>(std::clamp<int64_t>(static_cast<int64_t>(request.memory_budget) / std::max<int64_t>(1, per_window), 1, windows.n_seqs));
  const int n_groups = (windows.n_seqs + group - 1) / group;
  RopeTables rope;
  rope_tables(c, 0, T, rope.cos, rope.sin);
  ForwardScratch scratch(c, static_cast<int64_t>(group) * T);

  LossSums sums(variants.size());
  int64_t done = 0;
  const int64_t total = static_cast<int64_t>(n_groups) * (L + 1);
  for (int g0 = 0; g0 < windows.n_seqs; g0 += group) {
    const int n = std::min(group, windows.n_seqs - g0);
    const int64_t N = static_cast<int64_t>(n) * T;
    const int32_t* toks = windows.tokens + static_cast<size_t>(g0) * T;
    std::vector<float> intact(static_cast<size_t>(N) * d), pruned_h;
    embed_tokens(model, toks, N, intact.data());
    embed_pruned(model, pruned, toks, N, pruned_h);
    std::vector<std::vector<float>> variant_h(variants.size());
    for (int l = 0; l < L; ++l) {
      LayerBuffers converted;
      const LayerWeights source = model.layer_weights(l, converted);
      PlanBlockWeights pb;
      plan_blocks.block(l, source, pb);
      forward_block(c, l, source, intact.data(), n, T, rope, scratch, nullptr, cancel);
      for (size_t v = 0; v < variants.size(); ++v) {
        if (variants[v].block > l) continue;
        if (variants[v].block < l) {
          forward_block(plan_cfg, l, pb.w, variant_h[v].data(), n, T, rope, scratch, nullptr, cancel);
        } else {
          variant_h[v] = pruned_h;  // the plan's states before block l
          std::vector<float> bias;
          const LayerWeights w = restored(model, source, pb, request, l, variants[v].attn, bias);
          forward_block(plan_cfg, l, w, variant_h[v].data(), n, T, rope, scratch, nullptr, cancel);
        }
      }
      forward_block(plan_cfg, l, pb.w, pruned_h.data(), n, T, rope, scratch, nullptr, cancel);
      if (progress) progress(++done, total);
    }
    // the output head (the pruned model's is the source's: apply unties it rather than change it)
    std::vector<float> y(static_cast<size_t>(N) * d), ref(static_cast<size_t>(N) * V), logits(static_cast<size_t>(N) * V);
    std::vector<float> nll(static_cast<size_t>(n) * (T - 1)), kl(static_cast<size_t>(N));
    auto head = [&](const std::vector<float>& h, std::vector<float>& out) {
      rmsnorm_cpu(h.data(), model.output_norm, y.data(), N, d, c.norm_eps);
      linear(y.data(), model.output, nullptr, out.data(), N, d, V);
    };
    head(intact, ref);
    log_softmax_rows_cpu(ref.data(), N, V);
    for (int64_t r = 0; r < N; ++r)
      if (r % T != T - 1) sums.intact -= ref[static_cast<size_t>(r) * V + toks[r + 1]];
    auto add = [&](const std::vector<float>& h, PlanLoss& sum) {
      head(h, logits);
      kl_next_token_rows_cpu(logits.data(), ref.data(), N, T, V, toks, kl.data(), nll.data());
      add_sums(nll, kl, sum);
    };
    add(pruned_h, sums.plan);
    for (size_t v = 0; v < variants.size(); ++v) add(variant_h[v], sums.variant[v]);
    if (progress) progress(++done, total);
  }
  return to_losses(L, variants, sums, windows);
}

// Block l's weights for a block runner, whose blocks keep the source's shapes: the output biases always given
// (zero where the pruned model has none), since a runner cannot skip a layer as plan_cfg lets the CPU.
struct RunnerBlock {
  LayerWeights w;
  std::vector<float> bo, b_down;
};
void with_biases(const LayerWeights& in, const ModelConfig& c, RunnerBlock& out) {
  out.w = in;
  const size_t d = static_cast<size_t>(c.dim);
  if (in.bo) out.bo.assign(in.bo, in.bo + d);
  else out.bo.assign(d, 0.0f);
  if (in.b_down) out.b_down.assign(in.b_down, in.b_down + d);
  else out.b_down.assign(d, 0.0f);
  out.w.bo = out.bo.data();
  out.w.b_down = out.b_down.data();
}

}  // namespace

PlanLosses measure_plan_losses_block_major(const Model& model, const TokenBatches& windows, const PlanLossRequest& request, const std::atomic<bool>* cancel,
                                           const StageProgress& progress, const PlanRunnerFactory& make_runner) {
  const ModelConfig& c = model.config;
  const int L = c.n_layers(), d = c.dim, T = windows.seq_len;
  const Prepared prep = prepare(model, windows, request);
  const PlanBlocks plan_blocks(prep.pruned);
  const std::vector<Variant>& variants = prep.variants;
  const int slots = 2 + static_cast<int>(variants.size());  // 0: intact, 1: the plan, 2..: the variants

  int group = windows.n_seqs;
  bool held = false;
  const std::unique_ptr<cuda::BlockRunner> runner = cuda::runner_holding_groups(make_runner, T, slots, group, held);

  LossSums sums(variants.size());
  const int n_groups = (windows.n_seqs + group - 1) / group;
  int64_t done = 0;
  const int64_t total = static_cast<int64_t>(n_groups) * (L + 1);
  for (int g0 = 0; g0 < windows.n_seqs; g0 += group) {
    const int n = std::min(group, windows.n_seqs - g0);
    const int64_t N = static_cast<int64_t>(n) * T;
    const int32_t* toks = windows.tokens + static_cast<size_t>(g0) * T;
    std::vector<std::vector<float>> host(held ? 0 : slots);
    auto batch = [&](int slot) {
      cuda::BlockBatch b;
      b.n_seqs = n;
      b.seq_len = T;
      if (held) b.held_row0 = slot * N;
      else b.host = host[slot].data();
      return b;
    };
    auto put = [&](int slot, const std::vector<float>& x) {
      if (held) runner->put_hidden(slot * N, x.data(), N);
      else host[slot] = x;
    };
    std::vector<float> h(static_cast<size_t>(N) * d);
    embed_tokens(model, toks, N, h.data());
    put(0, h);
    embed_pruned(model, prep.pruned, toks, N, h);
    put(1, h);
    for (int l = 0; l < L; ++l) {
      throw_if_cancelled(cancel);
      LayerBuffers converted;
      const LayerWeights source = model.layer_weights(l, converted);
      runner->load_block(l, source);
      runner->run(batch(0));
      PlanBlockWeights pb;
      plan_blocks.block(l, source, pb);
      // the plan's h_{l−1}, where this block's variants branch off
      if (held) {
        h.resize(static_cast<size_t>(N) * d);
        runner->get_hidden(N, h.data(), N);
      } else {
        h = host[1];
      }
      RunnerBlock plan_block;
      with_biases(pb.w, c, plan_block);
      runner->load_block(l, plan_block.w);
      runner->run(batch(1));
      for (size_t v = 0; v < variants.size(); ++v)
        if (variants[v].block < l) runner->run(batch(2 + static_cast<int>(v)));
      for (size_t v = 0; v < variants.size(); ++v) {
        if (variants[v].block != l) continue;
        std::vector<float> bias;
        RunnerBlock vb;
        with_biases(restored(model, source, pb, request, l, variants[v].attn, bias), c, vb);
        runner->load_block(l, vb.w);
        put(2 + static_cast<int>(v), h);
        runner->run(batch(2 + static_cast<int>(v)));
      }
      if (progress) progress(++done, total);
    }
    throw_if_cancelled(cancel);
    runner->load_output_head(model.output_norm, model.output, c.vocab);
    std::vector<float> nll(static_cast<size_t>(n) * (T - 1)), kl(static_cast<size_t>(N));
    runner->next_token_nll(batch(0), toks, nll.data(), nullptr);
    for (float v : nll) sums.intact += v;
    runner->keep_reference(batch(0));
    auto add = [&](int slot, PlanLoss& sum) {
      runner->compare_with_reference(batch(slot), toks, kl.data(), nll.data());
      add_sums(nll, kl, sum);
    };
    add(1, sums.plan);
    for (size_t v = 0; v < variants.size(); ++v) add(2 + static_cast<int>(v), sums.variant[v]);
    if (progress) progress(++done, total);
  }
  return to_losses(L, variants, sums, windows);
}

PlanLosses measure_plan_losses(const Model& model, const TokenBatches& windows, const PlanLossRequest& request, const std::atomic<bool>* cancel,
                               const StageProgress& progress, const RunDevices& device) {
  if (device.cuda_devices.empty()) return measure_on_cpu(model, windows, request, cancel, progress);
  RopeTables rope;
  rope_tables(model.config, 0, windows.seq_len, rope.cos, rope.sin);
  return measure_plan_losses_block_major(model, windows, request, cancel, progress, [&](int64_t max_rows) {
    cuda::BlockRunnerOptions o;
    o.device = device.cuda_devices.front();
    o.precision = device.precision;
    o.gemm = device.gemm;
    return cuda::BlockRunner::create(model.config, rope, windows.seq_len, max_rows, o);
  });
}

}  // namespace ep
