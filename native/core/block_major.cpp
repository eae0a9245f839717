#include "core/block_major.h"

#include <omp.h>

#include <algorithm>
#include <exception>
#include <thread>

#include "core/error.h"
#include "core/forward.h"
#include "core/layer_ops.h"
#include "core/ops_cpu.h"
#include "core/threads.h"
#include "cuda/block_runner.h"
#include "cuda/cuda_runtime_api.h"

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
  // After a pass: the output head and the loss of batch b's windows from their final hidden states.
  virtual void next_token_nll(const Batch& b, float* h, const int32_t* tokens, float* nll) = 0;
};

namespace {

class CpuBlockWorker final : public BlockWorker {
 public:
  CpuBlockWorker(const Model& m, const RopeTables& rope, int T, int64_t rows) : m_(m), c_(m.config), rope_(rope), T_(T), scratch_(c_, rows) {}
  void load(int l, const LayerWeights& w) override { l_ = l, w_ = w; }
  void run(const Batch& b, float* h, StatisticsCapture* capture, const float* y_projected, const std::atomic<bool>* cancel) override {
    forward_block(c_, l_, w_, &h[b.row0 * c_.dim], b.n_seqs, T_, rope_, scratch_, capture, cancel);
    if (capture) capture->fold_block(l_, y_projected, b.rows);
  }
  void next_token_nll(const Batch& b, float* h, const int32_t* tokens, float* nll) override {
    std::vector<float>& y = scratch_.xn;
    rmsnorm_cpu(&h[b.row0 * c_.dim], m_.output_norm, y.data(), b.rows, c_.dim, c_.norm_eps);
    ep::next_token_nll(m_, y.data(), tokens, b.n_seqs, T_, nll, nullptr);
  }

 private:
  const Model& m_;
  const ModelConfig& c_;
  const RopeTables& rope_;
  int T_, l_ = -1;
  LayerWeights w_;
  ForwardScratch scratch_;
};

// A GPU: the fused capture sums the statistics on the device, and when they fit the hidden states of the
// worker's batches stay on the device for the whole pass (copied in once after the embedding and out once
// at the end) instead of crossing PCIe at every block.
class GpuBlockWorker final : public BlockWorker {
 public:
  // `own`: the batches this worker runs (slots 0, 1, …); `slot_rows`: the most rows of one batch;
  // `capture`: the layout of the fused capture, when one will be asked for.
  GpuBlockWorker(std::unique_ptr<cuda::BlockRunner> r, const Model& m, const StatisticsCapture* capture, std::vector<Batch> own, int64_t slot_rows)
      : runner(std::move(r)), m_(m), d_(m.config.dim), own_(std::move(own)), slot_rows_(slot_rows) {
    if (capture) {
      cuda::CaptureLayout layout;
      layout.joint_dim = capture->joint_dim();
      layout.projection = capture->projection();
      layout.float64_products = capture->products() == Accumulation::kFloat64;
      runner->enable_capture(layout);
    }
    held = runner->hold_hidden_states(static_cast<int64_t>(own_.size()) * slot_rows_);
  }
  void begin_pass(const float* h) override {
    if (held)
      for (const Batch& b : own_) runner->put_hidden(b.slot * slot_rows_, &h[b.row0 * d_], b.rows);
  }
  void load(int l, const LayerWeights& w) override { runner->load_block(l, w); }
  void run(const Batch& b, float* h, StatisticsCapture* capture, const float* y_projected, const std::atomic<bool>* cancel) override {
    throw_if_cancelled(cancel);
    cuda::BlockBatch bb = rows_of(b, h);
    bb.y_projected = capture ? y_projected : nullptr;
    runner->run(bb);
  }
  void next_token_nll(const Batch& b, float* h, const int32_t* tokens, float* nll) override {
    if (!head_loaded_) runner->load_output_head(m_.output_norm, m_.output, m_.config.vocab);
    head_loaded_ = true;
    runner->next_token_nll(rows_of(b, h), tokens, nll);
  }
  void end_block(int l, StatisticsCapture* capture) override {
    if (capture) capture->absorb_block(l, runner->take_statistics());
  }
  void end_pass(float* h) override {
    if (held)
      for (const Batch& b : own_) runner->get_hidden(b.slot * slot_rows_, &h[b.row0 * d_], b.rows);
  }

  std::unique_ptr<cuda::BlockRunner> runner;
  bool held = false;  // the hidden states of own_ live on the GPU

 private:
  cuda::BlockBatch rows_of(const Batch& b, float* h) const {
    cuda::BlockBatch bb;
    bb.n_seqs = b.n_seqs;
    if (held)
      bb.held_row0 = b.slot * slot_rows_;
    else
      bb.host = &h[b.row0 * d_];
    return bb;
  }
  const Model& m_;
  bool head_loaded_ = false;
  int64_t d_;
  std::vector<Batch> own_;
  int64_t slot_rows_;
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

BlockMajorRun::BlockMajorRun(const Model& model, const CalibrationBatches& in, const CalibrationDevice& device,
                             const StatisticsCapture* fused_capture)
    : model_(model), in_(in) {
  if (in.n_seqs <= 0 || in.seq_len <= 0 || in.batch_seqs <= 0) throw Error(ErrorCode::kInvalidArgument, model.path, "empty batch");
  const ModelConfig& c = model.config;
  const int T = in.seq_len;
  const int64_t N = static_cast<int64_t>(in.n_seqs) * T;
  check_tokens(model, in.tokens, N);
  num_threads();
  batch_rows_max_ = static_cast<int64_t>(std::min(in.batch_seqs, in.n_seqs)) * T;
  rope_tables(c, 0, T, rope_.cos, rope_.sin);
  const int n_batches = (in.n_seqs + in.batch_seqs - 1) / in.batch_seqs;
  const bool gpu = !device.cuda_devices.empty();
  // at most one device per batch
  const int n_workers = std::max(1, std::min(gpu ? static_cast<int>(device.cuda_devices.size()) : device.cpu_workers, n_batches));
  for (int b = 0; b < n_batches; ++b) {
    const int s0 = b * in.batch_seqs, n = std::min(in.batch_seqs, in.n_seqs - s0);
    batches_.push_back({n, b % n_workers, b / n_workers, static_cast<int64_t>(s0) * T, static_cast<int64_t>(n) * T});
  }
  if (gpu) {
    description_.clear();
    for (int k = 0; k < n_workers; ++k) {
      cuda::BlockRunnerOptions o;
      o.device = device.cuda_devices[k];
      o.precision = device.precision;
      o.gemm = device.gemm;
      auto runner = cuda::BlockRunner::create(c, rope_, T, batch_rows_max_, o);
      const std::string name = runner->description();
      std::vector<Batch> own;
      for (const Batch& b : batches_)
        if (b.worker == k) own.push_back(b);
      auto worker = std::make_unique<GpuBlockWorker>(std::move(runner), model, fused_capture, std::move(own), batch_rows_max_);
      description_ += (k ? "; " : "") + name + (worker->held ? ", hidden states on the GPU" : ", hidden states in host memory");
      workers_.push_back(std::move(worker));
    }
  } else {
    for (int k = 0; k < n_workers; ++k) workers_.push_back(std::make_unique<CpuBlockWorker>(model, rope_, T, batch_rows_max_));
  }
  // page-locked when GPUs copy them in and out
  hidden_ = std::make_unique<HostBuffer>(static_cast<uint64_t>(N) * c.dim, gpu);
}

BlockMajorRun::~BlockMajorRun() = default;

void BlockMajorRun::pass(const std::function<StatisticsCapture*(int)>& capture_of, const float* y_projected, bool keep_final,
                         const std::atomic<bool>* cancel, const std::function<void(int64_t)>& on_batch) {
  const ModelConfig& c = model_.config;
  const int n = workers();
  const int r = y_projected ? capture_of(0)->joint_dim() : 0;
  float* const h = hidden();
  embed_tokens(model_, in_.tokens, static_cast<int64_t>(in_.n_seqs) * in_.seq_len, h);
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

void BlockMajorRun::next_token_nll(float* nll, const std::atomic<bool>* cancel) {
  const int T = in_.seq_len;
  float* const h = hidden();
  for_each_worker(workers(), stop_, [&](int k) {
    for (const Batch& b : batches_) {
      if (b.worker != k || stop_) continue;
      throw_if_cancelled(cancel);
      const int64_t s0 = b.row0 / T;
      workers_[k]->next_token_nll(b, h, in_.tokens + b.row0, nll + s0 * (T - 1));
    }
  });
}

uint64_t BlockMajorRun::peak_device_bytes() const {
  uint64_t peak = 0;
  for (const auto& wk : workers_)
    if (auto* g = dynamic_cast<const GpuBlockWorker*>(wk.get())) peak = std::max(peak, g->runner->peak_device_bytes());
  return peak;
}

}  // namespace ep
