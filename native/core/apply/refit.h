// Least-squares compensation of a plan (apply/least_squares.h): for every block that keeps only some of its
// heads or MLP channels (and compensates), the calibration covariance of the layer's input is captured and the
// kept columns of o_proj / down_proj refitted. Blocks and layers removed whole, and layers cut by nothing, keep
// the paper's bias compensation (a whole layer's best least-squares stand-in is its mean output, which is what
// that folds in).
//
// Memory: the accumulators of a layer hold its input width squared in float64 (a 7B model's MLP: 11008² ·
// 12 bytes ≈ 1.4 GiB with the float32 scratch). They are captured by device/layer_input_passes.h within
// `memory_budget`: in one pass when all fit, else in one block-major sweep when every token's hidden state and
// one block's accumulators fit, else in passes of as many layers as fit; the refitted weights (the size of the
// kept o_proj and down_proj columns, float32) are held until the model is written.
#pragma once
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "core/apply/apply.h"
#include "core/apply/least_squares.h"
#include "core/device/batches.h"
#include "core/device/layer_input_passes.h"
#include "core/load/model.h"

namespace ep {

// The input moments least-squares compensation solves from (a layer's input mean and covariance on the calibration
// windows), kept across refits of different plans of one model on the same windows: the measured refinement's
// candidates and the final apply cut mostly the same layers, and a layer captured once then costs each later plan
// only its solve, not a calibration pass (the capture's forward pass and its n² covariance products are the cost
// that grows with the model). Bounded by `budget` bytes (a layer that does not fit is captured again when asked);
// thread-safe. Entries hold the moments of one key (the model and windows, refit_cache_key): another key empties it.
class RefitMomentCache {
 public:
  explicit RefitMomentCache(uint64_t budget) : budget_(budget) {}
  struct Entry {
    std::vector<double> mean, covariance;
  };
  std::shared_ptr<const Entry> find(uint64_t key, int layer, bool mlp);
  void put(uint64_t key, int layer, bool mlp, std::vector<double> mean, std::vector<double> covariance);
  uint64_t bytes();

 private:
  std::mutex mutex_;
  uint64_t budget_, used_ = 0, key_ = 0;
  std::map<std::pair<int, bool>, std::shared_ptr<const Entry>> entries_;
};

struct RefitOptions {
  double damping = kLeastSquaresDamping;
  uint64_t memory_budget = 4ull << 30;  // accumulator bytes per calibration pass (at least one layer per pass)
  // GPUs for the capture's forward pass (the first; device/layer_input_passes.h: a block-major sweep whose hook
  // tensors come back to the CPU's accumulators); none: the CPU. Tests set `runner` to a CPU runner instead.
  RunDevices device;
  LayerInputRunnerFactory runner;
  // Moments kept from earlier refits on the same windows (none: every refit captures its layers).
  std::shared_ptr<RefitMomentCache> cache;
};

struct RefitReport {
  int layers_refitted = 0;  // o_proj and down_proj layers counted apart
  int passes = 0;           // calibration passes run
  int cached = 0;           // layers solved from moments an earlier refit captured (RefitOptions::cache)
  int undamped_failures = 0;  // layers whose Σ_KK needed more damping than asked (collinear kept units)
  int fallbacks = 0;        // layers left with bias compensation: Σ_KK could not be factored at any damping
};

// What the cache's moments are of: the model, the windows' tokens and shape, and the device that runs the capture
// (a GPU's moments differ from the CPU's in rounding).
uint64_t refit_cache_key(const Model& model, const TokenBatches& calibration, const RefitOptions& options);

// Which layers of the plan least-squares compensation refits (the others need none of its statistics).
void refit_targets(const ModelConfig& c, const std::vector<PlanBlock>& plan, std::vector<char>* attn, std::vector<char>* mlp);

// progress(done, total) in calibration sequences over all passes.
std::vector<LayerRefit> refit_plan(const Model& model, const std::vector<PlanBlock>& plan, const TokenBatches& calibration,
                                   const RefitOptions& options, const std::atomic<bool>* cancel, const StageProgress& progress,
                                   RefitReport* report = nullptr);

}  // namespace ep
