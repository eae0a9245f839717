// NativeModel.score(): log-likelihood of target spans (zero-shot evaluation), off the main thread.
#include <atomic>

#include "addon/js_errors.h"
#include "addon/native_job.h"
#include "addon/model_wrap.h"
#include "core/evaluate/evaluate.h"
#include "core/evaluate/score.h"

namespace ep::addon {

namespace {

class ScoreWorker final : public NativeJob {
 public:
  ScoreWorker(Napi::Env env, std::shared_ptr<const Model> model, std::vector<int32_t> tokens, std::vector<ScoreSpan> spans,
              int64_t batch_tokens, RunDevices device, const Napi::Function& on_progress, std::shared_ptr<std::atomic<bool>> cancel)
      : NativeJob(env, on_progress), model_(std::move(model)), tokens_(std::move(tokens)), spans_(std::move(spans)),
        batch_tokens_(batch_tokens), device_(std::move(device)), cancel_(std::move(cancel)) {}

 private:
  void run(const ReportProgress& report) override {
    ScoreOptions o;
    o.batch_tokens = batch_tokens_;
    o.cancel = cancel_.get();
    o.on_progress = report;
    out_ = score_spans_on(*model_, tokens_.data(), spans_, o, device_);
  }
  Napi::Value resolve(Napi::Env env) override {
    Napi::Float64Array logprob = Napi::Float64Array::New(env, out_.size());
    Napi::Uint8Array greedy = Napi::Uint8Array::New(env, out_.size());
    for (size_t i = 0; i < out_.size(); ++i) {
      logprob[i] = out_[i].logprob;
      greedy[i] = out_[i].greedy ? 1 : 0;
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("logprob", logprob);
    o.Set("greedy", greedy);
    return o;
  }
  std::shared_ptr<const Model> model_;
  std::vector<int32_t> tokens_;
  std::vector<ScoreSpan> spans_;
  int64_t batch_tokens_;
  RunDevices device_;
  std::shared_ptr<std::atomic<bool>> cancel_;
  std::vector<SpanScore> out_;
};

}  // namespace

// score({tokens: Int32Array, lengths: Int32Array, targets: Int32Array, batchTokens?, cudaDevices?, precision?}, onProgress?)
//   Sequence i occupies the next lengths[i] tokens; tokens [targets[i], lengths[i]) of it are scored.
//   -> {promise: Promise<{logprob: Float64Array, greedy: Uint8Array}>, cancel(): void}
Napi::Value ModelWrap::Score(const Napi::CallbackInfo& info) {
  require_live(info.Env());
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "score(options, onProgress?)");
  Napi::Object o = info[0].As<Napi::Object>();
  Napi::Int32Array toks = o.Get("tokens").As<Napi::Int32Array>();
  Napi::Int32Array lengths = o.Get("lengths").As<Napi::Int32Array>();
  Napi::Int32Array targets = o.Get("targets").As<Napi::Int32Array>();
  const int64_t batch_tokens = o.Get("batchTokens").IsNumber() ? o.Get("batchTokens").As<Napi::Number>().Int64Value() : 8192;
  if (lengths.ElementLength() != targets.ElementLength()) throw Napi::RangeError::New(env, "score: lengths and targets differ in length");
  std::vector<ScoreSpan> spans(lengths.ElementLength());
  int64_t begin = 0;
  for (size_t i = 0; i < spans.size(); ++i) {
    spans[i] = {begin, lengths[i], targets[i]};
    begin += lengths[i];
  }
  if (begin != static_cast<int64_t>(toks.ElementLength())) throw Napi::RangeError::New(env, "score: tokens.length must equal the sum of lengths");
  std::vector<int32_t> tokens(toks.Data(), toks.Data() + toks.ElementLength());
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  const Napi::Function cb = callback_at(info, 1);
  auto* w = new ScoreWorker(env, model, std::move(tokens), std::move(spans), batch_tokens, device_option(env, o, "score"), cb, cancel);
  return queue_job(env, w, cancel);
}

}  // namespace ep::addon
