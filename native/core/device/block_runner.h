// The decoder blocks on one GPU — the CUDA twin of ep::forward_block (core/forward/forward.cpp). The core
// owns this interface and its drivers (block_major) call it; native/cuda/block_runner.cu implements it, or
// native/cuda/block_runner_stub.cpp reports "no CUDA" when the build had no nvcc.
//
// Weights are uploaded one block at a time (load_block) and converted on the device to the compute
// precision; activations stay float32 (RMSNorm, RoPE, softmax, SwiGLU, residuals), and every matrix product
// takes its inputs in the compute precision with float32 accumulation. That is what lets a model larger
// than GPU memory be calibrated block by block (calibrate_streamed): one block's weights and one batch's
// activations live on the GPU at a time.
//
// Two ways to capture statistics. With ForwardHooks, the hooks receive host copies of every hook tensor
// and the CPU's own capture measures them (tests use this as the reference). With enable_capture, the
// capture runs fused on the GPU (device_capture.cuh): the same accumulators summed by kernels beside the
// forward pass, handed back per block as raw state (take_statistics) for StatisticsCapture::absorb_block —
// nothing but the block's input and output rows crosses PCIe, or nothing at all when the runner holds the
// hidden states (hold_hidden_states).
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/capture/block_statistics.h"
#include "core/error.h"
#include "core/forward/forward.h"

namespace ep::cuda {

enum class Precision { kF32, kBF16, kF16 };
enum class GemmBackend { kAuto, kCublas, kOwnKernels };  // kAuto: cuBLAS when it loads, else own kernels

struct BlockRunnerOptions {
  int device = 0;
  Precision precision = Precision::kBF16;
  GemmBackend gemm = GemmBackend::kAuto;
};

// What the fused capture needs from the host capture (StatisticsCapture) so that both sum the same vectors.
struct CaptureLayout {
  int joint_dim = 0;              // r
  std::vector<float> projection;  // d×r row-major; empty: r == d and the vectors are taken as they are
  bool float64_products = true;   // the joint moments' products in float64, else float32 GEMMs over 4096-row
                                  // chunks summed in float64 (StatisticsCapture::products())
};

// One run() call: n_seqs sequences of hidden states, either on the host or held by the runner.
struct BlockBatch {
  int n_seqs = 0;
  int seq_len = 0;               // tokens per sequence, at most the runner's seq_len (0: the runner's)
  float* host = nullptr;         // [n_seqs * seq_len, d] on the host, in place (copied in and out), or
  int64_t held_row0 = -1;        // ... the rows from here of the states this runner holds (hold_hidden_states)
  ForwardHooks* hooks = nullptr; // host copies of every hook tensor (host batches only)
  const float* y_projected = nullptr;  // [rows, r] on the host: fold this batch into the fused capture
  bool held_row0_valid() const { return held_row0 >= 0; }
};

class BlockRunner {
 public:
  // Throws ep::Error (kUnsupported) when CUDA cannot run: no CUDA in this build, no driver, no such device.
  // max_rows: the most token rows one run() call passes; seq_len: the longest sequence (RoPE table rows).
  static std::unique_ptr<BlockRunner> create(const ModelConfig& c, const RopeTables& rope, int seq_len, int64_t max_rows,
                                             const BlockRunnerOptions& options);
  virtual ~BlockRunner() = default;

  // Upload block l's weights (float32 host views) and convert them to the compute precision.
  virtual void load_block(int l, const LayerWeights& w) = 0;
  // forward_block on the loaded block.
  virtual void run(const BlockBatch& batch) = 0;
  // ... on x [n_seqs * seq_len, d] on the host, in place; hooks may be null.
  void run(float* x, int n_seqs, ForwardHooks* hooks) {
    BlockBatch b;
    b.n_seqs = n_seqs;
    b.host = x;
    b.hooks = hooks;
    run(b);
  }

  // Keep `rows` rows of hidden states on the GPU between blocks, if they fit beside the largest block's
  // weights (and the output head's, when room_for_output_head) and the runner's buffers; false (nothing
  // held) when they do not — the caller then passes host batches. put/get copy rows [row0, row0 + rows) of
  // the held states from/to the host.
  // reference_rows: room beside them for keep_reference's log-probabilities of that many rows.
  virtual bool hold_hidden_states(int64_t rows, bool room_for_output_head = true, int64_t reference_rows = 0) = 0;
  virtual void put_hidden(int64_t row0, const float* host, int64_t rows) = 0;
  virtual void get_hidden(int64_t row0, float* host, int64_t rows) = 0;

  // The output head in place of a block: the final RMSNorm weight [d] and the vocabulary projection
  // [vocab, d] (float32 host views), the latter converted to the compute precision.
  virtual void load_output_head(const float* norm, const float* output, int vocab) = 0;
  // For a batch of final hidden states h_L (host or held rows) with the output head loaded: −log p(next
  // token) at every position but each sequence's last, into nll [n_seqs · (seq_len − 1)] on the host, and
  // the greedy prediction there into argmax unless it is null — the logits never leave the GPU. tokens: the
  // batch's ids [n_seqs · seq_len]. Twin of ep::next_token_nll.
  virtual void next_token_nll(const BlockBatch& batch, const int32_t* tokens, float* nll, int32_t* argmax) = 0;

  // The measured sensitivities (core/measure/sensitivity_block_major.cpp), with the output head loaded: the
  // log-probabilities of a batch's final states kept on the device as the reference ([rows, vocab] floats),
  // then for a later batch of the same shape KL(reference ‖ its next-token distribution) at every row into
  // kl [n_seqs · seq_len] and −log p(next token) into nll [n_seqs · (seq_len − 1)], on the host; the logits
  // never leave the GPU. Twins of ep::log_softmax_rows_cpu and ep::kl_next_token_rows_cpu (forward/divergence.h).
  virtual void keep_reference(const BlockBatch& batch) = 0;
  virtual void compare_with_reference(const BlockBatch& batch, const int32_t* tokens, float* kl, float* nll) = 0;

  // The fused capture (once per runner): after enable_capture, every batch run with y_projected is folded
  // into the loaded block's statistics on the GPU; take_statistics returns them (raw state) and starts the
  // next block empty.
  virtual void enable_capture(const CaptureLayout& layout) = 0;
  virtual BlockStatistics take_statistics() = 0;

  virtual std::string description() const = 0;  // device name, precision and GEMM backend
  virtual uint64_t peak_device_bytes() const = 0;  // the most device memory this runner has held
};

// A runner for groups of `windows` windows of seq_len tokens whose `slots` hidden states per window it holds
// (beside the output head and one group's reference log-probabilities), halving the group until they fit; with one
// window that still does not fit, the states stay on the host (held = false). make(max_rows) builds a runner and
// throws ep::Error when it cannot (no CUDA, or not even these rows' buffers fit): rethrown at one window.
template <typename Make>
std::unique_ptr<BlockRunner> runner_holding_groups(const Make& make, int seq_len, int slots, int& windows, bool& held) {
  for (;;) {
    const int64_t N = static_cast<int64_t>(windows) * seq_len;
    std::unique_ptr<BlockRunner> runner;
    try {
      runner = make(N);
    } catch (const Error&) {
      if (windows == 1) throw;
      windows = (windows + 1) / 2;
      continue;
    }
    held = runner->hold_hidden_states(slots * N, /*room_for_output_head=*/true, /*reference_rows=*/N);
    if (held || windows == 1) return runner;
    windows = (windows + 1) / 2;
  }
}

inline const char* precision_name(Precision p) { return p == Precision::kF32 ? "f32" : p == Precision::kBF16 ? "bf16" : "f16"; }
// The inverse of precision_name; empty for any other string (the caller names the option in its error).
inline std::optional<Precision> precision_from_name(const std::string& s) {
  for (Precision p : {Precision::kF32, Precision::kBF16, Precision::kF16})
    if (s == precision_name(p)) return p;
  return std::nullopt;
}

}  // namespace ep::cuda
