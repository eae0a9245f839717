// The arguments applyPlan and measurePlanLoss share, read from JS: the plan's blocks, the calibration means
// compensation folds in, and the least-squares refit's windows and settings; and the refit's report back.
#pragma once
#include <napi.h>

#include <cstdint>
#include <vector>

#include "core/apply/apply.h"
#include "core/apply/refit.h"
#include "core/device/batches.h"

namespace ep::addon {

// o.blocks: [{removed, attnRemoved, mlpRemoved, keptKvHeads, keptHeads, keptChannels, compensate}]
std::vector<PlanBlock> plan_blocks(const Napi::Object& o);
// o.means (optional): [{headMean?, channelMean?, attnOutMean?, mlpOutMean?}] of Float64Array
std::vector<BlockMeans> block_means(const Napi::Object& o);

// o.refit (optional): {tokens: Int32Array (nSeqs × seqLen), nSeqs, seqLen, batchSeqs?, damping?, memoryBudget?,
// cudaDevices?, precision?, cache?} (the GPUs that run the capture's blocks, device/layer_input_passes.h; cache: a
// createRefitMomentCache() handle whose moments later refits on the same windows reuse).
// tokens stays empty when absent (bias compensation); batches.tokens is set by the worker once the tokens live
// where it runs. Throws a JS TypeError for tokens that do not match nSeqs × seqLen.
struct RefitArgs {
  std::vector<int32_t> tokens;
  TokenBatches batches;
  RefitOptions options;
};
RefitArgs refit_args(Napi::Env env, const Napi::Object& o);

// What least-squares compensation reports back to JS: {layers, passes, cached, moreDamping, fallbacks}.
Napi::Object refit_report_object(Napi::Env env, const RefitReport& report);

// createRefitMomentCache(budgetBytes) -> an opaque handle (core/apply/refit.h RefitMomentCache), freed with it.
Napi::Value CreateRefitMomentCache(const Napi::CallbackInfo& info);

}  // namespace ep::addon
