// The block-major (layer-streaming) driver shared by calibrate_streamed (measure/calibrate.h) and the streamed
// evaluation (evaluate_streamed.h: loss and span scores): every batch through block l, then block l+1, on
// the CPU or on one or more GPUs (cuda/block_runner.h). Each block's weights are touched once per pass — a
// streamed model converts them once per pass, one block in memory at a time — which is what lets a model
// larger than memory (or than the GPU) run. The hidden states of every token are kept between blocks: on the
// GPU that runs their batch when they fit there, else in (pinned) host memory.
//
// Batches are split round-robin between the devices: worker k takes batches k, k+n, … With one worker and
// the same batches, every block sees bit-identical inputs to the batch-major forward().
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/device/batches.h"
#include "core/capture/capture.h"
#include "core/load/model.h"

namespace ep {

class BlockWorker;

// What a batch holds: n_seqs sequences of seq_len tokens, one forward call's worth.
struct BatchShape {
  int n_seqs = 0, seq_len = 0;
};
// Equal windows cut into batches of batch_seqs (calibration and perplexity).
std::vector<BatchShape> equal_batches(const TokenBatches& in);

// One batch of a run: token rows [row0, row0 + rows) of the run's token array, run by worker `worker`,
// whose held hidden states hold it from held_row0; its losses start at loss0 (n_seqs · (seq_len − 1) of them).
struct Batch {
  int n_seqs = 0, seq_len = 0, worker = 0;
  int64_t row0 = 0, rows = 0, held_row0 = 0, loss0 = 0;
};

// A float buffer in page-locked host memory when asked for and CUDA provides it (the GPU copies it at full
// PCIe speed), else in ordinary memory.
class HostBuffer {
 public:
  HostBuffer(uint64_t n, bool pinned);
  ~HostBuffer();
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;
  float* data() { return pinned_ ? pinned_ : plain_.data(); }

 private:
  float* pinned_;
  std::vector<float> plain_;
};

class BlockMajorRun {
 public:
  // tokens: every batch's tokens back to back, in `shapes` order (batches may differ in shape: the zero-shot
  // scorer pads each to its own longest sequence). fused_capture: the capture whose layout the GPUs' fused
  // captures follow (null when none will be asked for). Throws ep::Error when a requested GPU cannot run.
  BlockMajorRun(const Model& model, const int32_t* tokens, const std::vector<BatchShape>& shapes, const RunDevices& device,
                const StatisticsCapture* fused_capture);
  ~BlockMajorRun();
  BlockMajorRun(const BlockMajorRun&) = delete;
  BlockMajorRun& operator=(const BlockMajorRun&) = delete;

  int workers() const { return static_cast<int>(workers_.size()); }
  const std::vector<Batch>& batches() const { return batches_; }
  int64_t batch_rows_max() const { return batch_rows_max_; }
  int64_t losses() const { return losses_; }  // entries next_token_nll writes: Σ n_seqs · (seq_len − 1)
  float* hidden() { return hidden_->data(); }  // [N, d] on the host

  // The embedding, then every block on every batch. capture_of(k): worker k's capture, fed rows of
  // y_projected (r floats per token row), or null for none. With keep_final, hidden() holds h_L afterwards. on_batch(n)
  // after n more (batch, block) steps.
  void pass(const std::function<StatisticsCapture*(int)>& capture_of, const float* y_projected, bool keep_final,
            const std::atomic<bool>* cancel, const std::function<void(int64_t)>& on_batch);
  // After a pass: the output head and −log p(next token) of every sequence, on the devices that ran them:
  // nll (and argmax, the greedy predictions, unless null) batch after batch, each laid out as forward()'s.
  // on_batch(n) after n more batches.
  void next_token_nll(float* nll, int32_t* argmax, const std::atomic<bool>* cancel, const std::function<void(int64_t)>& on_batch);

  std::string description() const { return description_; }  // "cpu", or each GPU runner and where its hidden states live
  uint64_t peak_device_bytes() const;

 private:
  const Model& model_;
  const int32_t* tokens_;
  int64_t rows_ = 0;    // token rows of all batches
  int64_t losses_ = 0;  // loss entries of all batches
  RopeTables rope_;
  int64_t batch_rows_max_ = 0;
  std::vector<Batch> batches_;
  std::vector<std::unique_ptr<BlockWorker>> workers_;
  std::string description_ = "cpu";
  std::unique_ptr<HostBuffer> hidden_;
  std::atomic<bool> stop_{false};
};

}  // namespace ep
