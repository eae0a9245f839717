// Calibration passes that capture the full input covariance of chosen o_proj / down_proj layers
// (capture/layer_inputs.h), grouped so that each pass's accumulators fit a memory budget: what least-squares
// compensation (apply/refit.h) and the refit-aware damage of partial cuts (measure/refit_damage.h) both need.
// A layer of width n holds n² float64 (a 7B model's MLP, 11008 wide: 1.4 GiB with the float32 scratch), so a
// large model takes several passes; each target's moments are handed to `use` after its pass and then freed.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "core/capture/moments.h"
#include "core/device/batches.h"
#include "core/device/block_runner.h"
#include "core/load/model.h"

namespace ep {

struct LayerInputTarget {
  int layer = 0;
  bool mlp = false;  // down_proj's input (the MLP channels); else o_proj's (the heads' outputs)
  int64_t dim = 0;   // the input's width (set by the driver: layer_input_width)
};

// The width of a target's input: the MLP's channels, or the attention's query heads × head size.
inline int64_t layer_input_width(const ModelConfig& c, int layer, bool mlp) {
  return mlp ? c.layers[layer].ffn : static_cast<int64_t>(c.layers[layer].n_head) * c.head_dim;
}

// When the layers do not fit one batch-major pass, and every token's hidden state and one block's accumulators
// fit `memory_budget`, one block-major sweep (each block's inputs captured as the sweep passes it); else
// ceil(bytes / memory_budget) batch-major passes (at least one layer per pass). Either way the moments are
// bit-identical. Progress counts sequences through blocks (the sweep) or calibration sequences over all passes.
// Returns the number of passes over the model (0 when there are no targets).
enum class LayerInputOrder { kAuto, kBatchMajor, kBlockMajor };  // kAuto: as described; the others force one (tests)

// A block runner for the sweep (a GPU's): it runs the blocks, and the capture — on the CPU, as ever — reads the
// host copies of each batch's hook tensors, so the moments are those of the runner's forward pass (a GPU's in its
// precision; a CPU runner's bit-identical to the CPU sweep). max_rows: the rows of one batch. Empty: the CPU.
using LayerInputRunnerFactory = std::function<std::unique_ptr<cuda::BlockRunner>(int64_t max_rows)>;

// With a runner factory, the sweep runs on the runner whenever every token's hidden state and the largest block's
// accumulators fit the budget (one pass, whatever the number of layers); otherwise the CPU's batch-major passes.
int capture_layer_inputs(const Model& model, const std::vector<LayerInputTarget>& targets, const TokenBatches& in, uint64_t memory_budget,
                         const std::atomic<bool>* cancel, const StageProgress& progress,
                         const std::function<void(const LayerInputTarget&, const Moments&)>& use,
                         LayerInputOrder order = LayerInputOrder::kAuto, const LayerInputRunnerFactory& runner = {});

// The factory for the first GPU of device.cuda_devices, in device.precision (empty when it names none).
LayerInputRunnerFactory layer_input_runner(const Model& model, const RunDevices& device, int seq_len);

}  // namespace ep
