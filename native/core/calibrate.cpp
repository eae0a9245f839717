#include "core/calibrate.h"

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "core/forward.h"
#include "core/layer_ops.h"
#include "core/ops_cpu.h"
#include "core/threads.h"

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

cuda::Precision default_gpu_precision(const Model& model) {
  for (const auto& [name, t] : model.tensors)
    if (name.rfind("blk.", 0) == 0 && t.shape.size() == 2) return t.dtype == DType::F16 ? cuda::Precision::kF16 : cuda::Precision::kBF16;
  return cuda::Precision::kBF16;
}

CalibrationReport calibrate_streamed(const Model& model, const CalibrationBatches& in, StatisticsCapture& capture,
                                     const std::atomic<bool>* cancel, const CalibrationProgress& progress, const CalibrationDevice& device) {
  check_input(model, in);
  const ModelConfig& c = model.config;
  const int d = c.dim, T = in.seq_len, L = c.n_layers(), r = capture.joint_dim();
  const int64_t N = static_cast<int64_t>(in.n_seqs) * T;
  check_tokens(model, in.tokens, N);
  num_threads();
  const int batch_rows_max = std::min(in.batch_seqs, in.n_seqs) * T;
  ForwardScratch scratch(c, batch_rows_max);
  RopeTables rope;
  rope_tables(c, 0, T, rope.cos, rope.sin);
  std::vector<float> h(static_cast<size_t>(N) * d), y_projected(static_cast<size_t>(N) * r);
  CalibrationReport report;
  std::unique_ptr<cuda::BlockRunner> gpu;
  if (device.cuda_device >= 0) {
    cuda::BlockRunnerOptions o;
    o.device = device.cuda_device;
    o.precision = device.precision.value_or(default_gpu_precision(model));
    o.gemm = device.gemm;
    gpu = cuda::BlockRunner::create(c, rope, T, batch_rows_max, o);
    report.device = gpu->description();
  }
  const int64_t batches = (in.n_seqs + in.batch_seqs - 1) / in.batch_seqs, total = 2 * L * batches;
  int64_t done = 0;

  // Every batch through block l, then block l+1: the batches are the same as calibrate's, so each block sees
  // bit-identical inputs in both orders.
  auto run_blocks = [&](ForwardHooks* hooks, const std::function<void(int l, int64_t row0, int64_t rows)>& after_batch) {
    embed_tokens(model, in.tokens, N, h.data());
    for (int l = 0; l < L; ++l) {
      LayerBuffers converted;  // a streamed model's block matrices: converted once per pass, freed after it
      const LayerWeights w = model.layer_weights(l, converted);
      if (gpu) gpu->load_block(l, w);
      for (int s0 = 0; s0 < in.n_seqs; s0 += in.batch_seqs) {
        const int nb = std::min(in.batch_seqs, in.n_seqs - s0);
        const int64_t row0 = static_cast<int64_t>(s0) * T;
        if (gpu) {
          if (cancel && cancel->load(std::memory_order_relaxed)) throw Error(ErrorCode::kCancelled, "", "cancelled");
          gpu->run(&h[row0 * d], nb, hooks);
        } else {
          forward_block(c, l, w, &h[row0 * d], nb, T, rope, scratch, hooks, cancel);
        }
        if (after_batch) after_batch(l, row0, static_cast<int64_t>(nb) * T);
        if (progress) progress(++done, total);
      }
    }
  };

  // Pass 1: y = RMSNorm_final(h_L) for every token, kept projected as the capture projects it.
  run_blocks(nullptr, nullptr);
  for (int s0 = 0; s0 < in.n_seqs; s0 += in.batch_seqs) {
    const int64_t row0 = static_cast<int64_t>(s0) * T, rows = static_cast<int64_t>(std::min(in.batch_seqs, in.n_seqs - s0)) * T;
    rmsnorm_cpu(&h[row0 * d], model.output_norm, scratch.xn.data(), rows, d, c.norm_eps);
    capture.project_output(scratch.xn.data(), rows, &y_projected[row0 * r]);
  }
  // Pass 2: the capture sees every block with y already known, and folds each batch in at once.
  run_blocks(&capture, [&](int l, int64_t row0, int64_t rows) { capture.fold_block(l, &y_projected[row0 * r], rows); });
  capture.add_tokens(N);
  if (gpu) report.peak_device_bytes = gpu->peak_device_bytes();
  return report;
}

}  // namespace ep
