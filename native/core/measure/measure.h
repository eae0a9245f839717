// The measure stage's one entry point: calibration windows through the model with the statistics capture
// attached, on the device asked for, then the estimators. Callers (the addon's analyze, native/tools/timing)
// convert arguments and call this; the choice between the batch-major and the block-major driver is made
// here, not by them.
#pragma once
#include <atomic>

#include "core/capture/capture.h"
#include "core/device/batches.h"
#include "core/load/model.h"
#include "core/measure/analysis.h"
#include "core/measure/calibrate.h"

namespace ep {

struct MeasureRequest {
  TokenBatches windows;
  CaptureOptions capture;
  double ridge = 1e-6;
  // Block-major (layer streaming) even on the CPU; implied by any CUDA device in `device`.
  bool streamed = false;
  RunDevices device;
};

struct MeasureResult {
  AnalysisResult analysis;
  CalibrationReport run;  // what ran the blocks, and the passes' timings when streamed
  double calibrate_seconds = 0;   // the windows through the model with the capture attached
  double estimators_seconds = 0;  // the estimators on the captured statistics (TE, unit entropies, means)
};

// Throws ep::Error; non-finite activations name the first non-finite tensor of their block.
MeasureResult measure_model(const Model& model, const MeasureRequest& request, const std::atomic<bool>* cancel, const StageProgress& progress);

}  // namespace ep
