#include "core/device/block_major.h"

#include <omp.h>

#include <algorithm>
#include <exception>
#include <thread>

#include "core/error.h"
#include "core/forward/forward.h"
#include "core/forward/layer_ops.h"
#include "core/forward/ops_cpu.h"
#include "core/forward/threads.h"
#include "core/device/block_runner.h"
#include "core/device/cuda_api.h"

namespace ep {

// One device's share of a block-major pass: runs block l on the batches it is given. h is the host copy of
// every token's hidden states ([N, d]); y_projected the projected final states of the batch's rows.
class BlockWorker {
 public:
  virtual ~BlockWorker() = default;
  virtual void begin_pass(const float* /*h*/) {}  // after the embedding, before block 0
  virtual void load(int l, const LayerWeights& w) = 0;
  // With `capture`, the batch's statistics of block l go into it (folded with y_projected).
  virtual void run(const Batch& b, float* h, StatisticsCapture* capture, const float* y_projected, const std::atomic<bool>* cancel) = 0;
  virtual void end_block(int /*l*/, StatisticsCapture* /*capture*/) {}
  virtual void end_pass(float* /*h*/) {}  // h is current again (for the final norm after pass 1)
  // After a pass: the output head and the loss of batch b's windows from their final hidden states (and
  // the greedy predictions when argmax is not null).
  virtual void next_token_nll(const Batch& b, float* h, const int32_t* tokens, float* nll, int32_t* argmax) = 0;
};

namespace {

class CpuBlockWorker final : public BlockWorker {
 public:
  // rope: tables for the longest batch (a shorter one reads their first rows); rows: the most rows of a batch.
  CpuBlockWorker(const Model& m, const RopeTables& rope, int64_t rows) : m_(m), c_(m.config), rope_(rope), scratch_(c_, rows) {}
  void load(int l, const LayerWeights& w) override { l_ = l, w_ = w; }
  void run(const Batch& b, float* h, StatisticsCapture* capture, const float* y_projected, const std::atomic<bool>* cancel) override {
    forward_block(c_, l_, w_, &h[b.row0 * c_.dim], b.n_seqs, b.seq_len, rope_, scratch_, capture, cancel);
    if (capture) capture->fold_block(l_, y_projected, b.rows);
  }
  void next_token_nll(const Batch& b, float* h, const int32_t* tokens, float* nll, int32_t* argmax) override {
    std::vector<float>& y = scratch_.xn;
    rmsnorm_cpu(&h[b.row0 * c_.dim], m_.output_norm, y.data(), b.rows, c_.dim, c_.norm_eps);
    ep::next_token_nll(m_, y.data(), tokens, b.n_seqs, b.seq_len, nll, argmax);
  }

 private:
  const Model& m_;
  const ModelConfig& c_;
  const RopeTables& rope_;
  int l_ = -1;
  LayerWeights w_;
  ForwardScratch scratch_;
};

// A GPU: the fused capture sums the statistics on the device, and when they fit the hidden states of the
// worker's batches stay on the device for the whole pass (copied in once after the embedding and out once
// at the end) instead of crossing PCIe at every block.
class GpuBlockWorker final : public BlockWorker {
 public:
  // `own`: the batches this worker runs (their held_row0 laid out back to back); `capture`: the layout of
  // the fused capture, when one will be asked for.
  GpuBlockWorker(std::unique_ptr<cuda::BlockRunner> r, const Model& m, const StatisticsCapture* capture, std::vector<Batch> own)
      : runner(std::move(r)), m_(m), d_(m.config.dim), own_(std::move(own)) {
    if (capture) {
      cuda::CaptureLayout layout;
      layout.joint_dim = capture->joint_dim();
      layout.projection = capture->projection();
      layout.float64_products = capture->products() == Accumulation::kFloat64;
      runner->enable_capture(layout);
    }
    int64_t rows = 0;
    for (const Batch& b : own_) rows += b.rows;
    held = runner->hold_hidden_states(rows, /*room_for_output_head=*/!capture);  // calibration never loads the head
  }
  void begin_pass(const float* h) override {
    if (held)
      for (const Batch& b : own_) runner->put_hidden(b.held_row0, &h[b.row0 * d_], b.rows);
  }
  void load(int l, const LayerWeights& w) override {
    runner->load_block(l, w);  // replaces the output head, if one was loaded
    head_loaded_ = false;
  }
  void run(const Batch& b, float* h, StatisticsCapture* capture, const float* y_projected, const std::atomic<bool>* cancel) override {
    throw_if_cancelled(cancel);
    cuda::BlockBatch bb = rows_of(b, h);
    bb.y_projected = capture ? y_projected : nullptr;
    runner->run(bb);
  }
  void next_token_nll(const Batch& b, float* h, const int32_t* tokens, float* nll, int32_t* argmax) override {
    if (!head_loaded_) runner->load_output_head(m_.output_norm, m_.output, m_.config.vocab);
    head_loaded_ = true;
    runner->next_token_nll(rows_of(b, h), tokens, nll, argmax);
  }
  void end_block(int l, StatisticsCapture* capture) override {
    if (capture) capture->absorb_block(l, runner->take_statistics());
  }
  void end_pass(float* h) override {
    if (held)
      for (const Batch& b : own_) runner->get_hidden(b.held_row0, &h[b.row0 * d_], b.rows);
  }

  std::unique_ptr<cuda::BlockRunner> runner;
  bool held = false;  // the hidden states of own_ live on the GPU

 private:
  cuda::BlockBatch rows_of(const Batch& b, float* h) const {
    cuda::BlockBatch bb;
    bb.n_seqs = b.n_seqs;
    bb.seq_len = b.seq_len;
    if (held)
      bb.held_row0 = b.held_row0;
    else
      bb.host = &h[b.row0 * d_];
    return bb;
  }
  const Model& m_;
  bool head_loaded_ = false;
  int64_t d_;
  std::vector<Batch> own_;
};

// f(k) for every worker k: inline for one, else one thread each with the CPU threads divided between them.
// The first exception (in worker order) is rethrown after all have stopped; `stop` tells the others to
// finish early.
void for_each_worker(int n, std::atomic<bool>& stop, const std::function<void(int)>& f) {
  if (n == 1) return f(0);
  std::vector<std::exception_ptr> errors(n);
  std::vector<std::thread> threads;
  const int per_worker = std::max(1, num_threads() / n);
  try {
    for (int k = 0; k < n; ++k)
      threads.emplace_back([&, k] {
        omp_set_num_threads(per_worker);
        try {
          f(k);
        } catch (...) {
          errors[k] = std::current_exception();
          stop = true;
        }
      });
  } catch (...) {  // a thread could not start: stop and join the others before reporting it
    stop = true;
    for (std::thread& t : threads) t.join();
    throw;
  }
  for (std::thread& t : threads) t.join();
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace

HostBuffer::HostBuffer(uint64_t n, bool pinned) : pinned_(pinned ? cuda::alloc_pinned_floats(n) : nullptr) {
  if (!pinned_) plain_.resize(n);
}
HostBuffer::~HostBuffer() { cuda::free_pinned(pinned_); }

std::vector<BatchShape> equal_batches(const TokenBatches& in) {
  std::vector<BatchShape> shapes;
  for (int s0 = 0; s0 < in.n_seqs; s0 += std::max(1, in.batch_seqs)) shapes.push_back({std::min(in.batch_seqs, in.n_seqs - s0), in.seq_len});
  return shapes;
}

BlockMajorRun::BlockMajorRun(const Model& model, const int32_t* tokens, const std::vector<BatchShape>& shapes, const RunDevices& device,
                             const StatisticsCapture* fused_capture)
    : model_(model), tokens_(tokens) {
  const ModelConfig& c = model.config;
  int max_len = 0;
  for (const BatchShape& s : shapes) {
    if (s.n_seqs <= 0 || s.seq_len <= 0) throw Error(ErrorCode::kInvalidArgument, model.path, "empty batch");
    Batch b;
    b.n_seqs = s.n_seqs;
    b.seq_len = s.seq_len;
    b.row0 = rows_;
    b.rows = static_cast<int64_t>(s.n_seqs) * s.seq_len;
    b.loss0 = losses_;
    rows_ += b.rows;
    losses_ += static_cast<int64_t>(s.n_seqs) * (s.seq_len - 1);
    max_len = std::max(max_len, s.seq_len);
    batch_rows_max_ = std::max(batch_rows_max_, b.rows);
    batches_.push_back(b);
  }
  if (batches_.empty()) throw Error(ErrorCode::kInvalidArgument, model.path, "empty batch");
  check_tokens(model, tokens, rows_);
  num_threads();
  rope_tables(c, 0, max_len, rope_.cos, rope_.sin);
  const int n_batches = static_cast<int>(batches_.size());
  const bool gpu = !device.cuda_devices.empty();
  // at most one device per batch; worker k takes batches k, k+n, …, its held rows back to back
  const int n_workers = std::max(1, std::min(gpu ? static_cast<int>(device.cuda_devices.size()) : device.cpu_workers, n_batches));
  std::vector<int64_t> held_rows(n_workers, 0);
  for (int i = 0; i < n_batches; ++i) {
    Batch& b = batches_[i];
    b.worker = i % n_workers;
    b.held_row0 = held_rows[b.worker];
    held_rows[b.worker] += b.rows;
  }
  if (gpu) {
    description_.clear();
    for (int k = 0; k < n_workers; ++k) {
      cuda::BlockRunnerOptions o;
      o.device = device.cuda_devices[k];
      o.precision = device.precision;
      o.gemm = device.gemm;
      auto runner = cuda::BlockRunner::create(c, rope_, max_len, batch_rows_max_, o);
      const std::string name = runner->description();
      std::vector<Batch> own;
      for (const Batch& b : batches_)
        if (b.worker == k) own.push_back(b);
      auto worker = std::make_unique<GpuBlockWorker>(std::move(runner), model, fused_capture, std::move(own));
      description_ += (k ? "; " : "") + name + (worker->held ? ", hidden states on the GPU" : ", hidden states in host memory");
      workers_.push_back(std::move(worker));
    }
  } else {
    for (int k = 0; k < n_workers; ++k) workers_.push_back(std::make_unique<CpuBlockWorker>(model, rope_, batch_rows_max_));
  }
  // page-locked when GPUs copy them in and out
  hidden_ = std::make_unique<HostBuffer>(static_cast<uint64_t>(rows_) * c.dim, gpu);
}

BlockMajorRun::~BlockMajorRun() = default;

void BlockMajorRun::pass(const std::function<StatisticsCapture*(int)>& capture_of, const float* y_projected, bool keep_final,
                         const std::atomic<bool>* cancel, const std::function<void(int64_t)>& on_batch) {
  const ModelConfig& c = model_.config;
  const int n = workers();
  const int r = y_projected ? capture_of(0)->joint_dim() : 0;
  float* const h = hidden();
  embed_tokens(model_, tokens_, rows_, h);
  for_each_worker(n, stop_, [&](int k) { workers_[k]->begin_pass(h); });
  for (int l = 0; l < c.n_layers(); ++l) {
    LayerBuffers converted;  // a streamed model's block matrices: converted once per pass, freed after it
    const LayerWeights w = model_.layer_weights(l, converted);
    for_each_worker(n, stop_, [&](int k) {
      StatisticsCapture* cap = capture_of ? capture_of(k) : nullptr;
      workers_[k]->load(l, w);
      for (const Batch& b : batches_) {
        if (b.worker != k || stop_) continue;
        workers_[k]->run(b, h, cap, cap ? &y_projected[b.row0 * r] : nullptr, cancel);
        if (n == 1 && on_batch) on_batch(1);
      }
      workers_[k]->end_block(l, cap);
    });
    if (n > 1 && on_batch) on_batch(static_cast<int64_t>(batches_.size()));
  }
  if (keep_final) for_each_worker(n, stop_, [&](int k) { workers_[k]->end_pass(h); });
}

void BlockMajorRun::next_token_nll(float* nll, int32_t* argmax, const std::atomic<bool>* cancel, const std::function<void(int64_t)>& on_batch) {
  float* const h = hidden();
  const int n = workers();
  for_each_worker(n, stop_, [&](int k) {
    for (const Batch& b : batches_) {
      if (b.worker != k || stop_) continue;
      throw_if_cancelled(cancel);
      workers_[k]->next_token_nll(b, h, tokens_ + b.row0, nll + b.loss0, argmax ? argmax + b.loss0 : nullptr);
      if (n == 1 && on_batch) on_batch(1);
    }
  });
  if (n > 1 && on_batch) on_batch(static_cast<int64_t>(batches_.size()));
}

uint64_t BlockMajorRun::peak_device_bytes() const {
  uint64_t peak = 0;
  for (const auto& wk : workers_)
    if (auto* g = dynamic_cast<const GpuBlockWorker*>(wk.get())) peak = std::max(peak, g->runner->peak_device_bytes());
  return peak;
}

}  // namespace ep
