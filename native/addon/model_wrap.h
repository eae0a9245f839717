// JS class NativeModel: a loaded model (shared with running workers so GC cannot free it mid-run).
#pragma once
#include <napi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

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

// The token windows every model job takes — {tokens: Int32Array, nSeqs, seqLen} — checked once for all of
// them: tokens.length = nSeqs · seqLen, nSeqs > 0, seqLen ≥ min_seq_len, and the caller's batch (if any) > 0.
// Throws a RangeError naming `call`.
struct TokenWindows {
  std::vector<int32_t> tokens;
  int n_seqs, seq_len;
};
TokenWindows token_windows(Napi::Env env, const Napi::Object& o, const std::string& call, int min_seq_len, int batch = 1);

// The options {cudaDevices?: number[], precision?: 'bf16'|'f16'|'f32'} of analyze, evaluate and score: the GPUs
// that run the blocks (none: the CPU). Throws a RangeError naming `fn` for a bad precision.
RunDevices device_option(Napi::Env env, const Napi::Object& o, const char* fn);

// loadModel(path, {streamLayers?}, onProgress?): {promise: Promise<NativeModel>, cancel()}, loading off the main thread.
Napi::Value LoadModel(const Napi::CallbackInfo& info);

}  // namespace ep::addon
