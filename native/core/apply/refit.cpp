#include "core/apply/refit.h"

#include <algorithm>

#include "core/capture/layer_inputs.h"
#include "core/error.h"

namespace ep {

void refit_targets(const ModelConfig& c, const std::vector<PlanBlock>& plan, std::vector<char>* attn, std::vector<char>* mlp) {
  const int L = c.n_layers();
  attn->assign(L, 0);
  mlp->assign(L, 0);
  for (int l = 0; l < L && l < static_cast<int>(plan.size()); ++l) {
    const PlanBlock& b = plan[l];
    const LayerShape& s = c.layers[l];
    if (b.removed || !b.compensate) continue;
    const int heads = static_cast<int>(b.kept_heads.size()), channels = static_cast<int>(b.kept_channels.size());
    (*attn)[l] = s.n_head > 0 && heads > 0 && heads < s.n_head;
    (*mlp)[l] = s.ffn > 0 && channels > 0 && channels < s.ffn;
  }
}

std::vector<LayerRefit> refit_plan(const Model& model, const std::vector<PlanBlock>& plan, const TokenBatches& in, const RefitOptions& opt,
                                   const std::atomic<bool>* cancel, const StageProgress& progress, RefitReport* report) {
  check_plan(model, plan, {});
  const ModelConfig& c = model.config;
  const int L = c.n_layers();
  const int64_t d = c.dim, hd = c.head_dim;
  std::vector<LayerRefit> out(L);
  RefitReport rep;
  std::vector<char> want_attn, want_mlp;
  refit_targets(c, plan, &want_attn, &want_mlp);
  // (layer, is_mlp) in order, grouped so each group's accumulators fit the budget
  struct Target { int layer; bool mlp; int64_t dim; };
  std::vector<std::vector<Target>> groups;
  uint64_t used = 0;
  for (int l = 0; l < L; ++l)
    for (int kind = 0; kind < 2; ++kind) {
      const bool mlp = kind == 1;
      if (!(mlp ? want_mlp[l] : want_attn[l])) continue;
      const int64_t dim = mlp ? c.layers[l].ffn : static_cast<int64_t>(c.layers[l].n_head) * hd;
      const uint64_t bytes = LayerInputCapture::bytes_for(dim);
      if (groups.empty() || used + bytes > opt.memory_budget) {
        groups.emplace_back();
        used = 0;
      }
      groups.back().push_back({l, mlp, dim});
      used += bytes;
    }
  if (groups.empty()) {
    if (report) *report = rep;
    return out;
  }
  if (in.n_seqs <= 0 || in.seq_len <= 0 || in.batch_seqs <= 0) throw Error(ErrorCode::kInvalidArgument, model.path, "least-squares compensation needs calibration windows");
  const int64_t total = static_cast<int64_t>(in.n_seqs) * static_cast<int64_t>(groups.size());
  for (const auto& group : groups) {
    std::vector<char> ga(L, 0), gm(L, 0);
    for (const Target& t : group) (t.mlp ? gm : ga)[t.layer] = 1;
    LayerInputCapture capture(c, ga, gm);
    const int64_t before = static_cast<int64_t>(rep.passes) * in.n_seqs;
    forward_batches(model, in, capture, cancel, [&](int done) {
      if (progress) progress(before + done, total);
    });
    ++rep.passes;
    for (const Target& t : group) {
      const PlanBlock& b = plan[t.layer];
      LayerBuffers converted;  // a streamed model's block matrices, for this layer only
      const LayerWeights w = model.layer_weights(t.layer, converted);
      const Moments& mo = t.mlp ? *capture.mlp_input(t.layer) : *capture.attn_input(t.layer);
      std::vector<int64_t> kept;
      if (t.mlp) {
        for (int j : b.kept_channels) kept.push_back(j);
      } else {
        for (int h : b.kept_heads)
          for (int64_t e = 0; e < hd; ++e) kept.push_back(h * hd + e);
      }
      ColumnRefit fit = refit_kept_columns(t.mlp ? w.w_down : w.wo, d, t.dim, kept, mo.mean(), mo.covariance(), opt.damping);
      if (!fit.refitted) ++rep.fallbacks;
      else if (fit.damping > opt.damping) ++rep.undamped_failures;
      ++rep.layers_refitted;
      if (t.mlp) {
        out[t.layer].mlp = true;
        out[t.layer].down_proj = std::move(fit);
      } else {
        out[t.layer].attn = true;
        out[t.layer].o_proj = std::move(fit);
      }
    }
  }
  if (report) *report = rep;
  return out;
}

}  // namespace ep
