#include "core/forward/forward.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/forward/gemv.h"
#include "core/forward/layer_ops.h"
#include "core/forward/ops_cpu.h"
#include "core/forward/simd_math.h"
#include "core/forward/threads.h"

namespace ep {

// One task per (sequence, head). Each gathers its KV head transposed (kt, vt: [hd][seq_len]) so that every
// inner loop runs over key positions j — long, contiguous and vectorizable even for small head sizes.
void causal_attention_cpu(const ModelConfig& c, const LayerShape& s, const float* q, const float* k, const float* v, float* out, int n_seqs,
                          int seq_len) {
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


ForwardScratch::ForwardScratch(const ModelConfig& c, int64_t rows) {
  int max_q = 0, max_kv = 0, max_ffn = 0;
  for (const LayerShape& s : c.layers) {
    max_q = std::max(max_q, s.n_head * c.head_dim);
    max_kv = std::max(max_kv, s.n_kv_head * c.head_dim);
    max_ffn = std::max(max_ffn, s.ffn);
  }
  xn.resize(rows * c.dim);
  tmp.resize(rows * c.dim);
  q.resize(rows * max_q);
  k.resize(rows * max_kv);
  v.resize(rows * max_kv);
  att.resize(rows * max_q);
  gate.resize(rows * max_ffn);
  up.resize(rows * max_ffn);
}

void check_tokens(const Model& model, const int32_t* tokens, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= model.config.vocab)
      throw Error(ErrorCode::kInvalidArgument, model.path,
                  "token id " + std::to_string(tokens[i]) + " is outside the vocabulary of " + std::to_string(model.config.vocab) +
                      " (tokenizer does not match the model?)");
}

void embed_tokens(const Model& model, const int32_t* tokens, int64_t n, float* x) {
  const int d = model.config.dim;
#pragma omp parallel for schedule(static) if (n * d >= kParallelMinWork)
  for (int64_t r = 0; r < n; ++r) std::copy_n(model.tok_embd + static_cast<int64_t>(tokens[r]) * d, d, &x[r * d]);
}

namespace {
const StoredMatrices kNoStored;
}

void attention_qkv(const ModelConfig& c, const LayerShape& s, const LayerWeights& w, const float* x, int64_t rows, int period,
                   const RopeTables& rope, ForwardScratch& buf, const StoredMatrices* stored) {
  const int d = c.dim, qd = s.n_head * c.head_dim, kvd = s.n_kv_head * c.head_dim;
  const StoredMatrices& st = stored ? *stored : kNoStored;
  rmsnorm_cpu(x, w.attn_norm, buf.xn.data(), rows, d, c.norm_eps);
  linear(buf.xn.data(), w.wq, w.bq, buf.q.data(), rows, d, qd, st.wq);   // q [rows, qd]
  linear(buf.xn.data(), w.wk, w.bk, buf.k.data(), rows, d, kvd, st.wk);  // k [rows, kvd]
  linear(buf.xn.data(), w.wv, w.bv, buf.v.data(), rows, d, kvd, st.wv);  // v [rows, kvd]
  apply_rope(c, buf.q.data(), rows, period, s.n_head, rope.cos, rope.sin);
  apply_rope(c, buf.k.data(), rows, period, s.n_kv_head, rope.cos, rope.sin);
}

void attention_out(const ModelConfig& c, int l, const LayerShape& s, const LayerWeights& w, float* x, int64_t rows, ForwardScratch& buf,
                   ForwardHooks* hk, const StoredMatrices* stored) {
  const StoredMatrices& st = stored ? *stored : kNoStored;
  const int d = c.dim;
  if (s.n_head > 0) {
    // a_l goes through its own buffer (not a beta=1 GEMM into x) so that results are bit-identical
    // with and without hooks: the statistics see exactly the numbers the plain forward computes.
    linear(buf.att.data(), w.wo, w.bo, buf.tmp.data(), rows, s.n_head * c.head_dim, d, st.wo);
    if (hk) hk->attn_output(l, buf.tmp.data(), rows, d);
    add_inplace(x, buf.tmp.data(), rows * d);
  } else if (w.bo) {  // removed attention layer whose compensation constant was kept as a bias
    add_row_bias(x, w.bo, rows, d);
  }
}

void mlp_sublayer(const ModelConfig& c, int l, const LayerShape& s, const LayerWeights& w, float* x, int64_t rows, ForwardScratch& buf,
                  ForwardHooks* hk, const StoredMatrices* stored) {
  const StoredMatrices& st = stored ? *stored : kNoStored;
  const int d = c.dim;
  if (s.ffn > 0) {  // m = Wdown · (silu(Wgate xn) ⊙ Wup xn) (+ b_down);  x += m
    const int f = s.ffn;
    rmsnorm_cpu(x, w.ffn_norm, buf.xn.data(), rows, d, c.norm_eps);
    linear(buf.xn.data(), w.w_gate, nullptr, buf.gate.data(), rows, d, f, st.w_gate);  // [rows, f]
    linear(buf.xn.data(), w.w_up, nullptr, buf.up.data(), rows, d, f, st.w_up);      // [rows, f]
    swiglu(buf.gate.data(), buf.up.data(), rows * f);
    if (hk) hk->mlp_act(l, buf.gate.data(), rows, f);
    linear(buf.gate.data(), w.w_down, w.b_down, buf.tmp.data(), rows, f, d, st.w_down);
    if (hk) hk->mlp_output(l, buf.tmp.data(), rows, d);
    add_inplace(x, buf.tmp.data(), rows * d);
  } else if (w.b_down) {
    add_row_bias(x, w.b_down, rows, d);
  }
}

void forward_block(const ModelConfig& c, int l, const LayerWeights& w, float* x, int n_seqs, int T, const RopeTables& rope,
                   ForwardScratch& buf, ForwardHooks* hk, const std::atomic<bool>* cancel) {
  const LayerShape& s = c.layers[l];
  const int64_t N = static_cast<int64_t>(n_seqs) * T;
  throw_if_cancelled(cancel);
  if (hk) hk->block_input(l, x, N, c.dim);
  // attention: a = Wo · attn(RoPE(Wq xn), RoPE(Wk xn), Wv xn) (+ bo);  x += a
  if (s.n_head > 0) {
    attention_qkv(c, s, w, x, N, T, rope, buf);
    causal_attention_cpu(c, s, buf.q.data(), buf.k.data(), buf.v.data(), buf.att.data(), n_seqs, T);  // att [N, qd]
    if (hk) hk->attn_heads(l, buf.att.data(), N, s.n_head, c.head_dim);
  }
  attention_out(c, l, s, w, x, N, buf, hk);
  throw_if_cancelled(cancel);  // also between the sublayers: a layer over a large batch can take seconds
  mlp_sublayer(c, l, s, w, x, N, buf, hk);
  if (hk) hk->block_output(l, x, N, c.dim);
}

void forward(const Model& model, const ForwardRequest& req) {
  const ModelConfig& c = model.config;
  if (req.n_seqs <= 0 || req.seq_len <= 0) throw Error(ErrorCode::kInvalidArgument, model.path, "empty batch");
  const int d = c.dim, T = req.seq_len;
  const int64_t N = static_cast<int64_t>(req.n_seqs) * T;
  check_tokens(model, req.tokens, N);
  num_threads();  // initialise the thread settings once

  std::vector<float> x(N * d);
  ForwardScratch scratch(c, N);
  RopeTables rope;
  rope_tables(c, 0, T, rope.cos, rope.sin);
  embed_tokens(model, req.tokens, N, x.data());  // x = embedding rows [N, d]
  for (int l = 0; l < c.n_layers(); ++l) {
    LayerBuffers converted;  // a streamed model's block matrices, converted for this block only
    forward_block(c, l, model.layer_weights(l, converted), x.data(), req.n_seqs, T, rope, scratch, req.hooks, req.cancel);
  }
  std::vector<float>& xn = scratch.xn;
  ForwardHooks* hk = req.hooks;
  throw_if_cancelled(req.cancel);
  rmsnorm_cpu(x.data(), model.output_norm, xn.data(), N, d, c.norm_eps);
  if (hk) hk->final_hidden(xn.data(), N, d);

  if (req.logits) {
    linear(xn.data(), model.output, nullptr, req.logits, N, d, c.vocab);
    if (req.nll) next_token_nll_of_logits(req.logits, 0, N, T, c.vocab, req.tokens, req.nll, req.argmax);
  } else if (req.nll) {
    next_token_nll(model, xn.data(), req.tokens, req.n_seqs, T, req.nll, req.argmax);
  }
}

void next_token_nll_of_logits(const float* lg, int64_t row0, int64_t rows, int T, int V, const int32_t* tokens, float* nll, int32_t* argmax) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t row = row0 + r;
    const int t = static_cast<int>(row % T);
    if (t == T - 1) continue;  // the last position has no target inside the window
    const float* lr = lg + r * V;
    const float mx = simd::max(lr, V);
    const double sum = simd::sum_exp_shift(lr, V, mx);
    const int target = tokens[row + 1];
    const int64_t b = row / T;
    nll[b * (T - 1) + t] = static_cast<float>(std::log(sum) + mx - lr[target]);
    if (argmax) argmax[b * (T - 1) + t] = static_cast<int32_t>(std::max_element(lr, lr + V) - lr);
  }
}

void next_token_nll(const Model& model, const float* y, const int32_t* tokens, int n_seqs, int T, float* nll, int32_t* argmax) {
  // logits in row chunks, so a 32k–128k vocabulary never needs N×vocab floats at once
  const int d = model.config.dim, V = model.config.vocab;
  const int64_t N = static_cast<int64_t>(n_seqs) * T;
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(N, (64ll << 20) / (4ll * V)));
  std::vector<float> logit_chunk(chunk * V);
  for (int64_t r0 = 0; r0 < N; r0 += chunk) {
    const int64_t rows = std::min(chunk, N - r0);
    linear(&y[r0 * d], model.output, nullptr, logit_chunk.data(), rows, d, V);
    next_token_nll_of_logits(logit_chunk.data(), r0, rows, T, V, tokens, nll, argmax);
  }
}

}  // namespace ep
