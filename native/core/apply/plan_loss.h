// The loss of a pruning plan, measured without writing the pruned model [ours; docs/METHOD.md §4c]: the
// next-token loss of the model the plan would produce (every cut, every compensation constant, the
// least-squares refits when given) on token windows, and, with leave_one_out, the loss of the same model with
// one partly cut layer restored — for each partly cut attention and MLP layer. The planner uses the
// differences to correct its damage model at the plan's own depth (lib/plan/refine.ts).
//
// The pruned model runs with its shapes kept (apply's zero mode): the removed units' o_proj / down_proj
// columns are zero, which removes their contribution exactly as slicing does, and the biases and refitted
// columns are apply's own (prune_model). Blocks run block-major over groups of windows: the intact model, the
// plan and every restored variant advance through block l together, so each block's weights are prepared
// once per group and a variant restored at block l runs only blocks l.. (it shares the plan's states before).
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "core/apply/apply.h"
#include "core/device/batches.h"
#include "core/load/model.h"

namespace ep {

struct PlanLossRequest {
  std::vector<PlanBlock> plan;
  std::vector<BlockMeans> means;           // what apply's compensation folds in (empty: none needed)
  const std::vector<LayerRefit>* refits = nullptr;  // least-squares compensation (apply/refit.h), or bias compensation
  bool leave_one_out = false;
  // bytes one group of windows may take: the hidden states (intact, plan, variants: 4·d per token each) and two
  // rows of logits (4·vocab per token each)
  uint64_t memory_budget = 512ull << 20;
};

// Two figures for each model: its mean next-token NLL (nats per predicted token), and its mean KL divergence from
// the unpruned model's next-token distribution over every position — the unit of the measured sensitivities
// (sensitivity.h), which the planner's damage model is written in.
struct PlanLoss {
  double nll = 0, kl = 0;
};
struct PlanLosses {
  double intact_nll = 0;  // the unpruned model's NLL
  PlanLoss plan;          // the pruned model's
  // [L]: the pruned model with block l's partly cut attention / MLP restored alone (its own compensation
  // undone, everything else as planned); NaN where that layer is not partly cut or leave_one_out is off
  std::vector<PlanLoss> attn_restored, mlp_restored;
};

// A layer is partly cut when its block stays and it keeps some but not all of its query heads / channels.
bool attention_partly_cut(const ModelConfig& c, const PlanBlock& b, int l);
bool mlp_partly_cut(const ModelConfig& c, const PlanBlock& b, int l);

// progress(done, total) in blocks over all groups. Throws ep::Error naming the model for a plan that does not
// fit it (check_plan), tokens outside the vocabulary or windows shorter than 2 tokens. device: the CPU (no
// cuda_devices; the reference) or the first GPU of device.cuda_devices (block-major, its matrix products in
// device.precision: f32 reproduces the CPU's figures to rounding).
PlanLosses measure_plan_losses(const Model& model, const TokenBatches& windows, const PlanLossRequest& request, const std::atomic<bool>* cancel,
                               const StageProgress& progress, const RunDevices& device = RunDevices{});

// The block-major driver on a block runner (the GPU's; tests pass a CPU runner so that its logic runs in CI):
// for a group of windows the intact model, the plan and each restored variant advance through block l together,
// their hidden states held by the runner when they fit; the output head compares each with the intact model on
// the device. make_runner(max_rows) builds the runner; groups halve until their states fit. Inputs already checked.
using PlanRunnerFactory = std::function<std::unique_ptr<cuda::BlockRunner>(int64_t max_rows)>;
PlanLosses measure_plan_losses_block_major(const Model& model, const TokenBatches& windows, const PlanLossRequest& request, const std::atomic<bool>* cancel,
                                           const StageProgress& progress, const PlanRunnerFactory& make_runner);

}  // namespace ep
