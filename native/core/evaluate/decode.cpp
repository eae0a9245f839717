#include "core/evaluate/decode.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"
#include "core/forward/forward.h"
#include "core/forward/layer_ops.h"
#include "core/forward/ops_cpu.h"
#include "core/forward/simd_math.h"
#include "core/forward/threads.h"

namespace ep {

namespace {

// Attention of n new positions (from pos) over the cache, themselves included: q [n, qd] → att [n, qd].
void attend_to_cache(const ModelConfig& c, const LayerShape& s, const float* q, const float* kc, const float* vc, float* att, int pos, int n) {
  const int hd = c.head_dim, qd = s.n_head * hd, kvd = s.n_kv_head * hd, group = s.n_head / s.n_kv_head;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
#pragma omp parallel if (static_cast<int64_t>(n) * s.n_head * (pos + n) * hd >= kParallelMinWork)
  {
    std::vector<float> score(static_cast<size_t>(pos) + n);
#pragma omp for schedule(static) collapse(2)
    for (int i = 0; i < n; ++i) {
      for (int h = 0; h < s.n_head; ++h) {
        const int p = pos + i, g = h / group;
        const int j0 = c.sliding_window > 0 ? std::max(0, p - c.sliding_window + 1) : 0, m = p + 1 - j0;
        const float* qi = &q[static_cast<size_t>(i) * qd + h * hd];
        for (int j = 0; j < m; ++j) score[j] = simd::dot(qi, kc + static_cast<size_t>(j0 + j) * kvd + g * hd, hd) * scale;
        const float inv = 1.0f / simd::exp_shift_sum(score.data(), m, simd::max(score.data(), m));
        float* o = &att[static_cast<size_t>(i) * qd + h * hd];
        std::fill(o, o + hd, 0.0f);
        for (int j = 0; j < m; ++j) simd::axpy(score[j] * inv, vc + static_cast<size_t>(j0 + j) * kvd + g * hd, o, hd);
      }
    }
  }
}

}  // namespace

DecodeSession::DecodeSession(const Model& model, int max_len) : model_(model), max_len_(max_len) {
  if (max_len <= 0) throw Error(ErrorCode::kInvalidArgument, model.path, "decode length must be positive");
  // Token-by-token decoding touches every block per token: converting streamed blocks on each step would be
  // slower than any use of it, so generation needs the weights bound at load.
  if (model.streams_layers())
    throw Error(ErrorCode::kUnsupported, model.path, "generation needs the model loaded without layer streaming (drop --stream)");
  const ModelConfig& c = model.config;
  // A one-token step reads every weight once: from the bfloat16 originals when the file has them (half the
  // bytes of the float32 copies the batched products use).
  for (int l = 0; l < c.n_layers(); ++l) stored_.push_back(stored_matrices(model, l));
  stored_head_ = stored_output(model);
  k_.resize(c.n_layers());
  v_.resize(c.n_layers());
  for (int l = 0; l < c.n_layers(); ++l) {
    const size_t n = static_cast<size_t>(max_len) * c.layers[l].n_kv_head * c.head_dim;
    k_[l].assign(n, 0.0f);
    v_[l].assign(n, 0.0f);
  }
}

int64_t DecodeSession::cache_bytes() const {
  int64_t b = 0;
  for (size_t l = 0; l < k_.size(); ++l) b += static_cast<int64_t>(k_[l].size() + v_[l].size()) * 4;
  return b;
}

void DecodeSession::step(const int32_t* tokens, int n, float* logits, const std::atomic<bool>* cancel) {
  const ModelConfig& c = model_.config;
  if (n <= 0) throw Error(ErrorCode::kInvalidArgument, model_.path, "decode step needs at least one token");
  if (pos_ + n > max_len_)
    throw Error(ErrorCode::kInvalidArgument, model_.path,
                "decode session is full (" + std::to_string(max_len_) + " positions): start a longer one");
  check_tokens(model_, tokens, n);
  num_threads();
  const int d = c.dim, hd = c.head_dim;
  ForwardScratch buf(c, n);
  std::vector<float> x(static_cast<size_t>(n) * d);
  RopeTables rope;
  rope_tables(c, pos_, n, rope.cos, rope.sin);
  embed_tokens(model_, tokens, n, x.data());

  for (int l = 0; l < c.n_layers(); ++l) {
    throw_if_cancelled(cancel);
    const LayerShape& s = c.layers[l];
    const LayerWeights& w = model_.layers[l];
    if (s.n_head > 0) {
      const int kvd = s.n_kv_head * hd;
      attention_qkv(c, s, w, x.data(), n, n, rope, buf, &stored_[l]);  // the n new positions, tables from pos_
      std::copy_n(buf.k.data(), static_cast<size_t>(n) * kvd, &k_[l][static_cast<size_t>(pos_) * kvd]);
      std::copy_n(buf.v.data(), static_cast<size_t>(n) * kvd, &v_[l][static_cast<size_t>(pos_) * kvd]);
      if (pos_ == 0 && n > 1) {
        // A prompt on an empty cache is one causal window: the batched pass's attention (its K/V rows are
        // the ones just cached), far faster than a row at a time.
        causal_attention_cpu(c, s, buf.q.data(), buf.k.data(), buf.v.data(), buf.att.data(), 1, n);
      } else {
        attend_to_cache(c, s, buf.q.data(), k_[l].data(), v_[l].data(), buf.att.data(), pos_, n);
      }
    }
    attention_out(c, l, s, w, x.data(), n, buf, nullptr, &stored_[l]);
    mlp_sublayer(c, l, s, w, x.data(), n, buf, nullptr, &stored_[l]);
  }
  pos_ += n;
  if (!logits) return;
  const float* last = &x[static_cast<size_t>(n - 1) * d];
  rmsnorm_cpu(last, model_.output_norm, buf.xn.data(), 1, d, c.norm_eps);
  linear(buf.xn.data(), model_.output, nullptr, logits, 1, d, c.vocab, stored_head_);
}

}  // namespace ep
