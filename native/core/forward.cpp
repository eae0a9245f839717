#include "core/forward.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/layer_ops.h"
#include "core/ops_cpu.h"
#include "core/simd_math.h"
#include "core/threads.h"

namespace ep {

namespace {

// Causal grouped-query attention. q [rows, nh*hd], k/v [rows, nkv*hd] -> out [rows, nh*hd].
// One task per (sequence, head). Each gathers its KV head transposed (kt, vt: [hd][seq_len]) so that every
// inner loop runs over key positions j — long, contiguous and vectorizable even for small head sizes.
void attention(const ModelConfig& c, const LayerShape& s, const float* q, const float* k, const float* v, float* out,
               int n_seqs, int seq_len) {
  const int hd = c.head_dim, nh = s.n_head, nkv = s.n_kv_head, group = nh / nkv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int window = c.sliding_window;
#pragma omp parallel
  {
    std::vector<float> kt(static_cast<size_t>(seq_len) * hd), vt(kt.size()), score(seq_len);
    int cached = -1;  // (seq, kv head) whose K/V are in kt/vt
#pragma omp for schedule(static)
    for (int task = 0; task < n_seqs * nh; ++task) {
      const int b = task / nh, h = task % nh, g = h / group;
      const int64_t row0 = static_cast<int64_t>(b) * seq_len;
      if (cached != b * nkv + g) {
        for (int t = 0; t < seq_len; ++t) {
          const float* kr = k + (row0 + t) * nkv * hd + g * hd;
          const float* vr = v + (row0 + t) * nkv * hd + g * hd;
          for (int e = 0; e < hd; ++e) {
            kt[static_cast<size_t>(e) * seq_len + t] = kr[e];
            vt[static_cast<size_t>(e) * seq_len + t] = vr[e];
          }
        }
        cached = b * nkv + g;
      }
      for (int i = 0; i < seq_len; ++i) {
        const float* qi = q + (row0 + i) * nh * hd + h * hd;
        const int j0 = window > 0 ? std::max(0, i - window + 1) : 0, n = i + 1 - j0;
        float* sc = score.data() + j0;
        std::fill(sc, sc + n, 0.0f);
        for (int e = 0; e < hd; ++e) simd::axpy(qi[e] * scale, &kt[static_cast<size_t>(e) * seq_len + j0], sc, n);
        const float sum = simd::exp_shift_sum(sc, n, simd::max(sc, n));
        const float inv = 1.0f / sum;
        float* o = out + (row0 + i) * nh * hd + h * hd;
        for (int e = 0; e < hd; ++e) o[e] = simd::dot(sc, &vt[static_cast<size_t>(e) * seq_len + j0], n) * inv;
      }
    }
  }
}

void check_cancel(const ForwardRequest& req) {
  if (req.cancel && req.cancel->load(std::memory_order_relaxed)) throw Error(ErrorCode::kCancelled, "", "cancelled");
}

}  // namespace

void forward(const Model& model, const ForwardRequest& req) {
  const ModelConfig& c = model.config;
  if (req.n_seqs <= 0 || req.seq_len <= 0) throw Error(ErrorCode::kInvalidArgument, model.path, "empty batch");
  const int d = c.dim, hd = c.head_dim, T = req.seq_len;
  const int64_t N = static_cast<int64_t>(req.n_seqs) * T;
  for (int64_t i = 0; i < N; ++i)
    if (req.tokens[i] < 0 || req.tokens[i] >= c.vocab)
      throw Error(ErrorCode::kInvalidArgument, model.path,
                  "token id " + std::to_string(req.tokens[i]) + " is outside the vocabulary of " + std::to_string(c.vocab) +
                      " (tokenizer does not match the model?)");
  num_threads();  // initialise the thread settings once

  int max_q = 0, max_kv = 0, max_ffn = 0;
  for (const LayerShape& s : c.layers) {
    max_q = std::max(max_q, s.n_head * hd);
    max_kv = std::max(max_kv, s.n_kv_head * hd);
    max_ffn = std::max(max_ffn, s.ffn);
  }
  std::vector<float> x(N * d), xn(N * d), tmp(N * d);
  std::vector<float> q(N * max_q), k(N * max_kv), v(N * max_kv), att(N * max_q);
  std::vector<float> gate(N * max_ffn), up(N * max_ffn);
  std::vector<float> cos_t, sin_t;
  rope_tables(c, 0, T, cos_t, sin_t);

  // x = embedding rows  [N, d]
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < N; ++r) std::copy_n(model.tok_embd + static_cast<int64_t>(req.tokens[r]) * d, d, &x[r * d]);

  ForwardHooks* hk = req.hooks;
  for (int l = 0; l < c.n_layers(); ++l) {
    check_cancel(req);
    const LayerShape& s = c.layers[l];
    const LayerWeights& w = model.layers[l];
    if (hk) hk->block_input(l, x.data(), N, d);

    // ---- attention: a = Wo · attn(RoPE(Wq xn), RoPE(Wk xn), Wv xn) (+ bo);  x += a
    if (s.n_head > 0) {
      const int qd = s.n_head * hd, kvd = s.n_kv_head * hd;
      rmsnorm_cpu(x.data(), w.attn_norm, xn.data(), N, d, c.norm_eps);
      linear(xn.data(), w.wq, w.bq, q.data(), N, d, qd);   // q [N, qd]
      linear(xn.data(), w.wk, w.bk, k.data(), N, d, kvd);  // k [N, kvd]
      linear(xn.data(), w.wv, w.bv, v.data(), N, d, kvd);  // v [N, kvd]
      apply_rope(c, q.data(), N, T, s.n_head, cos_t, sin_t);
      apply_rope(c, k.data(), N, T, s.n_kv_head, cos_t, sin_t);
      attention(c, s, q.data(), k.data(), v.data(), att.data(), req.n_seqs, T);  // att [N, qd]
      if (hk) hk->attn_heads(l, att.data(), N, s.n_head, hd);
      // a_l goes through its own buffer (not a beta=1 GEMM into x) so that results are bit-identical
      // with and without hooks: the statistics see exactly the numbers the plain forward computes.
      linear(att.data(), w.wo, w.bo, tmp.data(), N, qd, d);
      if (hk) hk->attn_output(l, tmp.data(), N, d);
      add_inplace(x.data(), tmp.data(), N * d);
    } else if (w.bo) {  // removed attention layer whose compensation constant was kept as a bias
      add_row_bias(x.data(), w.bo, N, d);
    }

    check_cancel(req);  // also between the sublayers: a layer over a large batch can take seconds
    // ---- MLP: m = Wdown · (silu(Wgate xn) ⊙ Wup xn) (+ b_down);  x += m
    if (s.ffn > 0) {
      const int f = s.ffn;
      rmsnorm_cpu(x.data(), w.ffn_norm, xn.data(), N, d, c.norm_eps);
      linear(xn.data(), w.w_gate, nullptr, gate.data(), N, d, f);  // [N, f]
      linear(xn.data(), w.w_up, nullptr, up.data(), N, d, f);      // [N, f]
      swiglu(gate.data(), up.data(), N * f);
      if (hk) hk->mlp_act(l, gate.data(), N, f);
      linear(gate.data(), w.w_down, w.b_down, tmp.data(), N, f, d);
      if (hk) hk->mlp_output(l, tmp.data(), N, d);
      add_inplace(x.data(), tmp.data(), N * d);
    } else if (w.b_down) {
      add_row_bias(x.data(), w.b_down, N, d);
    }
    if (hk) hk->block_output(l, x.data(), N, d);
  }
  check_cancel(req);
  rmsnorm_cpu(x.data(), model.output_norm, xn.data(), N, d, c.norm_eps);
  if (hk) hk->final_hidden(xn.data(), N, d);

  // ---- logits and NLL, in row chunks so a 32k–128k vocabulary never needs N×vocab floats at once.
  if (!req.logits && !req.nll) return;
  const int V = c.vocab;
  const int64_t chunk = req.logits ? N : std::max<int64_t>(1, std::min<int64_t>(N, (64ll << 20) / (4ll * V)));
  std::vector<float> scratch(req.logits ? 0 : chunk * V);
  for (int64_t r0 = 0; r0 < N; r0 += chunk) {
    const int64_t rows = std::min(chunk, N - r0);
    float* lg = req.logits ? req.logits + r0 * V : scratch.data();
    linear(&xn[r0 * d], model.output, nullptr, lg, rows, d, V);
    if (!req.nll) continue;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t row = r0 + r;
      const int t = static_cast<int>(row % T);
      if (t == T - 1) continue;  // the last position has no target inside the window
      const float* lr = lg + r * V;
      const float mx = simd::max(lr, V);
      const double sum = simd::sum_exp_shift(lr, V, mx);
      const int target = req.tokens[row + 1];
      const int64_t b = row / T;
      req.nll[b * (T - 1) + t] = static_cast<float>(std::log(sum) + mx - lr[target]);
      if (req.argmax) req.argmax[b * (T - 1) + t] = static_cast<int32_t>(std::max_element(lr, lr + V) - lr);
    }
  }
}

}  // namespace ep
