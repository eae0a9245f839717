// JS class NativeModel: a loaded model (shared with running workers so GC cannot free it mid-run).
#pragma once
#include <napi.h>

#include <memory>

#include "core/model.h"

namespace ep::addon {

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  static Napi::FunctionReference* constructor;
  ModelWrap(const Napi::CallbackInfo& info);
  std::shared_ptr<const Model> model;

 private:
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Evaluate(const Napi::CallbackInfo& info);
  Napi::Value Score(const Napi::CallbackInfo& info);     // score_worker.cpp
  Napi::Value Generate(const Napi::CallbackInfo& info);  // generate_worker.cpp
  Napi::Value EmbeddedVocab(const Napi::CallbackInfo& info);
  Napi::Value Analyze(const Napi::CallbackInfo& info);
  Napi::Value TensorDirectory(const Napi::CallbackInfo& info);
  Napi::Value UnitWeightMagnitudes(const Napi::CallbackInfo& info);
};

// loadModel(path): Promise<NativeModel>, loading off the main thread.
Napi::Value LoadModel(const Napi::CallbackInfo& info);

}  // namespace ep::addon
