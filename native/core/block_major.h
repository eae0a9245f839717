// The block-major (layer-streaming) driver shared by calibrate_streamed (calibrate.h) and
// next_token_nll_streamed (evaluate_streamed.h): every batch of windows through block l, then block l+1, on
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

#include "core/calibrate.h"
#include "core/capture.h"
#include "core/model.h"

namespace ep {

class BlockWorker;

// One batch: sequences [row0 / T, +n_seqs), token rows [row0, row0 + rows), run by worker `worker` as the
// slot-th of its batches.
struct Batch {
  int n_seqs = 0, worker = 0, slot = 0;
  int64_t row0 = 0, rows = 0;
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
  // fused_capture: the capture whose layout the GPUs' fused captures follow (null when none will be asked
  // for). Throws ep::Error when a requested GPU cannot run.
  BlockMajorRun(const Model& model, const CalibrationBatches& in, const CalibrationDevice& device, const StatisticsCapture* fused_capture);
  ~BlockMajorRun();
  BlockMajorRun(const BlockMajorRun&) = delete;
  BlockMajorRun& operator=(const BlockMajorRun&) = delete;

  int workers() const { return static_cast<int>(workers_.size()); }
  const std::vector<Batch>& batches() const { return batches_; }
  int64_t batch_rows_max() const { return batch_rows_max_; }
  float* hidden() { return hidden_->data(); }  // [N, d] on the host

  // The embedding, then every block on every batch. capture_of(k): worker k's capture, fed rows of
  // y_projected ([N, r]), or null for none. With keep_final, hidden() holds h_L afterwards. on_batch(n)
  // after n more (batch, block) steps.
  void pass(const std::function<StatisticsCapture*(int)>& capture_of, const float* y_projected, bool keep_final,
            const std::atomic<bool>* cancel, const std::function<void(int64_t)>& on_batch);
  // After a pass: the output head and −log p(next token) of every window, on the devices that ran them
  // (nll [n_seqs · (seq_len − 1)], as forward()'s).
  void next_token_nll(float* nll, const std::atomic<bool>* cancel);

  std::string description() const { return description_; }  // "cpu", or each GPU runner and where its hidden states live
  uint64_t peak_device_bytes() const;

 private:
  const Model& model_;
  CalibrationBatches in_;
  RopeTables rope_;
  int64_t batch_rows_max_ = 0;
  std::vector<Batch> batches_;
  std::vector<std::unique_ptr<BlockWorker>> workers_;
  std::string description_ = "cpu";
  std::unique_ptr<HostBuffer> hidden_;
  std::atomic<bool> stop_{false};
};

}  // namespace ep
