#include "core/apply/refit.h"

#include <algorithm>

#include "core/device/layer_input_passes.h"
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
  std::vector<LayerInputTarget> targets;
  for (int l = 0; l < L; ++l) {
    if (want_attn[l]) targets.push_back({l, false});
    if (want_mlp[l]) targets.push_back({l, true});
  }
  const LayerInputRunnerFactory runner = opt.runner ? opt.runner : layer_input_runner(model, opt.device, in.seq_len);
  rep.passes = capture_layer_inputs(model, targets, in, opt.memory_budget, cancel, progress, [&](const LayerInputTarget& t, const Moments& mo) {
    const PlanBlock& b = plan[t.layer];
    LayerBuffers converted;  // a streamed model's block matrices, for this layer only
    const LayerWeights w = model.layer_weights(t.layer, converted);
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
  }, LayerInputOrder::kAuto, runner);
  if (report) *report = rep;
  return out;
}

}  // namespace ep
