#include "core/apply/apply.h"

#include <cmath>
#include <cstring>
#include <memory>

#include "core/error.h"

namespace ep {

void check_plan(const Model& m, const std::vector<PlanBlock>& plan, const std::vector<BlockMeans>& means) {
  const ModelConfig& c = m.config;
  auto bad = [&](size_t l, const std::string& what) {
    throw Error(ErrorCode::kInvalidArgument, m.path, "plan block " + std::to_string(l) + ": " + what);
  };
  if (plan.size() != c.layers.size())
    throw Error(ErrorCode::kInvalidArgument, m.path,
                "the plan has " + std::to_string(plan.size()) + " blocks but the model has " + std::to_string(c.layers.size()) +
                    " (a plan for another model?)");
  for (size_t l = 0; l < plan.size(); ++l) {
    const PlanBlock& b = plan[l];
    const LayerShape& s = c.layers[l];
    for (int h : b.kept_heads) if (h < 0 || h >= s.n_head) bad(l, "kept head " + std::to_string(h) + " out of range");
    for (int g : b.kept_kv) if (g < 0 || g >= s.n_kv_head) bad(l, "kept KV head " + std::to_string(g) + " out of range");
    for (int j : b.kept_channels) if (j < 0 || j >= s.ffn) bad(l, "kept channel " + std::to_string(j) + " out of range");
    if (!b.kept_heads.empty()) {
      const int G = s.n_head / s.n_kv_head;
      const int per = static_cast<int>(b.kept_heads.size() / b.kept_kv.size());
      if (b.kept_heads.size() % b.kept_kv.size() != 0) bad(l, "kept heads are not spread evenly over kept KV heads");
      for (size_t i = 0; i < b.kept_heads.size(); ++i)
        if (b.kept_heads[i] / G != b.kept_kv[i / per]) bad(l, "kept heads must be grouped by kept KV head, ascending");
    }
    if (b.compensate && l < means.size()) {
      const BlockMeans& mm = means[l];
      const bool heads_cut = s.n_head > 0 && static_cast<int>(b.kept_heads.size()) < s.n_head;
      const bool ch_cut = s.ffn > 0 && static_cast<int>(b.kept_channels.size()) < s.ffn;
      if (heads_cut && !b.kept_heads.empty() && mm.head_mean.size() != static_cast<size_t>(s.n_head) * c.head_dim) bad(l, "missing head means for compensation");
      if (ch_cut && !b.kept_channels.empty() && mm.channel_mean.size() != static_cast<size_t>(s.ffn)) bad(l, "missing channel means for compensation");
    }
  }
}

namespace {

// Rows [r0, r0+n) of a row-major [rows, cols] matrix.
void copy_rows(const float* src, int64_t cols, const std::vector<int64_t>& rows, float* dst) {
  for (size_t i = 0; i < rows.size(); ++i) std::memcpy(dst + i * cols, src + rows[i] * cols, cols * sizeof(float));
}
void copy_cols(const float* src, int64_t rows, int64_t cols, const std::vector<int64_t>& keep, float* dst) {
  const int64_t k = static_cast<int64_t>(keep.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < k; ++j) dst[r * k + j] = src[r * cols + keep[j]];
}

// Overwrite the kept columns of dst ([rows × cols.size()], cols = the written input indices, all of them in zero
// mode) with a refit's columns ([rows × kept], kept = the alive ones among cols, in the same order).
void place_refit(const std::vector<float>& refit, int64_t rows, const std::vector<int64_t>& cols, const std::vector<char>& alive, float* dst) {
  const int64_t n = static_cast<int64_t>(cols.size());
  int64_t kept = 0;
  for (int64_t j = 0; j < n; ++j) kept += alive[cols[j]] ? 1 : 0;
  for (int64_t r = 0; r < rows; ++r) {
    int64_t i = 0;
    for (int64_t j = 0; j < n; ++j)
      if (alive[cols[j]]) dst[r * n + j] = refit[r * kept + i++];
  }
}

// Block l's float matrices for the deferred tensor fills. The writers ask for a block's tensors one after
// another, so caching the last block keeps a streamed model's conversions at one block in memory and one
// conversion per block; a model bound at load just hands out its views.
class BlockCache {
 public:
  explicit BlockCache(const Model& m) : m_(m) {}
  const LayerWeights& get(int l) {
    if (!m_.streams_layers()) return m_.layers[l];
    if (l != cached_) {
      buffers_.clear();
      weights_ = m_.layer_weights(l, buffers_);
      cached_ = l;
    }
    return weights_;
  }

 private:
  const Model& m_;
  int cached_ = -1;
  LayerBuffers buffers_;
  LayerWeights weights_;
};

}  // namespace

void add_partial_cut_compensation(const ModelConfig& c, int l, const LayerWeights& w, const PlanBlock& b, const BlockMeans& mm, const LayerRefit* refit, bool attn,
                                  std::vector<double>& bias) {
  const LayerShape& s = c.layers[l];
  const int64_t d = c.dim, hd = c.head_dim;
  if (attn) {  // bo += Wo[:, removed] · μ, or the least-squares refit's shift
    if (refit && refit->attn) {
      for (int64_t o = 0; o < d; ++o) bias[o] += refit->o_proj.shift[o];
      return;
    }
    std::vector<char> kept(s.n_head, 0);
    for (int h : b.kept_heads) kept[h] = 1;
    const int64_t q = s.n_head * hd;
    for (int h = 0; h < s.n_head; ++h) {
      if (kept[h]) continue;
      for (int64_t o = 0; o < d; ++o)
        for (int64_t e = 0; e < hd; ++e) bias[o] += static_cast<double>(w.wo[o * q + h * hd + e]) * mm.head_mean[h * hd + e];
    }
  } else {  // b_down += Wdown[:, removed] · μ, or the least-squares refit's shift
    if (refit && refit->mlp) {
      for (int64_t o = 0; o < d; ++o) bias[o] += refit->down_proj.shift[o];
      return;
    }
    std::vector<char> kept(s.ffn, 0);
    for (int j : b.kept_channels) kept[j] = 1;
    for (int j = 0; j < s.ffn; ++j) {
      if (kept[j]) continue;
      for (int64_t o = 0; o < d; ++o) bias[o] += static_cast<double>(w.w_down[o * s.ffn + j]) * mm.channel_mean[j];
    }
  }
}

PrunedModel prune_model(const Model& m, const std::vector<PlanBlock>& plan, const std::vector<BlockMeans>& means, const ApplyOptions& opt) {
  check_plan(m, plan, means);
  // Block l's least-squares refit, if any. The fills below point into opt.refits rather than copy the refitted
  // columns (the size of the kept o_proj and down_proj): like the model, it must outlive the pruned tensors' fills.
  auto refit_of = [&opt](int l) -> const LayerRefit* {
    return opt.refits && l < static_cast<int>(opt.refits->size()) ? &(*opt.refits)[l] : nullptr;
  };
  const ModelConfig& c = m.config;
  const int64_t d = c.dim, hd = c.head_dim;
  const int L = c.n_layers();
  const bool zero = opt.zero_instead_of_slice;

  // ---- bias compensation constants (double), per source block
  std::vector<std::vector<double>> attn_bias(L), down_bias(L);
  std::vector<double> embed_shift;
  auto bias_of = [&](std::vector<std::vector<double>>& v, int l, const float* existing) -> std::vector<double>& {
    if (v[l].empty()) {
      v[l].assign(d, 0.0);
      if (existing) for (int64_t j = 0; j < d; ++j) v[l][j] = existing[j];
    }
    return v[l];
  };
  // Existing biases of the source carry over on the layers that stay. A removed layer's own bias is part of
  // its calibration mean output (E[a] / E[m]), which compensation folds elsewhere, so it is not kept twice.
  for (int l = 0; l < L; ++l) {
    const bool attn_gone = c.layers[l].n_head > 0 && plan[l].kept_heads.empty();
    const bool mlp_gone = c.layers[l].ffn > 0 && plan[l].kept_channels.empty();
    if (plan[l].removed) continue;
    if (m.layers[l].bo && !attn_gone) bias_of(attn_bias, l, m.layers[l].bo);
    if (m.layers[l].b_down && !mlp_gone) bias_of(down_bias, l, m.layers[l].b_down);
  }
  auto block_alive = [&](int l) { return !plan[l].removed; };
  // Fold a constant into the nearest earlier surviving block (its down bias, or its attention bias when
  // its MLP is gone), or into the token embeddings.
  auto fold_earlier = [&](int l, const std::vector<double>& cst) {
    for (int k = l - 1; k >= 0; --k) {
      if (!block_alive(k)) continue;
      std::vector<double>& b = plan[k].mlp_removed ? bias_of(attn_bias, k, m.layers[k].bo) : bias_of(down_bias, k, m.layers[k].b_down);
      for (int64_t j = 0; j < d; ++j) b[j] += cst[j];
      return;
    }
    if (embed_shift.empty()) embed_shift.assign(d, 0.0);
    for (int64_t j = 0; j < d; ++j) embed_shift[j] += cst[j];
  };
  for (int l = 0; l < L; ++l) {
    const PlanBlock& b = plan[l];
    const LayerShape& s = c.layers[l];
    if (!b.compensate || l >= static_cast<int>(means.size())) continue;
    LayerBuffers converted;  // a streamed model's block matrices, for this block's compensation only
    const LayerWeights w = m.layer_weights(l, converted);
    const BlockMeans& mm = means[l];
    const bool attn_gone = s.n_head > 0 && b.kept_heads.empty();
    const bool mlp_gone = s.ffn > 0 && b.kept_channels.empty();
    const LayerRefit* refit = refit_of(l);
    // removed heads of a kept attention layer / removed channels of a kept MLP: their own compensation
    if ((refit && refit->attn) || (s.n_head > 0 && !attn_gone && static_cast<int>(b.kept_heads.size()) < s.n_head))
      add_partial_cut_compensation(c, l, w, b, mm, refit, true, bias_of(attn_bias, l, w.bo));
    if ((refit && refit->mlp) || (s.ffn > 0 && !mlp_gone && static_cast<int>(b.kept_channels.size()) < s.ffn))
      add_partial_cut_compensation(c, l, w, b, mm, refit, false, bias_of(down_bias, l, w.b_down));
    if (b.removed) {  // whole block: E[Δ] = E[a] + E[m] upstream
      std::vector<double> cst(d, 0.0);
      if (s.n_head > 0 && mm.attn_out_mean.size() == static_cast<size_t>(d)) for (int64_t j = 0; j < d; ++j) cst[j] += mm.attn_out_mean[j];
      if (s.ffn > 0 && mm.mlp_out_mean.size() == static_cast<size_t>(d)) for (int64_t j = 0; j < d; ++j) cst[j] += mm.mlp_out_mean[j];
      // biases the removed block already had are part of its output too (a constant the block added)
      if (s.n_head == 0 && w.bo) for (int64_t j = 0; j < d; ++j) cst[j] += w.bo[j];
      if (s.ffn == 0 && w.b_down) for (int64_t j = 0; j < d; ++j) cst[j] += w.b_down[j];
      fold_earlier(l, cst);
      continue;
    }
    if (mlp_gone && mm.mlp_out_mean.size() == static_cast<size_t>(d)) {  // same block's attention bias, or upstream
      if (!attn_gone && s.n_head > 0) {
        std::vector<double>& bo = bias_of(attn_bias, l, w.bo);
        for (int64_t j = 0; j < d; ++j) bo[j] += mm.mlp_out_mean[j];
      } else {
        fold_earlier(l, mm.mlp_out_mean);
      }
    }
    if (attn_gone && mm.attn_out_mean.size() == static_cast<size_t>(d)) fold_earlier(l, mm.attn_out_mean);
  }

  // Runtimes ignore biases on attention-free layers (llama.cpp's deci): move such constants upstream.
  for (int l = 0; l < L; ++l) {
    const bool has_attn = c.layers[l].n_head > 0 && !plan[l].kept_heads.empty();
    if (!plan[l].removed && !has_attn && !attn_bias[l].empty()) {
      std::vector<double> cst = attn_bias[l];
      attn_bias[l].clear();
      fold_earlier(l, cst);
    }
  }

  // ---- the pruned configuration and tensors
  PrunedModel out;
  out.config = c;
  out.config.layers.clear();
  const bool embed_changed = !embed_shift.empty();
  if (embed_changed) {
    double n2 = 0;
    for (double v : embed_shift) n2 += v * v;
    out.embedding_shift_norm = std::sqrt(n2);
    out.embedding_shift = embed_shift;
    out.config.tied_output = false;  // the head keeps the original embedding
  }
  auto add = [&](std::string name, std::vector<int64_t> shape, std::function<void(float*)> fill) {
    out.tensors.push_back({std::move(name), std::move(shape), std::move(fill)});
  };
  const int64_t V = c.vocab;
  auto shift = std::make_shared<std::vector<double>>(embed_shift);
  add("tok_embd", {V, d}, [&m, V, d, shift](float* dst) {
    std::memcpy(dst, m.tok_embd, V * d * sizeof(float));
    if (!shift->empty())
      for (int64_t r = 0; r < V; ++r)
        for (int64_t j = 0; j < d; ++j) dst[r * d + j] = static_cast<float>(dst[r * d + j] + (*shift)[j]);
  });
  add("output_norm", {d}, [&m, d](float* dst) { std::memcpy(dst, m.output_norm, d * sizeof(float)); });
  if (!out.config.tied_output) add("output", {V, d}, [&m, V, d](float* dst) { std::memcpy(dst, m.output, V * d * sizeof(float)); });

  auto blocks = std::make_shared<BlockCache>(m);
  int nl = 0;
  for (int l = 0; l < L; ++l) {
    const PlanBlock& b = plan[l];
    if (b.removed && !zero) continue;
    const LayerShape& s = c.layers[l];
    // The fills run later, tensor by tensor as the writer asks; `weight(&LayerWeights::wq)` fetches the
    // source matrix then, through a one-block cache so that a streamed model converts each block once.
    auto weight = [blocks, l](const float* LayerWeights::*field) { return [blocks, l, field] { return blocks->get(l).*field; }; };
    const LayerWeights& w = m.layers[l];  // norms and biases: always bound
    LayerShape ns;
    const std::string p = "blk." + std::to_string(nl) + ".";
    const bool keep_attn = s.n_head > 0 && !b.kept_heads.empty();
    const bool keep_mlp = s.ffn > 0 && !b.kept_channels.empty();
    // index lists (rows of q/o per kept head, rows of k/v per kept KV head, channels)
    auto head_rows = std::make_shared<std::vector<int64_t>>();
    auto kv_rows = std::make_shared<std::vector<int64_t>>();
    auto channels = std::make_shared<std::vector<int64_t>>();
    if (zero) {  // full index sets; removed units are zeroed below
      for (int64_t i = 0; i < s.n_head * hd; ++i) head_rows->push_back(i);
      for (int64_t i = 0; i < s.n_kv_head * hd; ++i) kv_rows->push_back(i);
      for (int64_t i = 0; i < s.ffn; ++i) channels->push_back(i);
    } else {
      for (int h : b.kept_heads) for (int64_t e = 0; e < hd; ++e) head_rows->push_back(h * hd + e);
      for (int g : b.kept_kv) for (int64_t e = 0; e < hd; ++e) kv_rows->push_back(g * hd + e);
      for (int j : b.kept_channels) channels->push_back(j);
    }
    // zero masks: which rows/channels survive
    auto head_alive = std::make_shared<std::vector<char>>(s.n_head * hd, 0), kv_alive = std::make_shared<std::vector<char>>(s.n_kv_head * hd, 0),
         ch_alive = std::make_shared<std::vector<char>>(s.ffn, 0);
    for (int h : b.kept_heads) for (int64_t e = 0; e < hd; ++e) (*head_alive)[h * hd + e] = 1;
    for (int g : b.kept_kv) for (int64_t e = 0; e < hd; ++e) (*kv_alive)[g * hd + e] = 1;
    for (int j : b.kept_channels) (*ch_alive)[j] = 1;

    const bool write_attn = zero ? s.n_head > 0 : keep_attn;
    const bool write_mlp = zero ? s.ffn > 0 : keep_mlp;
    if (write_attn) {
      ns.n_head = zero ? s.n_head : static_cast<int>(b.kept_heads.size());
      ns.n_kv_head = zero ? s.n_kv_head : static_cast<int>(b.kept_kv.size());
      const int64_t q = s.n_head * hd, nq = static_cast<int64_t>(head_rows->size()), nkv = static_cast<int64_t>(kv_rows->size());
      auto rows_with_mask = [zero](std::function<const float*()> src, int64_t cols, std::shared_ptr<std::vector<int64_t>> rows,
                                   std::shared_ptr<std::vector<char>> alive) {
        return [=](float* dst) {
          copy_rows(src(), cols, *rows, dst);
          if (zero) for (size_t i = 0; i < rows->size(); ++i) if (!(*alive)[(*rows)[i]]) std::memset(dst + i * cols, 0, cols * sizeof(float));
        };
      };
      add(p + "attn_norm", {d}, [w, d](float* dst) { std::memcpy(dst, w.attn_norm, d * sizeof(float)); });
      add(p + "attn_q", {nq, d}, rows_with_mask(weight(&LayerWeights::wq), d, head_rows, head_alive));
      add(p + "attn_k", {nkv, d}, rows_with_mask(weight(&LayerWeights::wk), d, kv_rows, kv_alive));
      add(p + "attn_v", {nkv, d}, rows_with_mask(weight(&LayerWeights::wv), d, kv_rows, kv_alive));
      // the least-squares refit's columns, in kept-head order (each kept head's head_dim rows of Wo's input)
      const std::vector<float>* wo_refit = refit_of(l) && refit_of(l)->attn ? &refit_of(l)->o_proj.weight : nullptr;
      add(p + "attn_output", {d, nq}, [wo = weight(&LayerWeights::wo), d, q, head_rows, head_alive, zero, wo_refit](float* dst) {
        copy_cols(wo(), d, q, *head_rows, dst);
        if (wo_refit) place_refit(*wo_refit, d, *head_rows, *head_alive, dst);
        const int64_t k = static_cast<int64_t>(head_rows->size());
        if (zero) for (int64_t r = 0; r < d; ++r) for (int64_t j = 0; j < k; ++j) if (!(*head_alive)[(*head_rows)[j]]) dst[r * k + j] = 0;
      });
      if (s.attn_qkv_bias) {
        ns.attn_qkv_bias = true;
        auto vec = [zero](const float* src, std::shared_ptr<std::vector<int64_t>> rows, std::shared_ptr<std::vector<char>> alive) {
          return [=](float* dst) {
            for (size_t i = 0; i < rows->size(); ++i) dst[i] = (zero && !(*alive)[(*rows)[i]]) ? 0.0f : src[(*rows)[i]];
          };
        };
        add(p + "attn_q.bias", {nq}, vec(w.bq, head_rows, head_alive));
        add(p + "attn_k.bias", {nkv}, vec(w.bk, kv_rows, kv_alive));
        add(p + "attn_v.bias", {nkv}, vec(w.bv, kv_rows, kv_alive));
      }
    }
    if (write_mlp) {
      ns.ffn = static_cast<int>(channels->size());
      const int64_t f = s.ffn, nf = ns.ffn;
      auto rows_masked = [zero, d](std::function<const float*()> src, std::shared_ptr<std::vector<int64_t>> rows,
                                   std::shared_ptr<std::vector<char>> alive) {
        return [=](float* dst) {
          copy_rows(src(), d, *rows, dst);
          if (zero) for (size_t i = 0; i < rows->size(); ++i) if (!(*alive)[(*rows)[i]]) std::memset(dst + i * d, 0, d * sizeof(float));
        };
      };
      add(p + "ffn_norm", {d}, [w, d](float* dst) { std::memcpy(dst, w.ffn_norm, d * sizeof(float)); });
      add(p + "ffn_gate", {nf, d}, rows_masked(weight(&LayerWeights::w_gate), channels, ch_alive));
      add(p + "ffn_up", {nf, d}, rows_masked(weight(&LayerWeights::w_up), channels, ch_alive));
      const std::vector<float>* down_refit = refit_of(l) && refit_of(l)->mlp ? &refit_of(l)->down_proj.weight : nullptr;
      add(p + "ffn_down", {d, nf}, [w_down = weight(&LayerWeights::w_down), d, f, channels, ch_alive, zero, down_refit](float* dst) {
        copy_cols(w_down(), d, f, *channels, dst);
        if (down_refit) place_refit(*down_refit, d, *channels, *ch_alive, dst);
        const int64_t k = static_cast<int64_t>(channels->size());
        if (zero) for (int64_t r = 0; r < d; ++r) for (int64_t j = 0; j < k; ++j) if (!(*ch_alive)[(*channels)[j]]) dst[r * k + j] = 0;
      });
    }
    // In zero mode a removed block keeps its shapes but every weight is zero: its output is exactly 0 and the
    // compensation constants sit where the sliced model has them.
    if (!attn_bias[l].empty()) {
      ns.attn_out_bias = true;
      auto v = std::make_shared<std::vector<double>>(attn_bias[l]);
      add(p + "attn_output.bias", {d}, [v, d](float* dst) { for (int64_t j = 0; j < d; ++j) dst[j] = static_cast<float>((*v)[j]); });
    }
    if (!down_bias[l].empty()) {
      ns.ffn_down_bias = true;
      auto v = std::make_shared<std::vector<double>>(down_bias[l]);
      add(p + "ffn_down.bias", {d}, [v, d](float* dst) { for (int64_t j = 0; j < d; ++j) dst[j] = static_cast<float>((*v)[j]); });
    }
    out.config.layers.push_back(ns);
    out.source_block.push_back(l);
    ++nl;
  }
  if (out.config.layers.empty()) throw Error(ErrorCode::kInvalidArgument, m.path, "the plan removes every block");
  return out;
}

}  // namespace ep
