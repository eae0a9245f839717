#include "core/decode.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"
#include "core/layer_ops.h"
#include "core/ops_cpu.h"
#include "core/simd_math.h"
#include "core/threads.h"

namespace ep {

DecodeSession::DecodeSession(const Model& model, int max_len) : model_(model), max_len_(max_len) {
  if (max_len <= 0) throw Error(ErrorCode::kInvalidArgument, model.path, "decode length must be positive");
  // Token-by-token decoding touches every block per token: converting streamed blocks on each step would be
  // slower than any use of it, so generation needs the weights bound at load.
  if (model.streams_layers())
    throw Error(ErrorCode::kUnsupported, model.path, "generation needs the model loaded without layer streaming (drop --stream)");
  const ModelConfig& c = model.config;
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
  for (int i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= c.vocab)
      throw Error(ErrorCode::kInvalidArgument, model_.path, "token id " + std::to_string(tokens[i]) + " is outside the vocabulary");
  num_threads();
  const int d = c.dim, hd = c.head_dim;
  int max_q = 0, max_kv = 0, max_ffn = 0;
  for (const LayerShape& s : c.layers) {
    max_q = std::max(max_q, s.n_head * hd);
    max_kv = std::max(max_kv, s.n_kv_head * hd);
    max_ffn = std::max(max_ffn, s.ffn);
  }
  std::vector<float> x(static_cast<size_t>(n) * d), xn(x.size()), tmp(x.size());
  std::vector<float> q(static_cast<size_t>(n) * max_q), k(static_cast<size_t>(n) * max_kv), v(k.size()), att(q.size());
  std::vector<float> gate(static_cast<size_t>(n) * max_ffn), up(gate.size());
  std::vector<float> cos_t, sin_t;
  rope_tables(c, pos_, n, cos_t, sin_t);
  for (int i = 0; i < n; ++i) std::copy_n(model_.tok_embd + static_cast<int64_t>(tokens[i]) * d, d, &x[static_cast<size_t>(i) * d]);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));

  for (int l = 0; l < c.n_layers(); ++l) {
    if (cancel && cancel->load(std::memory_order_relaxed)) throw Error(ErrorCode::kCancelled, "", "cancelled");
    const LayerShape& s = c.layers[l];
    const LayerWeights& w = model_.layers[l];
    if (s.n_head > 0) {
      const int qd = s.n_head * hd, kvd = s.n_kv_head * hd, group = s.n_head / s.n_kv_head;
      rmsnorm_cpu(x.data(), w.attn_norm, xn.data(), n, d, c.norm_eps);
      linear(xn.data(), w.wq, w.bq, q.data(), n, d, qd);
      linear(xn.data(), w.wk, w.bk, k.data(), n, d, kvd);
      linear(xn.data(), w.wv, w.bv, v.data(), n, d, kvd);
      apply_rope(c, q.data(), n, n, s.n_head, cos_t, sin_t);
      apply_rope(c, k.data(), n, n, s.n_kv_head, cos_t, sin_t);
      std::copy_n(k.data(), static_cast<size_t>(n) * kvd, &k_[l][static_cast<size_t>(pos_) * kvd]);
      std::copy_n(v.data(), static_cast<size_t>(n) * kvd, &v_[l][static_cast<size_t>(pos_) * kvd]);
      const float* kc = k_[l].data();
      const float* vc = v_[l].data();
#pragma omp parallel
      {
        std::vector<float> score(static_cast<size_t>(pos_) + n);
#pragma omp for schedule(static) collapse(2)
        for (int i = 0; i < n; ++i) {
          for (int h = 0; h < s.n_head; ++h) {
            const int p = pos_ + i, g = h / group;
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
      linear(att.data(), w.wo, w.bo, tmp.data(), n, qd, d);
      add_inplace(x.data(), tmp.data(), static_cast<int64_t>(n) * d);
    } else if (w.bo) {
      add_row_bias(x.data(), w.bo, n, d);
    }
    if (s.ffn > 0) {
      rmsnorm_cpu(x.data(), w.ffn_norm, xn.data(), n, d, c.norm_eps);
      linear(xn.data(), w.w_gate, nullptr, gate.data(), n, d, s.ffn);
      linear(xn.data(), w.w_up, nullptr, up.data(), n, d, s.ffn);
      swiglu(gate.data(), up.data(), static_cast<int64_t>(n) * s.ffn);
      linear(gate.data(), w.w_down, w.b_down, tmp.data(), n, s.ffn, d);
      add_inplace(x.data(), tmp.data(), static_cast<int64_t>(n) * d);
    } else if (w.b_down) {
      add_row_bias(x.data(), w.b_down, n, d);
    }
  }
  pos_ += n;
  if (!logits) return;
  const float* last = &x[static_cast<size_t>(n - 1) * d];
  rmsnorm_cpu(last, model_.output_norm, xn.data(), 1, d, c.norm_eps);
  linear(xn.data(), model_.output, nullptr, logits, 1, d, c.vocab);
}

}  // namespace ep
