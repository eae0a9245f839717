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

std::shared_ptr<const RefitMomentCache::Entry> RefitMomentCache::find(uint64_t key, int layer, bool mlp) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (key != key_) return nullptr;
  auto it = entries_.find({layer, mlp});
  return it == entries_.end() ? nullptr : it->second;
}

void RefitMomentCache::put(uint64_t key, int layer, bool mlp, std::vector<double> mean, std::vector<double> covariance) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (key != key_) {  // other windows (or another model): what is held no longer applies
    entries_.clear();
    used_ = 0;
    key_ = key;
  }
  const uint64_t bytes = (mean.size() + covariance.size()) * sizeof(double);
  if (entries_.count({layer, mlp}) || used_ + bytes > budget_) return;
  entries_[{layer, mlp}] = std::make_shared<const Entry>(Entry{std::move(mean), std::move(covariance)});
  used_ += bytes;
}

uint64_t RefitMomentCache::bytes() {
  std::lock_guard<std::mutex> lock(mutex_);
  return used_;
}

uint64_t refit_cache_key(const Model& model, const TokenBatches& in, const RefitOptions& opt) {
  // FNV-1a over what the moments depend on; the tokens themselves, not their address (JS copies them per call).
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](uint64_t v) {
    for (int i = 0; i < 8; ++i, v >>= 8) h = (h ^ (v & 0xff)) * 1099511628211ull;
  };
  mix(model.instance);
  mix(static_cast<uint64_t>(in.n_seqs));
  mix(static_cast<uint64_t>(in.seq_len));
  for (int64_t i = 0; i < static_cast<int64_t>(in.n_seqs) * in.seq_len; ++i) mix(static_cast<uint32_t>(in.tokens[i]));
  mix(opt.runner ? 1 : 0);
  for (int d : opt.device.cuda_devices) mix(static_cast<uint64_t>(d) + 2);
  mix(opt.device.cuda_devices.empty() ? 0 : static_cast<uint64_t>(opt.device.precision) + 100);
  return h;
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
  auto solve = [&](const LayerInputTarget& t, const std::vector<double>& mean, const std::vector<double>& covariance) {
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
    ColumnRefit fit = refit_kept_columns(t.mlp ? w.w_down : w.wo, d, t.dim, kept, mean, covariance, opt.damping);
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
  };
  const uint64_t key = opt.cache ? refit_cache_key(model, in, opt) : 0;
  std::vector<LayerInputTarget> targets;  // the layers no earlier refit captured
  for (int l = 0; l < L; ++l)
    for (bool mlp : {false, true}) {
      if (!(mlp ? want_mlp : want_attn)[l]) continue;
      const LayerInputTarget t{l, mlp, layer_input_width(c, l, mlp)};
      if (auto held = opt.cache ? opt.cache->find(key, l, mlp) : nullptr) {
        solve(t, held->mean, held->covariance);
        ++rep.cached;
      } else {
        targets.push_back({l, mlp});
      }
    }
  const LayerInputRunnerFactory runner = opt.runner ? opt.runner : layer_input_runner(model, opt.device, in.seq_len);
  rep.passes = capture_layer_inputs(model, targets, in, opt.memory_budget, cancel, progress, [&](const LayerInputTarget& t, const Moments& mo) {
    std::vector<double> mean = mo.mean(), covariance = mo.covariance();
    solve(t, mean, covariance);
    if (opt.cache) opt.cache->put(key, t.layer, t.mlp, std::move(mean), std::move(covariance));
  }, LayerInputOrder::kAuto, runner);
  if (report) *report = rep;
  return out;
}

}  // namespace ep
