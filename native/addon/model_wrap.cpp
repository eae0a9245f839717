#include "addon/model_wrap.h"

#include <atomic>
#include <optional>

#include "addon/js_errors.h"
#include "addon/native_job.h"
#include "addon/tokenizer_wrap.h"
#include "core/measure/analysis.h"
#include "core/measure/measure.h"
#include "core/measure/calibrate.h"
#include "core/capture/capture.h"
#include "core/evaluate/evaluate.h"
#include "core/measure/refit_damage.h"
#include "core/measure/sensitivity.h"
#include "core/measure/unit_weights.h"
#include "core/forward/forward.h"

namespace ep::addon {

Napi::FunctionReference* ModelWrap::constructor = nullptr;

Napi::Function ModelWrap::Init(Napi::Env env) {
  Napi::Function f = DefineClass(env, "NativeModel",
                                 {InstanceMethod("info", &ModelWrap::Info), InstanceMethod("evaluate", &ModelWrap::Evaluate), InstanceMethod("score", &ModelWrap::Score), InstanceMethod("generate", &ModelWrap::Generate),
                                  InstanceMethod("analyze", &ModelWrap::Analyze), InstanceMethod("measureRemovalDamage", &ModelWrap::MeasureRemovalDamage), InstanceMethod("refitDamage", &ModelWrap::RefitDamage), InstanceMethod("unitWeightMagnitudes", &ModelWrap::UnitWeightMagnitudes), InstanceMethod("tensorDirectory", &ModelWrap::TensorDirectory),
                                  InstanceMethod("embeddedVocab", &ModelWrap::EmbeddedVocab), InstanceMethod("dispose", &ModelWrap::Dispose)});
  constructor = new Napi::FunctionReference(Napi::Persistent(f));
  return f;
}

ModelWrap::ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
  if (info.Length() != 1 || !info[0].IsExternal()) throw Napi::TypeError::New(info.Env(), "use loadModel(path)");
  // Take the reference out of the External (whose finalizer runs only at GC), so that dispose() frees the model.
  model = std::move(*info[0].As<Napi::External<std::shared_ptr<const Model>>>().Data());
}

void ModelWrap::require_live(Napi::Env env) const { require_not_disposed(env, model != nullptr, "this model was disposed: load it again to use it"); }

// Drops this handle's reference: the weights (mapped file and converted buffers) are freed now, or when the
// last running job that holds the model ends. Disposing twice is harmless.
Napi::Value ModelWrap::Dispose(const Napi::CallbackInfo& info) {
  model.reset();
  return info.Env().Undefined();
}

Napi::Value ModelWrap::Info(const Napi::CallbackInfo& info) {
  require_live(info.Env());
  Napi::Env env = info.Env();
  const ModelConfig& c = model->config;
  Napi::Object o = Napi::Object::New(env);
  o.Set("path", model->path);
  o.Set("format", model->format);
  o.Set("arch", c.arch);
  o.Set("dim", c.dim);
  o.Set("vocab", c.vocab);
  o.Set("headDim", c.head_dim);
  o.Set("context", c.context);
  o.Set("slidingWindow", c.sliding_window);
  o.Set("normEps", c.norm_eps);
  o.Set("ropeTheta", c.rope_theta);
  o.Set("ropeLayout", c.rope_layout == RopeLayout::kInterleaved ? "interleaved" : "half");
  o.Set("ropeScaling", c.rope_scaling);
  o.Set("tiedOutput", c.tied_output);
  o.Set("bos", c.bos);
  o.Set("eos", c.eos);
  Napi::Array layers = Napi::Array::New(env, c.layers.size());
  for (size_t i = 0; i < c.layers.size(); ++i) {
    const LayerShape& s = c.layers[i];
    Napi::Object l = Napi::Object::New(env);
    l.Set("nHead", s.n_head);
    l.Set("nKvHead", s.n_kv_head);
    l.Set("ffn", s.ffn);
    l.Set("attnQkvBias", s.attn_qkv_bias);
    l.Set("attnOutBias", s.attn_out_bias);
    l.Set("ffnDownBias", s.ffn_down_bias);
    layers.Set(static_cast<uint32_t>(i), l);
  }
  o.Set("layers", layers);
  o.Set("parameterCount", static_cast<double>(model->parameter_count()));
  o.Set("blockLinearParameterCount", static_cast<double>(model->block_linear_parameter_count()));
  o.Set("convertedBytes", static_cast<double>(model->converted_bytes));
  o.Set("streamsLayers", model->streams_layers());
  o.Set("hasEmbeddedVocab", static_cast<bool>(model->embedded_vocab));
  return o;
}

Napi::Value ModelWrap::UnitWeightMagnitudes(const Napi::CallbackInfo& info) {
  require_live(info.Env());
  Napi::Env env = info.Env();
  const ep::UnitWeightMagnitudes m = unit_weight_magnitudes(*model);
  auto arrays = [&](const std::vector<std::vector<double>>& v) {
    Napi::Array a = Napi::Array::New(env, v.size());
    for (size_t l = 0; l < v.size(); ++l) {
      Napi::Array x = Napi::Array::New(env, v[l].size());
      for (size_t i = 0; i < v[l].size(); ++i) x.Set(static_cast<uint32_t>(i), v[l][i]);
      a.Set(static_cast<uint32_t>(l), x);
    }
    return a;
  };
  Napi::Object o = Napi::Object::New(env);
  o.Set("heads", arrays(m.heads));
  o.Set("channels", arrays(m.channels));
  return o;
}

// One line per stored tensor (name, dtype, shape, byte offset, file size): hashed in JS as the model's identity.
Napi::Value ModelWrap::TensorDirectory(const Napi::CallbackInfo& info) {
  require_live(info.Env());
  std::string out;
  for (const auto& [name, t] : model->tensors) {
    out += t.stored_name + " " + dtype_name(t.dtype);
    for (int64_t d : t.shape) out += " " + std::to_string(d);
    out += " @" + std::to_string(t.offset) + " /" + std::to_string(t.file->size()) + "\n";
  }
  return Napi::String::New(info.Env(), out);
}

Napi::Value ModelWrap::EmbeddedVocab(const Napi::CallbackInfo& info) {
  require_live(info.Env());
  if (!model->embedded_vocab) return info.Env().Null();
  auto holder = std::make_shared<const SpmVocab>(*model->embedded_vocab);
  return TokenizerWrap::constructor->New(
      {Napi::External<std::shared_ptr<const SpmVocab>>::New(info.Env(), new std::shared_ptr<const SpmVocab>(holder),
                                                          [](Napi::Env, std::shared_ptr<const SpmVocab>* p) { delete p; })});
}

// ---------------------------------------------------------------------------------------------------------
namespace {

// A copy of a double vector as a JavaScript Float64Array (the results the workers hand back).
Napi::Float64Array float64_array(Napi::Env env, const std::vector<double>& v) {
  Napi::Float64Array a = Napi::Float64Array::New(env, v.size());
  std::copy(v.begin(), v.end(), a.Data());
  return a;
}

class LoadWorker final : public NativeJob {
 public:
  LoadWorker(Napi::Env env, std::string path, LoadOptions options, const Napi::Function& on_progress, std::shared_ptr<std::atomic<bool>> cancel)
      : NativeJob(env, on_progress), path_(std::move(path)), options_(std::move(options)), cancel_(std::move(cancel)) {}

 private:
  void run(const ReportProgress& report) override {
    options_.progress = report;
    options_.cancel = cancel_.get();
    model_ = load_model(path_, options_);
  }
  Napi::Value resolve(Napi::Env env) override {
    auto* holder = new std::shared_ptr<const Model>(std::move(model_));
    auto ext = Napi::External<std::shared_ptr<const Model>>::New(env, holder, [](Napi::Env, std::shared_ptr<const Model>* p) { delete p; });
    return ModelWrap::constructor->New({ext});
  }
  std::string path_;
  LoadOptions options_;
  std::shared_ptr<std::atomic<bool>> cancel_;
  std::unique_ptr<Model> model_;
};

// Runs the forward pass over n_seqs sequences, batch_seqs at a time, reporting progress after each batch —
// or, for the loss with GPUs named, block-major on those GPUs (evaluate_streamed.h), reporting its steps.
class EvaluateWorker final : public NativeJob {
 public:
  EvaluateWorker(Napi::Env env, std::shared_ptr<const Model> model, std::vector<int32_t> tokens, int n_seqs, int seq_len, int batch_seqs,
                 bool want_logits, RunDevices device, const Napi::Function& on_progress, std::shared_ptr<std::atomic<bool>> cancel)
      : NativeJob(env, on_progress), model_(std::move(model)), tokens_(std::move(tokens)), n_seqs_(n_seqs), seq_len_(seq_len), batch_(batch_seqs),
        want_logits_(want_logits), device_(std::move(device)), cancel_(std::move(cancel)) {}

 private:
  void run(const ReportProgress& report) override {
    const size_t per_seq = want_logits_ ? static_cast<size_t>(seq_len_) * model_->config.vocab : static_cast<size_t>(seq_len_ - 1);
    out_.resize(per_seq * n_seqs_);
    EvaluateRequest request;
    request.windows = {tokens_.data(), n_seqs_, seq_len_, batch_};
    request.logits = want_logits_;
    request.device = device_;
    evaluate_windows(*model_, request, out_.data(), cancel_.get(), report);
  }
  Napi::Value resolve(Napi::Env env) override {
    Napi::Float32Array a = Napi::Float32Array::New(env, out_.size());
    std::copy(out_.begin(), out_.end(), a.Data());
    std::vector<float>().swap(out_);
    return a;
  }
  std::shared_ptr<const Model> model_;
  std::vector<int32_t> tokens_;
  int n_seqs_, seq_len_, batch_;
  bool want_logits_;
  RunDevices device_;
  std::shared_ptr<std::atomic<bool>> cancel_;
  std::vector<float> out_;
};

// Runs calibration sequences through the forward pass with the statistics capture attached, then the
// estimators; resolves with the plain numbers (typed arrays) that lib/measure turns into analysis.json.
class AnalyzeWorker final : public NativeJob {
 public:
  AnalyzeWorker(Napi::Env env, std::shared_ptr<const Model> model, std::vector<int32_t> tokens, int n_seqs, int seq_len, int batch,
                bool streamed, RunDevices device, CaptureOptions capture, double ridge, const Napi::Function& on_progress,
                std::shared_ptr<std::atomic<bool>> cancel)
      : NativeJob(env, on_progress), model_(std::move(model)), tokens_(std::move(tokens)), n_seqs_(n_seqs), seq_len_(seq_len), batch_(batch),
        streamed_(streamed), device_(std::move(device)), capture_opts_(capture), ridge_(ridge), cancel_(std::move(cancel)) {}

 private:
  void run(const ReportProgress& report) override {
    MeasureRequest request;
    request.windows = {tokens_.data(), n_seqs_, seq_len_, batch_};
    request.capture = capture_opts_;
    request.ridge = ridge_;
    request.streamed = streamed_;
    request.device = device_;
    MeasureResult r = measure_model(*model_, request, cancel_.get(), report);
    result_ = std::move(r.analysis);
    run_ = std::move(r.run);
    calibrate_seconds_ = r.calibrate_seconds;
    estimators_seconds_ = r.estimators_seconds;
  }
  Napi::Value resolve(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("tokens", static_cast<double>(result_.tokens));
    o.Set("jointDim", result_.joint_dim);
    o.Set("projected", result_.projected);
    o.Set("products", result_.float32_products ? "float32" : "float64");
    o.Set("ridge", result_.ridge);
    o.Set("device", run_.device);
    o.Set("peakDeviceBytes", static_cast<double>(run_.peak_device_bytes));
    o.Set("calibrateSeconds", calibrate_seconds_);
    o.Set("estimatorsSeconds", estimators_seconds_);
    o.Set("forwardSeconds", run_.forward_seconds);  // block-major only: pass 1 (plain forward) and pass 2 (with the capture)
    o.Set("captureSeconds", run_.capture_seconds);
    Napi::Array blocks = Napi::Array::New(env, result_.blocks.size());
    for (size_t i = 0; i < result_.blocks.size(); ++i) {
      const BlockAnalysis& b = result_.blocks[i];
      Napi::Object x = Napi::Object::New(env);
      x.Set("hasAttn", b.has_attn);
      x.Set("hasMlp", b.has_mlp);
      x.Set("te", b.te);
      x.Set("teAttn", b.te_attn);
      x.Set("teMlp", b.te_mlp);
      x.Set("teStream", b.te_stream);
      x.Set("teStreamAttn", b.te_stream_attn);
      x.Set("teStreamMlp", b.te_stream_mlp);
      x.Set("headContribution", float64_array(env, b.head_contribution));
      x.Set("channelContribution", float64_array(env, b.channel_contribution));
      x.Set("cosine", b.cosine);
      x.Set("maxRidgeEffect", b.max_ridge_effect);
      x.Set("ridge", b.ridge);
      x.Set("headEntropy", float64_array(env, b.head_entropy));
      x.Set("headEnergy", float64_array(env, b.head_energy));
      x.Set("channelEntropy", float64_array(env, b.channel_entropy));
      x.Set("channelEnergy", float64_array(env, b.channel_energy));
      x.Set("headMean", float64_array(env, b.head_mean));
      x.Set("channelMean", float64_array(env, b.channel_mean));
      x.Set("attnOutMean", float64_array(env, b.attn_out_mean));
      x.Set("mlpOutMean", float64_array(env, b.mlp_out_mean));
      blocks.Set(static_cast<uint32_t>(i), x);
    }
    o.Set("blocks", blocks);
    return o;
  }
  std::shared_ptr<const Model> model_;
  std::vector<int32_t> tokens_;
  int n_seqs_, seq_len_, batch_;
  bool streamed_;
  RunDevices device_;
  CalibrationReport run_;
  double calibrate_seconds_ = 0, estimators_seconds_ = 0;
  CaptureOptions capture_opts_;
  double ridge_;
  std::shared_ptr<std::atomic<bool>> cancel_;
  AnalysisResult result_;
};

}  // namespace

TokenWindows token_windows(Napi::Env env, const Napi::Object& o, const std::string& call, int min_seq_len, int batch) {
  Napi::Int32Array toks = o.Get("tokens").As<Napi::Int32Array>();
  const int n_seqs = o.Get("nSeqs").As<Napi::Number>().Int32Value();
  const int seq_len = o.Get("seqLen").As<Napi::Number>().Int32Value();
  if (n_seqs <= 0 || seq_len < min_seq_len || seq_len <= 0 || batch <= 0 || static_cast<size_t>(n_seqs) * seq_len != toks.ElementLength())
    throw Napi::RangeError::New(env, call + ": tokens.length must equal nSeqs * seqLen " +
                                         (min_seq_len > 1 ? "(nSeqs > 0, seqLen >= " + std::to_string(min_seq_len) + ")" : std::string("(all positive)")));
  return {std::vector<int32_t>(toks.Data(), toks.Data() + toks.ElementLength()), n_seqs, seq_len};
}

RunDevices device_option(Napi::Env env, const Napi::Object& o, const char* fn) {
  RunDevices device;
  if (o.Has("cudaDevices") && o.Get("cudaDevices").IsArray()) {
    Napi::Array a = o.Get("cudaDevices").As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) device.cuda_devices.push_back(a.Get(i).As<Napi::Number>().Int32Value());
  }
  if (o.Has("precision") && !o.Get("precision").IsUndefined()) {
    const auto p = cuda::precision_from_name(o.Get("precision").As<Napi::String>());
    if (!p) throw Napi::RangeError::New(env, std::string(fn) + ": precision must be 'bf16', 'f16' or 'f32'");
    device.precision = *p;
  }
  return device;
}

// analyze({tokens, nSeqs, seqLen, batchSeqs, maxDim, projDim, seed, ridge, products?, stream?, cudaDevices?, precision?}, onProgress?)
//   -> {promise, cancel()}
Napi::Value ModelWrap::Analyze(const Napi::CallbackInfo& info) {
  require_live(info.Env());
  Napi::Env env = info.Env();
  Napi::Object o = info[0].As<Napi::Object>();
  const int batch = o.Get("batchSeqs").As<Napi::Number>().Int32Value();
  TokenWindows in = token_windows(env, o, "analyze", 1, batch);
  CaptureOptions c;
  c.max_dim = o.Get("maxDim").As<Napi::Number>().Int32Value();
  c.proj_dim = o.Get("projDim").As<Napi::Number>().Int32Value();
  c.seed = static_cast<uint64_t>(o.Get("seed").As<Napi::Number>().DoubleValue());
  if (o.Has("products") && !o.Get("products").IsUndefined()) {
    const std::string p = o.Get("products").As<Napi::String>();
    if (p != "auto" && p != "float32" && p != "float64") throw Napi::RangeError::New(env, "analyze: products must be 'auto', 'float32' or 'float64'");
    if (p != "auto") c.products = p == "float64" ? Accumulation::kFloat64 : Accumulation::kBlockedFloat32;
  }
  const double ridge = o.Get("ridge").As<Napi::Number>().DoubleValue();
  const bool streamed = o.Has("stream") && o.Get("stream").ToBoolean().Value();
  const RunDevices device = device_option(env, o, "analyze");
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  const Napi::Function cb = callback_at(info, 1);
  auto* w = new AnalyzeWorker(env, model, std::move(in.tokens), in.n_seqs, in.seq_len, batch, streamed, device, c, ridge, cb, cancel);
  return queue_job(env, w, cancel);
}

Napi::Value LoadModel(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(info.Env(), "loadModel(path: string, {streamLayers?}, onProgress?)");
  LoadOptions options;
  if (info.Length() > 1 && info[1].IsObject()) {
    Napi::Object o = info[1].As<Napi::Object>();
    options.stream_layers = o.Has("streamLayers") && o.Get("streamLayers").ToBoolean().Value();
  }
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  auto* w = new LoadWorker(info.Env(), info[0].As<Napi::String>(), options, callback_at(info, 2), cancel);
  return queue_job(info.Env(), w, cancel);
}

// evaluate({tokens: Int32Array, nSeqs, seqLen, batchSeqs, output: 'nll'|'logits', cudaDevices?, precision?}, onProgress?)
//   (the GPUs run the loss only; logits come from the CPU)
//   -> {promise: Promise<Float32Array>, cancel(): void}
Napi::Value ModelWrap::Evaluate(const Napi::CallbackInfo& info) {
  require_live(info.Env());
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "evaluate(options, onProgress?)");
  Napi::Object o = info[0].As<Napi::Object>();
  const int batch = o.Has("batchSeqs") ? o.Get("batchSeqs").As<Napi::Number>().Int32Value() : 1;
  const bool logits = o.Has("output") && o.Get("output").As<Napi::String>().Utf8Value() == "logits";
  TokenWindows in = token_windows(env, o, "evaluate", 1, batch);
  if (!logits && in.seq_len < 2) throw Napi::RangeError::New(env, "evaluate: NLL needs seqLen >= 2");
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  const Napi::Function cb = callback_at(info, 1);
  auto* w = new EvaluateWorker(env, model, std::move(in.tokens), in.n_seqs, in.seq_len, batch, logits, device_option(env, o, "evaluate"), cb, cancel);
  return queue_job(env, w, cancel);
}

// The measured sensitivities (core/measure/sensitivity.h) on the worker thread.
class RemovalDamageWorker final : public NativeJob {
 public:
  RemovalDamageWorker(Napi::Env env, std::shared_ptr<const Model> model, std::vector<int32_t> tokens, int n_seqs, int seq_len, SublayerMeans means,
                      std::optional<PartialCuts> partial, RunDevices device, const Napi::Function& on_progress, std::shared_ptr<std::atomic<bool>> cancel)
      : NativeJob(env, on_progress), model_(std::move(model)), tokens_(std::move(tokens)), n_seqs_(n_seqs), seq_len_(seq_len), means_(std::move(means)),
        partial_(std::move(partial)), device_(std::move(device)), cancel_(std::move(cancel)) {}

 private:
  void run(const ReportProgress& report) override {
    result_ = measure_removal_damage(*model_, tokens_.data(), n_seqs_, seq_len_, means_, cancel_.get(), report, partial_ ? &*partial_ : nullptr, device_);
  }
  Napi::Value resolve(Napi::Env env) override {
    auto part = [&](const PartDamage& p) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("attn", float64_array(env, p.attn));
      o.Set("mlp", float64_array(env, p.mlp));
      o.Set("block", float64_array(env, p.block));
      return o;
    };
    Napi::Object o = Napi::Object::New(env);
    o.Set("baseNll", result_.base_nll);
    o.Set("nll", part(result_.nll));
    o.Set("kl", part(result_.kl));
    if (partial_) {
      Napi::Object p = Napi::Object::New(env);
      p.Set("nll", part(result_.partial_nll));
      p.Set("kl", part(result_.partial_kl));
      o.Set("partial", p);
    }
    return o;
  }
  std::shared_ptr<const Model> model_;
  std::vector<int32_t> tokens_;
  int n_seqs_, seq_len_;
  SublayerMeans means_;
  std::optional<PartialCuts> partial_;
  RunDevices device_;
  std::shared_ptr<std::atomic<bool>> cancel_;
  RemovalDamage result_;
};

// measureRemovalDamage({tokens: Int32Array, nSeqs, seqLen, attnOutMean?: Float64Array[], mlpOutMean?: Float64Array[],
//                       attnCut?: Int32Array[], attnCutMeans?: Float64Array[], mlpCut?: Int32Array[], mlpCutMeans?: Float64Array[],
//                       cudaDevices?: number[], precision?},
//                      onProgress?)
//   (without the means: removed parts contribute nothing; the cuts: per block, the query heads / channels of a
//   partial cut and their means, head_dim or 1 per unit, measured beside the whole removals)
//   -> {promise: Promise<{baseNll, nll: {attn, mlp, block}, kl: {attn, mlp, block}, partial?: {nll, kl}}>, cancel()}
Napi::Value ModelWrap::MeasureRemovalDamage(const Napi::CallbackInfo& info) {
  require_live(info.Env());
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "measureRemovalDamage(options, onProgress?)");
  Napi::Object o = info[0].As<Napi::Object>();
  TokenWindows in = token_windows(env, o, "measureRemovalDamage", 2);
  SublayerMeans means;
  const int L = model->config.n_layers(), d = model->config.dim;
  auto read_means = [&](const char* key, std::vector<std::vector<float>>& out) {
    if (!o.Has(key) || o.Get(key).IsUndefined()) return;
    Napi::Array a = o.Get(key).As<Napi::Array>();
    if (static_cast<int>(a.Length()) != L) throw Napi::RangeError::New(env, std::string("measureRemovalDamage: ") + key + " needs one array per block");
    for (int l = 0; l < L; ++l) {
      Napi::Float64Array m = a.Get(static_cast<uint32_t>(l)).As<Napi::Float64Array>();
      std::vector<float> v(d, 0.0f);
      if (m.ElementLength() == static_cast<size_t>(d)) std::copy(m.Data(), m.Data() + d, v.begin());
      else if (m.ElementLength() != 0) throw Napi::RangeError::New(env, std::string("measureRemovalDamage: ") + key + " of block " + std::to_string(l) + " is not dim long");
      out.push_back(std::move(v));
    }
  };
  read_means("attnOutMean", means.attn_out);
  read_means("mlpOutMean", means.mlp_out);
  if (means.attn_out.size() != means.mlp_out.size()) throw Napi::TypeError::New(env, "measureRemovalDamage: pass both attnOutMean and mlpOutMean, or neither");
  std::optional<PartialCuts> partial;
  auto read_cuts = [&](const char* key, const char* means_key, std::vector<PartialCut>& out) {
    Napi::Array units = o.Get(key).As<Napi::Array>();
    const bool with_means = o.Has(means_key) && !o.Get(means_key).IsUndefined();
    Napi::Array m = with_means ? o.Get(means_key).As<Napi::Array>() : Napi::Array::New(env);
    if (static_cast<int>(units.Length()) != L || (with_means && static_cast<int>(m.Length()) != L))
      throw Napi::RangeError::New(env, std::string("measureRemovalDamage: ") + key + " needs one entry per block");
    for (int l = 0; l < L; ++l) {
      PartialCut cut;
      Napi::Int32Array u = units.Get(static_cast<uint32_t>(l)).As<Napi::Int32Array>();
      cut.units.assign(u.Data(), u.Data() + u.ElementLength());
      if (with_means) {
        Napi::Float64Array v = m.Get(static_cast<uint32_t>(l)).As<Napi::Float64Array>();
        cut.means.assign(v.Data(), v.Data() + v.ElementLength());
      }
      out.push_back(std::move(cut));
    }
  };
  if (o.Has("attnCut") || o.Has("mlpCut")) {
    if (!o.Has("attnCut") || !o.Has("mlpCut")) throw Napi::TypeError::New(env, "measureRemovalDamage: pass both attnCut and mlpCut, or neither");
    partial.emplace();
    read_cuts("attnCut", "attnCutMeans", partial->attn);
    read_cuts("mlpCut", "mlpCutMeans", partial->mlp);
  }
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  auto* w = new RemovalDamageWorker(env, model, std::move(in.tokens), in.n_seqs, in.seq_len, std::move(means), std::move(partial),
                                    device_option(env, o, "measureRemovalDamage"), callback_at(info, 1), cancel);
  return queue_job(env, w, cancel);
}

class RefitDamageWorker final : public NativeJob {
 public:
  RefitDamageWorker(Napi::Env env, std::shared_ptr<const Model> model, std::vector<int32_t> tokens, TokenBatches batches, std::vector<RemovalOrders> orders,
                    uint64_t memory_budget, RunDevices device, const Napi::Function& on_progress, std::shared_ptr<std::atomic<bool>> cancel)
      : NativeJob(env, on_progress), model_(std::move(model)), tokens_(std::move(tokens)), batches_(batches), orders_(std::move(orders)),
        memory_budget_(memory_budget), device_(std::move(device)), cancel_(std::move(cancel)) {}

 private:
  void run(const ReportProgress& report) override {
    batches_.tokens = tokens_.data();
    result_ = measure_refit_damage(*model_, orders_, batches_, memory_budget_, cancel_.get(), report, &passes_, layer_input_runner(*model_, device_, batches_.seq_len));
  }
  Napi::Value resolve(Napi::Env env) override {
    auto per_block = [&](const std::vector<std::vector<double>>& v) {
      Napi::Array a = Napi::Array::New(env, v.size());
      for (size_t l = 0; l < v.size(); ++l) a.Set(static_cast<uint32_t>(l), float64_array(env, v[l]));
      return a;
    };
    Napi::Array sets = Napi::Array::New(env, result_.size());
    for (size_t k = 0; k < result_.size(); ++k) {
      Napi::Object s = Napi::Object::New(env);
      s.Set("attn", per_block(result_[k].attn));
      s.Set("mlp", per_block(result_[k].mlp));
      sets.Set(static_cast<uint32_t>(k), s);
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("steps", sets);
    o.Set("passes", passes_);
    return o;
  }
  std::shared_ptr<const Model> model_;
  std::vector<int32_t> tokens_;
  TokenBatches batches_;
  std::vector<RemovalOrders> orders_;
  uint64_t memory_budget_;
  RunDevices device_;
  std::shared_ptr<std::atomic<bool>> cancel_;
  std::vector<ep::RefitDamage> result_;
  int passes_ = 0;
};

// refitDamage({tokens: Int32Array, nSeqs, seqLen, batchSeqs, memoryBudget, orders: [{attn: Int32Array[], mlp: Int32Array[]}, ...]}, onProgress?)
//   (per set — one per unit ranking — and block, the KV groups / channels in removal order; empty: skipped;
//   core/measure/refit_damage.h)
//   -> {promise: Promise<{steps: [{attn: Float64Array[], mlp: Float64Array[]}, ...], passes}>, cancel()}: each unit's step by unit index
Napi::Value ModelWrap::RefitDamage(const Napi::CallbackInfo& info) {
  require_live(info.Env());
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "refitDamage(options, onProgress?)");
  Napi::Object o = info[0].As<Napi::Object>();
  const int batch = o.Get("batchSeqs").As<Napi::Number>().Int32Value();
  TokenWindows in = token_windows(env, o, "refitDamage", 1, batch);
  const double budget = o.Get("memoryBudget").As<Napi::Number>().DoubleValue();
  if (!(budget >= 1)) throw Napi::RangeError::New(env, "refitDamage: memoryBudget must be at least 1 byte");
  const int L = model->config.n_layers();
  if (!o.Get("orders").IsArray()) throw Napi::TypeError::New(env, "refitDamage: orders must be an array of {attn, mlp}");
  Napi::Array sets = o.Get("orders").As<Napi::Array>();
  std::vector<RemovalOrders> orders(sets.Length());
  auto read_orders = [&](const Napi::Object& set, const char* key, std::vector<std::vector<int>>& out) {
    if (!set.Get(key).IsArray()) throw Napi::TypeError::New(env, std::string("refitDamage: orders[].") + key + " must be an array of Int32Array");
    Napi::Array a = set.Get(key).As<Napi::Array>();
    if (static_cast<int>(a.Length()) != L) throw Napi::RangeError::New(env, std::string("refitDamage: orders[].") + key + " needs one order per block");
    for (int l = 0; l < L; ++l) {
      Napi::Int32Array u = a.Get(static_cast<uint32_t>(l)).As<Napi::Int32Array>();
      out.emplace_back(u.Data(), u.Data() + u.ElementLength());
    }
  };
  for (uint32_t k = 0; k < sets.Length(); ++k) {
    if (!sets.Get(k).IsObject()) throw Napi::TypeError::New(env, "refitDamage: orders must be an array of {attn, mlp}");
    read_orders(sets.Get(k).As<Napi::Object>(), "attn", orders[k].attn_groups);
    read_orders(sets.Get(k).As<Napi::Object>(), "mlp", orders[k].mlp_channels);
  }
  TokenBatches batches{nullptr, in.n_seqs, in.seq_len, batch};
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  auto* w = new RefitDamageWorker(env, model, std::move(in.tokens), batches, std::move(orders), static_cast<uint64_t>(budget), device_option(env, o, "refitDamage"),
                                  callback_at(info, 1), cancel);
  return queue_job(env, w, cancel);
}

}  // namespace ep::addon
