#include "core/measure/calibrate.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "core/device/block_major.h"
#include "core/error.h"
#include "core/forward/forward.h"
#include "core/forward/ops_cpu.h"

namespace ep {

namespace {

void check_input(const Model& model, const TokenBatches& in) {
  if (in.n_seqs <= 0 || in.seq_len <= 0 || in.batch_seqs <= 0) throw Error(ErrorCode::kInvalidArgument, model.path, "empty calibration batch");
}

}  // namespace

void calibrate(const Model& model, const TokenBatches& in, StatisticsCapture& capture, const std::atomic<bool>* cancel,
               const StageProgress& progress) {
  check_input(model, in);
  forward_batches(model, in, capture, cancel, [&](int done) {
    if (progress) progress(done, in.n_seqs);
  });
}

CalibrationReport calibrate_streamed(const Model& model, const TokenBatches& in, StatisticsCapture& capture,
                                     const std::atomic<bool>* cancel, const StageProgress& progress, const RunDevices& device) {
  check_input(model, in);
  const ModelConfig& c = model.config;
  const int d = c.dim, r = capture.joint_dim();
  BlockMajorRun run(model, in.tokens, equal_batches(in), device, &capture);
  const bool gpu = !device.cuda_devices.empty();
  std::vector<std::unique_ptr<StatisticsCapture>> extra;  // the captures of workers 1..n-1
  for (int k = 1; k < run.workers(); ++k) extra.push_back(capture.empty_like());
  auto capture_of = [&](int k) { return k == 0 ? &capture : extra[k - 1].get(); };
  // every token's projected final state, which the GPUs read at every block of pass 2
  HostBuffer y_states(static_cast<uint64_t>(in.n_seqs) * in.seq_len * r, gpu);
  float* const y_projected = y_states.data();
  const int64_t total = 2ll * c.n_layers() * static_cast<int64_t>(run.batches().size());
  int64_t done = 0;
  const auto on_batch = [&](int64_t n) {
    done += n;
    if (progress) progress(done, total);
  };

  CalibrationReport report;
  using Clock = std::chrono::steady_clock;
  const auto seconds_since = [](Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); };
  // Pass 1: y = RMSNorm_final(h_L) for every token, kept projected as the capture projects it.
  auto t0 = Clock::now();
  run.pass(nullptr, nullptr, true, cancel, on_batch);
  report.forward_seconds = seconds_since(t0);
  std::vector<float> xn(static_cast<size_t>(run.batch_rows_max()) * d);
  const float* h = run.hidden();
  for (const Batch& b : run.batches()) {
    rmsnorm_cpu(&h[b.row0 * d], model.output_norm, xn.data(), b.rows, d, c.norm_eps);
    capture.project_output(xn.data(), b.rows, &y_projected[b.row0 * r]);
  }
  // Pass 2: the captures see every block with y already known, and fold each batch in at once.
  t0 = Clock::now();
  run.pass(capture_of, y_projected, false, cancel, on_batch);
  report.capture_seconds = seconds_since(t0);
  for (const auto& e : extra) capture.merge(*e);
  capture.add_tokens(static_cast<int64_t>(in.n_seqs) * in.seq_len);
  report.device = run.description();
  report.peak_device_bytes = run.peak_device_bytes();
  return report;
}

}  // namespace ep
