// writeSyntheticModel({preset, layers?, dtype?, seed?, format}, path, onProgress?) -> {promise, cancel()}:
// a random-weight model at a real shape (core/synthetic/synthetic_model.h), written off the main thread with progress
// per tensor and a cancel the writer honours between tensors. `path` is written directly: the JS side
// writes to a temporary name and renames.
#include <napi.h>

#include <atomic>
#include <filesystem>
#include <memory>

#include "addon/js_errors.h"
#include "addon/native_job.h"
#include "core/error.h"
#include "core/synthetic/synthetic_model.h"

namespace ep::addon {

namespace {

class SynthWorker final : public NativeJob {
 public:
  SynthWorker(Napi::Env env, SyntheticSpec spec, std::string path, bool hf, const Napi::Function& on_progress, std::shared_ptr<std::atomic<bool>> cancel)
      : NativeJob(env, on_progress), spec_(std::move(spec)), path_(std::move(path)), hf_(hf), cancel_(std::move(cancel)) {}

 private:
  void run(const ReportProgress& report) override {
    spec_.on_tensor = [&](int done, int total) {
      throw_if_cancelled(cancel_.get());
      report(done, total);
    };
    if (hf_) write_synthetic_hf(spec_, path_);
    else write_synthetic_gguf(spec_, path_);
  }
  Napi::Value resolve(Napi::Env env) override { return env.Undefined(); }
  SyntheticSpec spec_;
  std::string path_;
  bool hf_;
  std::shared_ptr<std::atomic<bool>> cancel_;
};

}  // namespace

Napi::Value WriteSyntheticModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsString())
    throw Napi::TypeError::New(env, "writeSyntheticModel({preset, layers?, dtype?, seed?, format}, path, onProgress?)");
  Napi::Object o = info[0].As<Napi::Object>();
  SyntheticSpec spec;
  const std::string dtype = o.Has("dtype") ? o.Get("dtype").As<Napi::String>().Utf8Value() : "bf16";
  if (dtype != "f32" && dtype != "f16" && dtype != "bf16") throw Napi::RangeError::New(env, "dtype must be f32, f16 or bf16");
  spec.dtype = dtype == "f32" ? DType::F32 : dtype == "f16" ? DType::F16 : DType::BF16;
  if (o.Has("seed")) spec.seed = static_cast<uint64_t>(o.Get("seed").As<Napi::Number>().DoubleValue());
  const int layers = o.Has("layers") ? o.Get("layers").As<Napi::Number>().Int32Value() : 0;
  const bool hf = o.Has("format") && o.Get("format").As<Napi::String>().Utf8Value() == "hf";
  const std::string preset = o.Get("preset").As<Napi::String>();
  guarded(env, [&] {
    spec.config = synthetic_preset(preset, layers);
    return 0;
  });
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  const Napi::Function cb = callback_at(info, 2);
  return queue_job(env, new SynthWorker(env, spec, info[1].As<Napi::String>(), hf, cb, cancel), cancel);
}

}  // namespace ep::addon
