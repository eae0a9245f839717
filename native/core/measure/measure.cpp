#include "core/measure/measure.h"

#include <chrono>

namespace ep {

MeasureResult measure_model(const Model& model, const MeasureRequest& request, const std::atomic<bool>* cancel, const StageProgress& progress) {
  MeasureResult out;
  try {
    using clock = std::chrono::steady_clock;
    const auto seconds_since = [](clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); };
    auto t0 = clock::now();
    StatisticsCapture capture(model.config, request.capture);
    // Block-major when asked for or when GPUs run the blocks (they take the model one block at a time);
    // batch-major otherwise: bit-identical statistics for the same batches, less memory per token.
    if (request.streamed || !request.device.cuda_devices.empty())
      out.run = calibrate_streamed(model, request.windows, capture, cancel, progress, request.device);
    else
      calibrate(model, request.windows, capture, cancel, progress);
    out.calibrate_seconds = seconds_since(t0);
    t0 = clock::now();
    out.analysis = analyze_capture(capture, model.config, request.ridge, &model);
    out.estimators_seconds = seconds_since(t0);
  } catch (const NonFiniteActivations& e) {
    throw Error(ErrorCode::kFormat, model.path, model.nonfinite_report(e.layer()));
  }
  return out;
}

}  // namespace ep
