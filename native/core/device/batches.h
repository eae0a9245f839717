// What the block-major drivers run and where: token windows cut into batches, and the devices that run the
// blocks (the CPU, or GPUs through the interface in block_runner.h). Shared by the measure stage
// (calibrate_streamed) and the evaluate stage (perplexity and zero-shot scores, evaluate_streamed).
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "core/device/block_runner.h"
#include "core/forward/forward.h"
#include "core/load/model.h"

namespace ep {

struct TokenBatches {
  const int32_t* tokens = nullptr;  // [n_seqs * seq_len]
  int n_seqs = 0;
  int seq_len = 0;
  int batch_seqs = 1;  // sequences per forward call
};

// (done, total) in units of work the driver defines; called from the worker thread.
using StageProgress = std::function<void(int64_t done, int64_t total)>;

// Batch-major: each batch of `in.batch_seqs` sequences through every block on the CPU (forward() with `hooks`),
// batch after batch; after_batch(sequences done so far) after each. The loop of the measure stage's calibrate
// and of least-squares compensation's capture (apply/refit).
void forward_batches(const Model& model, const TokenBatches& in, ForwardHooks& hooks, const std::atomic<bool>* cancel,
                     const std::function<void(int)>& after_batch);

// Where a block-major run (calibrate_streamed, the streamed evaluation) runs the blocks. No cuda_devices: the CPU. Otherwise those GPUs run the blocks
// (cuda/block_runner.h), the batches of every block split round-robin between them; each GPU sums its
// batches' statistics on the device (the fused capture) into a capture of its own, and those merge at the
// end (captures merge by design; the result differs from one device's only by the rounding of that merge).
// Each GPU keeps its batches' hidden states between blocks when they fit, else they live in pinned host memory. The GPU's matrix products take their inputs in `precision`: bfloat16 by
// default for every model, also one stored in float16 — activations rounded to float16 overflow where LLaMA's
// few "massive" activations exceed 65504, which bfloat16's float32 range never does.
// cpu_workers > 1 splits the batches the same way between CPU workers — the multi-device path without GPUs
// (tests); on one machine it only divides the cores.
struct RunDevices {
  std::vector<int> cuda_devices;
  int cpu_workers = 1;
  cuda::Precision precision = cuda::Precision::kBF16;
  cuda::GemmBackend gemm = cuda::GemmBackend::kAuto;
};

}  // namespace ep
