// The N-API module: the only code that includes napi.h. One export per native entry point; argument
// checking and friendly errors live in lib/ (TypeScript), this layer only converts and dispatches.
#include <napi.h>

#include "addon/js_errors.h"
#include "addon/model_wrap.h"
#include "addon/plan_args.h"
#include "addon/tokenizer_wrap.h"
#include "core/load/memory_info.h"
#include "core/synthetic/synthetic_model.h"
#include "core/forward/threads.h"
#include "core/device/cuda_api.h"

namespace ep::addon {

static Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  set_num_threads(info[0].As<Napi::Number>().Int32Value());
  return Napi::Number::New(info.Env(), num_threads());
}

static Napi::Value GetThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), num_threads()); }

static Napi::Value CudaProbe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  cuda::Probe p = cuda::probe();
  Napi::Object o = Napi::Object::New(env);
  o.Set("compiled", p.compiled);
  o.Set("available", p.available);
  o.Set("driverVersion", p.driver_version);
  o.Set("runtimeVersion", p.runtime_version);
  o.Set("message", p.message);
  Napi::Array devs = Napi::Array::New(env, p.devices.size());
  for (size_t i = 0; i < p.devices.size(); ++i) {
    Napi::Object d = Napi::Object::New(env);
    d.Set("index", p.devices[i].index);
    d.Set("name", p.devices[i].name);
    d.Set("computeCapability", std::to_string(p.devices[i].compute_major) + "." + std::to_string(p.devices[i].compute_minor));
    d.Set("totalMemory", static_cast<double>(p.devices[i].total_memory));
    devs.Set(static_cast<uint32_t>(i), d);
  }
  o.Set("devices", devs);
  return o;
}

// writeSyntheticGguf({dim, vocab, headDim, layers:[{nHead,nKvHead,ffn,attnOutBias,ffnDownBias}], seed,
//                     normEps?, ropeTheta?, tiedOutput?}, path)
static Napi::Value WriteSyntheticGguf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info[0].As<Napi::Object>();
  const std::string path = info[1].As<Napi::String>();
  SyntheticSpec spec;
  ModelConfig& c = spec.config;
  auto num = [&](const char* k, double dflt) { return o.Has(k) ? o.Get(k).As<Napi::Number>().DoubleValue() : dflt; };
  c.dim = static_cast<int>(num("dim", 0));
  c.vocab = static_cast<int>(num("vocab", 0));
  c.head_dim = static_cast<int>(num("headDim", 0));
  c.norm_eps = static_cast<float>(num("normEps", 1e-5));
  c.rope_theta = static_cast<float>(num("ropeTheta", 10000));
  c.context = static_cast<int>(num("context", 2048));
  c.tied_output = o.Has("tiedOutput") && o.Get("tiedOutput").ToBoolean();
  spec.seed = static_cast<uint64_t>(num("seed", 1));
  spec.weight_scale = static_cast<float>(num("weightScale", 0));
  Napi::Array layers = o.Get("layers").As<Napi::Array>();
  for (uint32_t i = 0; i < layers.Length(); ++i) {
    Napi::Object l = layers.Get(i).As<Napi::Object>();
    LayerShape s;
    s.n_head = l.Get("nHead").As<Napi::Number>().Int32Value();
    s.n_kv_head = l.Get("nKvHead").As<Napi::Number>().Int32Value();
    s.ffn = l.Get("ffn").As<Napi::Number>().Int32Value();
    s.attn_out_bias = l.Has("attnOutBias") && l.Get("attnOutBias").ToBoolean();
    s.ffn_down_bias = l.Has("ffnDownBias") && l.Get("ffnDownBias").ToBoolean();
    c.layers.push_back(s);
  }
  guarded(env, [&] { write_synthetic_gguf(spec, path); return 0; });
  return env.Undefined();
}

Napi::Value ApplyPlan(const Napi::CallbackInfo& info);
Napi::Value MeasurePlanLoss(const Napi::CallbackInfo& info);
Napi::Value WriteSyntheticModel(const Napi::CallbackInfo& info);

// availableMemory(): bytes the core's memory checks work with (MemAvailable, or ENTROPRUNE_MEMORY_LIMIT; 0 if unknown)
static Napi::Value AvailableMemory(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(available_memory_bytes()));
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeModel", ModelWrap::Init(env));
  exports.Set("NativeSpmTokenizer", TokenizerWrap::Init(env));
  exports.Set("loadModel", Napi::Function::New(env, LoadModel));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("getThreads", Napi::Function::New(env, GetThreads));
  exports.Set("cudaProbe", Napi::Function::New(env, CudaProbe));
  exports.Set("writeSyntheticGguf", Napi::Function::New(env, WriteSyntheticGguf));
  exports.Set("applyPlan", Napi::Function::New(env, ApplyPlan));
  exports.Set("measurePlanLoss", Napi::Function::New(env, MeasurePlanLoss));
  exports.Set("createRefitMomentCache", Napi::Function::New(env, CreateRefitMomentCache));
  exports.Set("writeSyntheticModel", Napi::Function::New(env, WriteSyntheticModel));
  exports.Set("availableMemory", Napi::Function::New(env, AvailableMemory));
  // Raised with every change to what a call accepts or returns; lib/native.ts refuses another (NATIVE_ABI_VERSION).
  exports.Set("abiVersion", Napi::Number::New(env, 5));  // 2: applyPlan's refit; 3: model.refitDamage; 4: measurePlanLoss; 5: refit moment cache
  return exports;
}

NODE_API_MODULE(entroprune, Init)

}  // namespace ep::addon
