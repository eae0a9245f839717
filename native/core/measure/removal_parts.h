// What the two drivers of the measured sensitivities share (sensitivity.cpp on the CPU, sensitivity_block_major.cpp
// on GPUs): which parts of a block are measured, a block's weights with a part removed, and the sums that
// become a RemovalDamage.
#pragma once
#include <atomic>
#include <functional>
#include <limits>
#include <memory>
#include <vector>

#include "core/device/block_runner.h"
#include "core/load/model.h"
#include "core/measure/sensitivity.h"

namespace ep::removal {

// The parts measured in each block, by index: its attention, its MLP, the whole block, then a partial cut
// of its attention and of its MLP.
enum Kind { kAttn = 0, kMlp = 1, kBlock = 2, kAttnCut = 3, kMlpCut = 4 };
constexpr int kKinds = 5;

inline bool present(const ModelConfig& c, const PartialCuts* partial, int l, int kind) {
  const LayerShape& s = c.layers[l];
  switch (kind) {
    case kAttn: return s.n_head > 0;
    case kMlp: return s.ffn > 0;
    case kBlock: return s.n_head > 0 || s.ffn > 0;
    case kAttnCut: return s.n_head > 0 && partial && !partial->attn[l].units.empty();
    default: return s.ffn > 0 && partial && !partial->mlp[l].units.empty();
  }
}

// One output projection (W_o or W_down, [rows, cols]) and its bias with some units removed: their columns
// zeroed — the same products as slicing them out — and the bias what apply folds in.
struct CutProjection {
  std::vector<float> proj, bias;
  // Units of unit_width columns each; with means (unit_width per unit), their mean contribution W[:, u]·μ_u
  // is added to the bias (apply's compensation of a partial cut).
  void cut_units(const float* w, const float* b, int rows, int cols, int unit_width, const PartialCut& cut);
  // Every column: the layer's output becomes the constant `mean` (its calibration mean output, the whole
  // layer's compensation), or zero without one — what removing the layer does, with the shapes kept.
  void remove_all(int rows, int cols, const std::vector<float>* mean);
};

// Block l's weights with one part removed by weights alone (shapes kept), for drivers whose blocks have a
// fixed shape (the GPU runner): `storage` owns the changed projections.
LayerWeights removed_by_weights(const Model& model, int l, const LayerWeights& w, int kind, const SublayerMeans& means, const PartialCuts* partial,
                                CutProjection storage[2]);

// Per block and part: the summed NLL increase (over predicted positions) and summed KL (over every position).
struct DamageSums {
  std::vector<double> nll, kl;  // [kKinds · L]
  double base_nll = 0;
  explicit DamageSums(int L) : nll(kKinds * L, 0.0), kl(kKinds * L, 0.0) {}
  void add(const DamageSums& o) {
    for (size_t i = 0; i < nll.size(); ++i) nll[i] += o.nll[i], kl[i] += o.kl[i];
    base_nll += o.base_nll;
  }
};

// The sums over n_seqs windows of seq_len tokens as means (NaN where a part is absent).
RemovalDamage to_damage(const ModelConfig& c, const PartialCuts* partial, const DamageSums& s, int n_seqs, int seq_len);

// The block-major driver (sensitivity_block_major.cpp): the same sums as the CPU driver's, on block runners — one
// per entry of device.cuda_devices, made by make_runner(device, max_rows) (cuda::BlockRunner::create on the
// GPUs; the tests pass a CPU runner, so the driver's logic runs in CI). Inputs already checked.
using RunnerFactory = std::function<std::unique_ptr<cuda::BlockRunner>(int device, int64_t max_rows)>;
DamageSums measure_block_major(const Model& model, const int32_t* tokens, int n_seqs, int seq_len, const SublayerMeans& means, const std::atomic<bool>* cancel,
                               const std::function<void(int64_t, int64_t)>& progress, const PartialCuts* partial, const RunDevices& device,
                               const RunnerFactory& make_runner);
// ... on the GPUs of device.cuda_devices, in device.precision.
DamageSums measure_on_gpus(const Model& model, const int32_t* tokens, int n_seqs, int seq_len, const SublayerMeans& means, const std::atomic<bool>* cancel,
                           const std::function<void(int64_t, int64_t)>& progress, const PartialCuts* partial, const RunDevices& device);

}  // namespace ep::removal
