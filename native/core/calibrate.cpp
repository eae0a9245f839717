#include "core/calibrate.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/forward.h"
#include "core/layer_ops.h"
#include "core/ops_cpu.h"
#include "core/threads.h"
#include "cuda/cuda_runtime_api.h"

namespace ep {

namespace {

void check_input(const Model& model, const CalibrationBatches& in) {
  if (in.n_seqs <= 0 || in.seq_len <= 0 || in.batch_seqs <= 0) throw Error(ErrorCode::kInvalidArgument, model.path, "empty calibration batch");
}

}  // namespace

void calibrate(const Model& model, const CalibrationBatches& in, StatisticsCapture& capture, const std::atomic<bool>* cancel,
               const CalibrationProgress& progress) {
  check_input(model, in);
  for (int s0 = 0; s0 < in.n_seqs; s0 += in.batch_seqs) {
    ForwardRequest r;
    r.tokens = in.tokens + static_cast<size_t>(s0) * in.seq_len;
    r.n_seqs = std::min(in.batch_seqs, in.n_seqs - s0);
    r.seq_len = in.seq_len;
    r.hooks = &capture;
    r.cancel = cancel;
    forward(model, r);
    if (progress) progress(s0 + r.n_seqs, in.n_seqs);
  }
}

uint64_t streamed_state_bytes(const ModelConfig& c, int64_t tokens, int joint_dim) {
  return static_cast<uint64_t>(tokens) * (static_cast<uint64_t>(c.dim) + static_cast<uint64_t>(joint_dim)) * sizeof(float);
}

namespace {

// One batch of calibrate_streamed: sequences [s0, s0 + n_seqs), token rows [row0, row0 + rows), run by
// worker b % n_workers as the slot-th of its batches.
struct Batch {
  int n_seqs = 0, worker = 0, slot = 0;
  int64_t row0 = 0, rows = 0;
};

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
};

class CpuBlockWorker final : public BlockWorker {
 public:
  CpuBlockWorker(const ModelConfig& c, const RopeTables& rope, int T, int64_t rows) : c_(c), rope_(rope), T_(T), scratch_(c, rows) {}
  void load(int l, const LayerWeights& w) override { l_ = l, w_ = w; }
  void run(const Batch& b, float* h, StatisticsCapture* capture, const float* y_projected, const std::atomic<bool>* cancel) override {
    forward_block(c_, l_, w_, &h[b.row0 * c_.dim], b.n_seqs, T_, rope_, scratch_, capture, cancel);
    if (capture) capture->fold_block(l_, y_projected, b.rows);
  }

 private:
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
  // `own`: the batches this worker runs (slots 0, 1, …); `slot_rows`: the most rows of one batch.
  GpuBlockWorker(std::unique_ptr<cuda::BlockRunner> r, const StatisticsCapture& capture, int dim, std::vector<Batch> own, int64_t slot_rows)
      : runner(std::move(r)), d_(dim), own_(std::move(own)), slot_rows_(slot_rows) {
    cuda::CaptureLayout layout;
    layout.joint_dim = capture.joint_dim();
    layout.projection = capture.projection();
    layout.float64_products = capture.products() == Accumulation::kFloat64;
    runner->enable_capture(layout);
    held = runner->hold_hidden_states(static_cast<int64_t>(own_.size()) * slot_rows_);
  }
  void begin_pass(const float* h) override {
    if (held)
      for (const Batch& b : own_) runner->put_hidden(b.slot * slot_rows_, &h[b.row0 * d_], b.rows);
  }
  void load(int l, const LayerWeights& w) override { runner->load_block(l, w); }
  void run(const Batch& b, float* h, StatisticsCapture* capture, const float* y_projected, const std::atomic<bool>* cancel) override {
    throw_if_cancelled(cancel);
    cuda::BlockBatch bb;
    bb.n_seqs = b.n_seqs;
    if (held)
      bb.held_row0 = b.slot * slot_rows_;
    else
      bb.host = &h[b.row0 * d_];
    bb.y_projected = capture ? y_projected : nullptr;
    runner->run(bb);
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

// Pinned host memory when asked for and available, else an ordinary vector.
class HiddenStates {
 public:
  HiddenStates(uint64_t n, bool pinned) : pinned_(pinned ? cuda::alloc_pinned_floats(n) : nullptr) {
    if (!pinned_) plain_.resize(n);
  }
  ~HiddenStates() { cuda::free_pinned(pinned_); }
  HiddenStates(const HiddenStates&) = delete;
  HiddenStates& operator=(const HiddenStates&) = delete;
  float* data() { return pinned_ ? pinned_ : plain_.data(); }

 private:
  float* pinned_;
  std::vector<float> plain_;
};

}  // namespace

CalibrationReport calibrate_streamed(const Model& model, const CalibrationBatches& in, StatisticsCapture& capture,
                                     const std::atomic<bool>* cancel, const CalibrationProgress& progress, const CalibrationDevice& device) {
  check_input(model, in);
  const ModelConfig& c = model.config;
  const int d = c.dim, T = in.seq_len, L = c.n_layers(), r = capture.joint_dim();
  const int64_t N = static_cast<int64_t>(in.n_seqs) * T;
  check_tokens(model, in.tokens, N);
  num_threads();
  const int batch_rows_max = std::min(in.batch_seqs, in.n_seqs) * T;
  RopeTables rope;
  rope_tables(c, 0, T, rope.cos, rope.sin);
  const int n_batches = (in.n_seqs + in.batch_seqs - 1) / in.batch_seqs;
  const bool gpu = !device.cuda_devices.empty();
  // The devices, at most one per batch; worker k takes batches k, k+n, …
  const int n_workers = std::max(1, std::min(gpu ? static_cast<int>(device.cuda_devices.size()) : device.cpu_workers, n_batches));
  std::vector<Batch> batches(n_batches);
  for (int b = 0; b < n_batches; ++b) {
    const int s0 = b * in.batch_seqs;
    batches[b] = {std::min(in.batch_seqs, in.n_seqs - s0), b % n_workers, b / n_workers, static_cast<int64_t>(s0) * T, 0};
    batches[b].rows = static_cast<int64_t>(batches[b].n_seqs) * T;
  }

  CalibrationReport report;
  std::vector<std::unique_ptr<BlockWorker>> workers;
  if (gpu) {
    report.device.clear();
    for (int k = 0; k < n_workers; ++k) {
      cuda::BlockRunnerOptions o;
      o.device = device.cuda_devices[k];
      o.precision = device.precision;
      o.gemm = device.gemm;
      auto runner = cuda::BlockRunner::create(c, rope, T, batch_rows_max, o);
      const std::string name = runner->description();
      std::vector<Batch> own;
      for (const Batch& b : batches)
        if (b.worker == k) own.push_back(b);
      auto worker = std::make_unique<GpuBlockWorker>(std::move(runner), capture, d, std::move(own), batch_rows_max);
      report.device += (k ? "; " : "") + name + (worker->held ? ", hidden states on the GPU" : ", hidden states in host memory");
      workers.push_back(std::move(worker));
    }
  } else {
    for (int k = 0; k < n_workers; ++k) workers.push_back(std::make_unique<CpuBlockWorker>(c, rope, T, batch_rows_max));
  }
  std::vector<std::unique_ptr<StatisticsCapture>> extra;  // the captures of workers 1..n-1
  for (int k = 1; k < n_workers; ++k) extra.push_back(capture.empty_like());
  auto capture_of = [&](int k) -> StatisticsCapture& { return k == 0 ? capture : *extra[k - 1]; };

  // Every calibration token's hidden states on the host (page-locked when GPUs copy them in and out) and
  // its projected final state — which the GPUs read at every block of pass 2.
  HiddenStates hidden(static_cast<uint64_t>(N) * d, gpu), y_states(static_cast<uint64_t>(N) * r, gpu);
  float* const h = hidden.data();
  float* const y_projected = y_states.data();
  const int64_t total = 2ll * L * n_batches;
  int64_t done = 0;
  std::atomic<bool> stop{false};

  // Every batch through block l, then block l+1. The batches are the same as calibrate's, so with one
  // worker each block sees bit-identical inputs in both orders.
  auto run_blocks = [&](bool capturing) {
    embed_tokens(model, in.tokens, N, h);
    for_each_worker(n_workers, stop, [&](int k) { workers[k]->begin_pass(h); });
    for (int l = 0; l < L; ++l) {
      LayerBuffers converted;  // a streamed model's block matrices: converted once per pass, freed after it
      const LayerWeights w = model.layer_weights(l, converted);
      for_each_worker(n_workers, stop, [&](int k) {
        StatisticsCapture* cap = capturing ? &capture_of(k) : nullptr;
        workers[k]->load(l, w);
        for (const Batch& b : batches) {
          if (b.worker != k || stop) continue;
          workers[k]->run(b, h, cap, &y_projected[b.row0 * r], cancel);
          if (n_workers == 1 && progress) progress(++done, total);
        }
        workers[k]->end_block(l, cap);
      });
      if (n_workers > 1) {
        done += n_batches;
        if (progress) progress(done, total);
      }
    }
    if (!capturing) for_each_worker(n_workers, stop, [&](int k) { workers[k]->end_pass(h); });
  };

  using Clock = std::chrono::steady_clock;
  const auto seconds_since = [](Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); };
  // Pass 1: y = RMSNorm_final(h_L) for every token, kept projected as the capture projects it.
  auto t0 = Clock::now();
  run_blocks(false);
  report.forward_seconds = seconds_since(t0);
  std::vector<float> xn(static_cast<size_t>(batch_rows_max) * d);
  for (const Batch& b : batches) {
    rmsnorm_cpu(&h[b.row0 * d], model.output_norm, xn.data(), b.rows, d, c.norm_eps);
    capture.project_output(xn.data(), b.rows, &y_projected[b.row0 * r]);
  }
  // Pass 2: the captures see every block with y already known, and fold each batch in at once.
  t0 = Clock::now();
  run_blocks(true);
  report.capture_seconds = seconds_since(t0);
  for (const auto& e : extra) capture.merge(*e);
  capture.add_tokens(N);
  for (const auto& wk : workers)
    if (auto* g = dynamic_cast<GpuBlockWorker*>(wk.get())) report.peak_device_bytes = std::max(report.peak_device_bytes, g->runner->peak_device_bytes());
  return report;
}

}  // namespace ep
