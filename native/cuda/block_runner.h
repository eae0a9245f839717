// The decoder blocks on one GPU — the CUDA twin of ep::forward_block (native/core/forward.cpp), plain C++
// so that the core calls it whether or not the build had nvcc (block_runner_stub.cpp reports "no CUDA").
//
// Weights are uploaded one block at a time (load_block) and converted on the device to the compute
// precision; activations stay float32 (RMSNorm, RoPE, softmax, SwiGLU, residuals), and every matrix product
// takes its inputs in the compute precision with float32 accumulation. That is what lets a model larger
// than GPU memory be calibrated block by block (calibrate_streamed): one block's weights and one batch's
// activations live on the GPU at a time.
//
// The hooks receive host copies of every hook tensor, so the statistics capture is the CPU's own and the
// GPU path measures exactly what the CPU path measures, up to the forward pass's rounding.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "core/forward.h"

namespace ep::cuda {

enum class Precision { kF32, kBF16, kF16 };
enum class GemmBackend { kAuto, kCublas, kOwnKernels };  // kAuto: cuBLAS when it loads, else own kernels

struct BlockRunnerOptions {
  int device = 0;
  Precision precision = Precision::kBF16;
  GemmBackend gemm = GemmBackend::kAuto;
};

class BlockRunner {
 public:
  // Throws ep::Error (kUnsupported) when CUDA cannot run: no CUDA in this build, no driver, no such device.
  // max_rows: the most token rows one run() call passes; seq_len: tokens per sequence (RoPE table rows).
  static std::unique_ptr<BlockRunner> create(const ModelConfig& c, const RopeTables& rope, int seq_len, int64_t max_rows,
                                             const BlockRunnerOptions& options);
  virtual ~BlockRunner() = default;

  // Upload block l's weights (float32 host views) and convert them to the compute precision.
  virtual void load_block(int l, const LayerWeights& w) = 0;
  // forward_block on the loaded block: x [n_seqs * seq_len, d] on the host, in place; hooks may be null.
  virtual void run(float* x, int n_seqs, ForwardHooks* hooks) = 0;

  virtual std::string description() const = 0;  // device name, precision and GEMM backend
  virtual uint64_t peak_device_bytes() const = 0;  // the most device memory this runner has held
};

inline const char* precision_name(Precision p) { return p == Precision::kF32 ? "f32" : p == Precision::kBF16 ? "bf16" : "f16"; }
// The inverse of precision_name; empty for any other string (the caller names the option in its error).
inline std::optional<Precision> precision_from_name(const std::string& s) {
  for (Precision p : {Precision::kF32, Precision::kBF16, Precision::kF16})
    if (s == precision_name(p)) return p;
  return std::nullopt;
}

}  // namespace ep::cuda
