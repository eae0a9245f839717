#include "core/measure/removal_parts.h"

#include <algorithm>

namespace ep::removal {

void CutProjection::cut_units(const float* w, const float* b, int rows, int cols, int unit_width, const PartialCut& cut) {
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

void CutProjection::remove_all(int rows, int cols, const std::vector<float>* mean) {
  proj.assign(static_cast<size_t>(rows) * cols, 0.0f);
  bias.assign(rows, 0.0f);
  if (mean) std::copy(mean->begin(), mean->begin() + rows, bias.begin());
}

LayerWeights removed_by_weights(const Model& model, int l, const LayerWeights& w, int kind, const SublayerMeans& means, const PartialCuts* partial,
                                CutProjection storage[2]) {
  const ModelConfig& c = model.config;
  const LayerShape& s = c.layers[l];
  const int d = c.dim, qd = s.n_head * c.head_dim;
  const bool compensate = !means.attn_out.empty();
  LayerWeights out = w;
  auto set_attn = [&](CutProjection& p) { out.wo = p.proj.data(), out.bo = p.bias.data(); };
  auto set_mlp = [&](CutProjection& p) { out.w_down = p.proj.data(), out.b_down = p.bias.data(); };
  if ((kind == kAttn || kind == kBlock) && s.n_head > 0) {
    storage[0].remove_all(d, qd, compensate ? &means.attn_out[l] : nullptr);
    set_attn(storage[0]);
  }
  if ((kind == kMlp || kind == kBlock) && s.ffn > 0) {
    storage[1].remove_all(d, s.ffn, compensate ? &means.mlp_out[l] : nullptr);
    set_mlp(storage[1]);
  }
  if (kind == kAttnCut) {
    storage[0].cut_units(w.wo, w.bo, d, qd, c.head_dim, partial->attn[l]);
    set_attn(storage[0]);
  }
  if (kind == kMlpCut) {
    storage[1].cut_units(w.w_down, w.b_down, d, s.ffn, 1, partial->mlp[l]);
    set_mlp(storage[1]);
  }
  return out;
}

RemovalDamage to_damage(const ModelConfig& c, const PartialCuts* partial, const DamageSums& s, int n_seqs, int seq_len) {
  const int L = c.n_layers();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double predicted = static_cast<double>(n_seqs) * (seq_len - 1), positions = static_cast<double>(n_seqs) * seq_len;
  auto part = [](PartDamage& p, int k) -> std::vector<double>& { return k == 0 ? p.attn : k == 1 ? p.mlp : p.block; };
  RemovalDamage out;
  out.base_nll = s.base_nll / predicted;
  for (int kind = 0; kind < kKinds; ++kind) {
    PartDamage& nll = kind < 3 ? out.nll : out.partial_nll;
    PartDamage& kl = kind < 3 ? out.kl : out.partial_kl;
    const int k = kind < 3 ? kind : kind - 3;
    part(nll, k).assign(L, nan);
    part(kl, k).assign(L, nan);
    for (int l = 0; l < L; ++l)
      if (present(c, partial, l, kind)) {
        part(nll, k)[l] = s.nll[kKinds * l + kind] / predicted;
        part(kl, k)[l] = s.kl[kKinds * l + kind] / positions;
      }
  }
  out.partial_nll.block.assign(L, nan);
  out.partial_kl.block.assign(L, nan);
  return out;
}

}  // namespace ep::removal
