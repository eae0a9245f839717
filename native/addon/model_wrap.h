// JS class NativeModel: a loaded model (shared with running workers so GC cannot free it mid-run).
#pragma once
#include <napi.h>

#include <memory>

#include "core/device/batches.h"
#include "core/load/model.h"

namespace ep::addon {

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  static Napi::FunctionReference* constructor;
  ModelWrap(const Napi::CallbackInfo& info);
  // Null once disposed. Running jobs hold their own reference: dispose() frees the model when the last ends.
  std::shared_ptr<const Model> model;
  // Throws a JS error (EP_INVALID_ARGUMENT) when the model was disposed.
  void require_live(Napi::Env env) const;

 private:
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Evaluate(const Napi::CallbackInfo& info);
  Napi::Value MeasureRemovalDamage(const Napi::CallbackInfo& info);
  Napi::Value RefitDamage(const Napi::CallbackInfo& info);
  Napi::Value Score(const Napi::CallbackInfo& info);     // score_worker.cpp
  Napi::Value Generate(const Napi::CallbackInfo& info);  // generate_worker.cpp
  Napi::Value EmbeddedVocab(const Napi::CallbackInfo& info);
  Napi::Value Analyze(const Napi::CallbackInfo& info);
  Napi::Value TensorDirectory(const Napi::CallbackInfo& info);
  Napi::Value UnitWeightMagnitudes(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
};

// The options {cudaDevices?: number[], precision?: 'bf16'|'f16'|'f32'} of analyze, evaluate and score: the GPUs
// that run the blocks (none: the CPU). Throws a RangeError naming `fn` for a bad precision.
RunDevices device_option(Napi::Env env, const Napi::Object& o, const char* fn);

// loadModel(path, {streamLayers?}, onProgress?): {promise: Promise<NativeModel>, cancel()}, loading off the main thread.
Napi::Value LoadModel(const Napi::CallbackInfo& info);

}  // namespace ep::addon
