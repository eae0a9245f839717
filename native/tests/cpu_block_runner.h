// A BlockRunner that runs on the CPU (forward_block and the CPU twins), for tests of the drivers written
// against the runner interface — the block-major sensitivity driver — on machines without a GPU. It keeps
// views of the weights it is given (the caller keeps them alive until the next load), and a budget of held
// rows lets a test make the hidden states not fit, as a small GPU would.
#pragma once
#include <atomic>
#include <stdexcept>
#include <vector>

#include "core/device/block_runner.h"
#include "core/forward/forward.h"
#include "core/forward/layer_ops.h"
#include "core/forward/ops_cpu.h"
#include "core/load/model.h"
#include "core/forward/divergence.h"

namespace ep::test {

class CpuBlockRunner final : public cuda::BlockRunner {
 public:
  // loads: counts load_block calls (null: not counted), so a test can check the driver's uploads after the
  // runner is gone.
  CpuBlockRunner(const Model& m, int seq_len, int64_t max_rows, int64_t held_budget_rows, std::atomic<int>* loads = nullptr)
      : m_(m), max_rows_(max_rows), budget_(held_budget_rows), scratch_(m.config, max_rows), loads_(loads) {
    rope_tables(m.config, 0, seq_len, rope_.cos, rope_.sin);
  }
  void load_block(int l, const LayerWeights& w) override {
    l_ = l, w_ = w, head_ = false;
    if (loads_) ++*loads_;
  }
  void run(const cuda::BlockBatch& b) override {
    if (head_) throw std::logic_error("run with the output head loaded");
    float* x = rows(b);
    forward_block(m_.config, l_, w_, x, b.n_seqs, b.seq_len, rope_, scratch_, b.hooks, nullptr);
  }
  bool hold_hidden_states(int64_t rows, bool, int64_t) override {
    if (rows > budget_) return false;
    held_.assign(static_cast<size_t>(rows) * m_.config.dim, 0.0f);
    return true;
  }
  void put_hidden(int64_t row0, const float* host, int64_t n) override { std::copy(host, host + n * m_.config.dim, &held_[row0 * m_.config.dim]); }
  void get_hidden(int64_t row0, float* host, int64_t n) override {
    std::copy(&held_[row0 * m_.config.dim], &held_[(row0 + n) * m_.config.dim], host);
  }
  void load_output_head(const float*, const float*, int) override { head_ = true; }
  void next_token_nll(const cuda::BlockBatch& b, const int32_t* tokens, float* nll, int32_t* argmax) override {
    ep::next_token_nll(m_, normed(b).data(), tokens, b.n_seqs, b.seq_len, nll, argmax);
  }
  void keep_reference(const cuda::BlockBatch& b) override {
    reference_ = logits(b);
    log_softmax_rows_cpu(reference_.data(), static_cast<int64_t>(b.n_seqs) * b.seq_len, m_.config.vocab);
  }
  void compare_with_reference(const cuda::BlockBatch& b, const int32_t* tokens, float* kl, float* nll) override {
    const std::vector<float> lg = logits(b);
    if (lg.size() != reference_.size()) throw std::logic_error("compare_with_reference: another shape than the reference's");
    kl_next_token_rows_cpu(lg.data(), reference_.data(), static_cast<int64_t>(b.n_seqs) * b.seq_len, b.seq_len, m_.config.vocab, tokens, kl, nll);
  }
  void enable_capture(const cuda::CaptureLayout&) override { throw std::logic_error("CpuBlockRunner has no fused capture"); }
  BlockStatistics take_statistics() override { throw std::logic_error("CpuBlockRunner has no fused capture"); }
  std::string description() const override { return "cpu test runner"; }
  uint64_t peak_device_bytes() const override { return 0; }

 private:
  float* rows(const cuda::BlockBatch& b) {
    if (static_cast<int64_t>(b.n_seqs) * b.seq_len > max_rows_) throw std::logic_error("batch larger than max_rows");
    return b.held_row0_valid() ? &held_[b.held_row0 * m_.config.dim] : b.host;
  }
  std::vector<float> normed(const cuda::BlockBatch& b) {
    if (!head_) throw std::logic_error("output head not loaded");
    const int64_t N = static_cast<int64_t>(b.n_seqs) * b.seq_len;
    std::vector<float> y(static_cast<size_t>(N) * m_.config.dim);
    rmsnorm_cpu(rows(b), m_.output_norm, y.data(), N, m_.config.dim, m_.config.norm_eps);
    return y;
  }
  std::vector<float> logits(const cuda::BlockBatch& b) {
    const int64_t N = static_cast<int64_t>(b.n_seqs) * b.seq_len;
    std::vector<float> lg(static_cast<size_t>(N) * m_.config.vocab);
    linear(normed(b).data(), m_.output, nullptr, lg.data(), N, m_.config.dim, m_.config.vocab);
    return lg;
  }

  const Model& m_;
  int64_t max_rows_, budget_;
  RopeTables rope_;
  ForwardScratch scratch_;
  int l_ = -1;
  LayerWeights w_;
  bool head_ = false;
  std::atomic<int>* loads_;
  std::vector<float> held_, reference_;
};

}  // namespace ep::test
