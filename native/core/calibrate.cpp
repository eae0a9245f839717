#include "core/calibrate.h"

#include <omp.h>

#include <algorithm>
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

// One device's share of a block-major pass: runs block l on the batches it is given.
class BlockWorker {
 public:
  virtual ~BlockWorker() = default;
  virtual void load(int l, const LayerWeights& w) = 0;
  virtual void run(float* x, int n_seqs, ForwardHooks* hooks, const std::atomic<bool>* cancel) = 0;
};

class CpuBlockWorker final : public BlockWorker {
 public:
  CpuBlockWorker(const ModelConfig& c, const RopeTables& rope, int T, int64_t rows) : c_(c), rope_(rope), T_(T), scratch_(c, rows) {}
  void load(int l, const LayerWeights& w) override { l_ = l, w_ = w; }
  void run(float* x, int n_seqs, ForwardHooks* hooks, const std::atomic<bool>* cancel) override {
    forward_block(c_, l_, w_, x, n_seqs, T_, rope_, scratch_, hooks, cancel);
  }

 private:
  const ModelConfig& c_;
  const RopeTables& rope_;
  int T_, l_ = -1;
  LayerWeights w_;
  ForwardScratch scratch_;
};

class GpuBlockWorker final : public BlockWorker {
 public:
  explicit GpuBlockWorker(std::unique_ptr<cuda::BlockRunner> r) : runner(std::move(r)) {}
  void load(int l, const LayerWeights& w) override { runner->load_block(l, w); }
  void run(float* x, int n_seqs, ForwardHooks* hooks, const std::atomic<bool>* cancel) override {
    throw_if_cancelled(cancel);
    runner->run(x, n_seqs, hooks);
  }
  std::unique_ptr<cuda::BlockRunner> runner;
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
  const int batches = (in.n_seqs + in.batch_seqs - 1) / in.batch_seqs;

  // The devices, at most one per batch.
  CalibrationReport report;
  std::vector<std::unique_ptr<BlockWorker>> workers;
  if (!device.cuda_devices.empty()) {
    std::vector<std::string> names;
    for (int dev : device.cuda_devices) {
      if (static_cast<int>(workers.size()) == batches) break;
      cuda::BlockRunnerOptions o;
      o.device = dev;
      o.precision = device.precision;
      o.gemm = device.gemm;
      auto runner = cuda::BlockRunner::create(c, rope, T, batch_rows_max, o);
      names.push_back(runner->description());
      workers.push_back(std::make_unique<GpuBlockWorker>(std::move(runner)));
    }
    report.device = names[0];
    for (size_t k = 1; k < names.size(); ++k) report.device += "; " + names[k];
  } else {
    const int n = std::max(1, std::min(device.cpu_workers, batches));
    for (int k = 0; k < n; ++k) workers.push_back(std::make_unique<CpuBlockWorker>(c, rope, T, batch_rows_max));
  }
  const int n_workers = static_cast<int>(workers.size());
  std::vector<std::unique_ptr<StatisticsCapture>> extra;  // the captures of workers 1..n-1
  for (int k = 1; k < n_workers; ++k) extra.push_back(capture.empty_like());
  auto capture_of = [&](int k) -> StatisticsCapture& { return k == 0 ? capture : *extra[k - 1]; };

  // The hidden states of every calibration token: page-locked when GPUs copy them in and out at every block.
  HiddenStates hidden(static_cast<uint64_t>(N) * d, !device.cuda_devices.empty());
  float* const h = hidden.data();
  std::vector<float> y_projected(static_cast<size_t>(N) * r);
  const int64_t total = 2ll * L * batches;
  int64_t done = 0;
  std::atomic<bool> stop{false};

  // Every batch through block l, then block l+1 — worker k takes batches k, k+n, … The batches are the same
  // as calibrate's, so with one worker each block sees bit-identical inputs in both orders.
  auto run_blocks = [&](bool capturing) {
    embed_tokens(model, in.tokens, N, h);
    for (int l = 0; l < L; ++l) {
      LayerBuffers converted;  // a streamed model's block matrices: converted once per pass, freed after it
      const LayerWeights w = model.layer_weights(l, converted);
      for_each_worker(n_workers, stop, [&](int k) {
        workers[k]->load(l, w);
        for (int b = k; b < batches && !stop; b += n_workers) {
          const int s0 = b * in.batch_seqs, nb = std::min(in.batch_seqs, in.n_seqs - s0);
          const int64_t row0 = static_cast<int64_t>(s0) * T, rows = static_cast<int64_t>(nb) * T;
          workers[k]->run(&h[row0 * d], nb, capturing ? &capture_of(k) : nullptr, cancel);
          if (capturing) capture_of(k).fold_block(l, &y_projected[row0 * r], rows);
          if (n_workers == 1 && progress) progress(++done, total);
        }
      });
      if (n_workers > 1) {
        done += batches;
        if (progress) progress(done, total);
      }
    }
  };

  // Pass 1: y = RMSNorm_final(h_L) for every token, kept projected as the capture projects it.
  run_blocks(false);
  std::vector<float> xn(static_cast<size_t>(batch_rows_max) * d);
  for (int s0 = 0; s0 < in.n_seqs; s0 += in.batch_seqs) {
    const int64_t row0 = static_cast<int64_t>(s0) * T, rows = static_cast<int64_t>(std::min(in.batch_seqs, in.n_seqs - s0)) * T;
    rmsnorm_cpu(&h[row0 * d], model.output_norm, xn.data(), rows, d, c.norm_eps);
    capture.project_output(xn.data(), rows, &y_projected[row0 * r]);
  }
  // Pass 2: the captures see every block with y already known, and fold each batch in at once.
  run_blocks(true);
  for (const auto& e : extra) capture.merge(*e);
  capture.add_tokens(N);
  for (const auto& wk : workers)
    if (auto* g = dynamic_cast<GpuBlockWorker*>(wk.get())) report.peak_device_bytes = std::max(report.peak_device_bytes, g->runner->peak_device_bytes());
  return report;
}

}  // namespace ep
