// The CPU forward pass of a LLaMA-family decoder over a batch of equal-length sequences.
//
// Per block l (docs/METHOD.md section 0):   a = Attn(RMSNorm(h)),  u = h + a,  m = MLP(RMSNorm(u)),  h' = u + m.
// Layers with 0 heads or 0 MLP width are skipped (their bias, if any, is still added: it carries the
// compensation constant of the removed layer). Shapes: N = n_seqs * seq_len token rows, d = hidden size.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "core/load/model.h"
#include "core/load/stored_matrices.h"

namespace ep {

// Named hook points. The activation capture of the measure stage implements this interface; every
// pointer is valid only during the call. Row r is token r % seq_len of sequence r / seq_len.
class ForwardHooks {
 public:
  virtual ~ForwardHooks() = default;
  virtual void block_input(int layer, const float* h, int64_t rows, int dim) {}         // h_{l-1}  [rows, d]
  virtual void attn_heads(int layer, const float* o, int64_t rows, int n_head, int head_dim) {}  // softmax(QKᵀ)V before o_proj [rows, n_head*head_dim]
  virtual void attn_output(int layer, const float* a, int64_t rows, int dim) {}        // a_l [rows, d] (incl. bias)
  virtual void mlp_act(int layer, const float* act, int64_t rows, int ffn) {}          // silu(gate)*up before down_proj [rows, ffn]
  virtual void mlp_output(int layer, const float* m, int64_t rows, int dim) {}         // m_l [rows, d] (incl. bias)
  virtual void block_output(int layer, const float* h, int64_t rows, int dim) {}        // h_l [rows, d]
  virtual void final_hidden(const float* y, int64_t rows, int dim) {}                  // y = RMSNorm_final(h_L) [rows, d]
};

struct ForwardRequest {
  const int32_t* tokens = nullptr;  // [n_seqs * seq_len], each sequence scored on its own (positions from 0)
  int n_seqs = 0;
  int seq_len = 0;
  float* logits = nullptr;          // optional out [n_seqs * seq_len, vocab]
  float* nll = nullptr;             // optional out [n_seqs * (seq_len - 1)]: -log p(token[t+1] | tokens[..t])
  int32_t* argmax = nullptr;        // optional out [n_seqs * (seq_len - 1)]: the greedy prediction after tokens[..t] (needs nll)
  ForwardHooks* hooks = nullptr;
  const std::atomic<bool>* cancel = nullptr;  // checked between layers; throws Error(kCancelled)
};

void forward(const Model& model, const ForwardRequest& req);

// The output head and the loss, for drivers that run the blocks themselves: y [n_seqs·T, d] are final
// hidden states after the output norm; nll[s·(T−1) + t] = −log p(tokens[s·T + t + 1] | the window up to t),
// argmax (optional) the greedy prediction there. The GPU twin: BlockRunner::next_token_nll.
void next_token_nll(const Model& model, const float* y, const int32_t* tokens, int n_seqs, int T, float* nll, int32_t* argmax);
// The same from logits rows [row0, row0 + rows) of the whole batch (lg holds just those rows).
void next_token_nll_of_logits(const float* lg, int64_t row0, int64_t rows, int T, int V, const int32_t* tokens, float* nll, int32_t* argmax);

// ---- The same pass one block at a time, for drivers that run every calibration sequence through block l
// before block l+1 (calibrate.h: layer streaming). forward() is these steps in a loop, so both orders
// compute bit-identical activations for the same batches.

// Activation buffers of one block over `rows` token rows (sized for the widest block).
struct ForwardScratch {
  ForwardScratch(const ModelConfig& c, int64_t rows);
  std::vector<float> xn, tmp, q, k, v, att, gate, up;
};
struct RopeTables {
  std::vector<float> cos, sin;  // [seq_len, head_dim/2] from position 0 (rope_tables in layer_ops.h)
};
// Causal grouped-query attention (windowed when c.sliding_window > 0): q [rows, nh*hd], k/v [rows, nkv*hd]
// -> out [rows, nh*hd], rows = n_seqs · seq_len. The CPU twin of cuda::causal_attention.
void causal_attention_cpu(const ModelConfig& c, const LayerShape& s, const float* q, const float* k, const float* v, float* out, int n_seqs,
                          int seq_len);
// Throws naming the model when a token id lies outside the vocabulary.
void check_tokens(const Model& model, const int32_t* tokens, int64_t n);
// x[r] = embedding row of tokens[r], x [n, d]
void embed_tokens(const Model& model, const int32_t* tokens, int64_t n, float* x);
// The parts of a block the KV-cache decoder (decode.cpp) shares with this pass; only the attention core
// between them differs. attention_qkv: RMSNorm, Q/K/V projections into buf.q/k/v and RoPE (row r at table
// row r % period). attention_out: a = Wo·buf.att (+ bo), x += a (or a removed layer's kept bias).
// mlp_sublayer: m = Wdown·(silu(Wgate xn) ⊙ Wup xn) (+ b_down), x += m. Hooks may be null. `stored`: the
// block's bfloat16 matrices as stored, read instead of the float32 views by products of a few rows (decoding).
void attention_qkv(const ModelConfig& c, const LayerShape& s, const LayerWeights& w, const float* x, int64_t rows, int period,
                   const RopeTables& rope, ForwardScratch& buf, const StoredMatrices* stored = nullptr);
void attention_out(const ModelConfig& c, int l, const LayerShape& s, const LayerWeights& w, float* x, int64_t rows, ForwardScratch& buf,
                   ForwardHooks* hooks, const StoredMatrices* stored = nullptr);
void mlp_sublayer(const ModelConfig& c, int l, const LayerShape& s, const LayerWeights& w, float* x, int64_t rows, ForwardScratch& buf,
                  ForwardHooks* hooks, const StoredMatrices* stored = nullptr);
// Block l in place on x [n_seqs * T, d] (sequences of T tokens, positions from 0), calling the hooks.
void forward_block(const ModelConfig& c, int l, const LayerWeights& w, float* x, int n_seqs, int T, const RopeTables& rope,
                   ForwardScratch& scratch, ForwardHooks* hooks, const std::atomic<bool>* cancel);

}  // namespace ep
