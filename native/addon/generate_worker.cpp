// NativeModel.generate(): prompt prefill then greedy decoding through the KV cache, timed separately —
// the engine side of `entroprune bench` (prefill and decode tokens/s) and a plain greedy generator.
#include <algorithm>
#include <atomic>
#include <chrono>

#include "addon/js_errors.h"
#include "addon/native_job.h"
#include "addon/model_wrap.h"
#include "core/evaluate/decode.h"

namespace ep::addon {

namespace {

class GenerateWorker final : public NativeJob {
 public:
  GenerateWorker(Napi::Env env, std::shared_ptr<const Model> model, std::vector<int32_t> prompt, int generate,
                 std::shared_ptr<std::atomic<bool>> cancel)
      : NativeJob(env, Napi::Function()), model_(std::move(model)), prompt_(std::move(prompt)), generate_(generate), cancel_(std::move(cancel)) {}

 private:
  void run(const ReportProgress&) override {
    using clock = std::chrono::steady_clock;
    DecodeSession s(*model_, static_cast<int>(prompt_.size()) + generate_);
    std::vector<float> logits(model_->config.vocab);
    const auto t0 = clock::now();
    s.step(prompt_.data(), static_cast<int>(prompt_.size()), logits.data(), cancel_.get());
    const auto t1 = clock::now();
    for (int i = 0; i < generate_; ++i) {
      const int32_t next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      out_.push_back(next);
      if (i + 1 < generate_) s.step(&next, 1, logits.data(), cancel_.get());
    }
    const auto t2 = clock::now();
    prefill_s_ = std::chrono::duration<double>(t1 - t0).count();
    decode_s_ = std::chrono::duration<double>(t2 - t1).count();
    cache_bytes_ = s.cache_bytes();
  }
  Napi::Value resolve(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    Napi::Int32Array toks = Napi::Int32Array::New(env, out_.size());
    std::copy(out_.begin(), out_.end(), toks.Data());
    o.Set("tokens", toks);
    o.Set("prefillSeconds", prefill_s_);
    // generate_ tokens come out, but only generate_ − 1 decode steps ran (the first token is the prefill's)
    o.Set("decodeSeconds", decode_s_);
    o.Set("decodeSteps", std::max(0, generate_ - 1));
    o.Set("cacheBytes", static_cast<double>(cache_bytes_));
    return o;
  }
  std::shared_ptr<const Model> model_;
  std::vector<int32_t> prompt_;
  int generate_;
  std::shared_ptr<std::atomic<bool>> cancel_;
  std::vector<int32_t> out_;
  double prefill_s_ = 0, decode_s_ = 0;
  int64_t cache_bytes_ = 0;
};

}  // namespace

// generate({prompt: Int32Array, tokens: n}) -> {promise: Promise<{tokens, prefillSeconds, decodeSeconds, decodeSteps, cacheBytes}>, cancel()}
Napi::Value ModelWrap::Generate(const Napi::CallbackInfo& info) {
  require_live(info.Env());
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "generate({prompt, tokens})");
  Napi::Object o = info[0].As<Napi::Object>();
  Napi::Int32Array p = o.Get("prompt").As<Napi::Int32Array>();
  const int n = o.Get("tokens").IsNumber() ? o.Get("tokens").As<Napi::Number>().Int32Value() : 0;
  if (p.ElementLength() == 0 || n < 1) throw Napi::RangeError::New(env, "generate: a non-empty prompt and tokens >= 1");
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  auto* w = new GenerateWorker(env, model, std::vector<int32_t>(p.Data(), p.Data() + p.ElementLength()), n, cancel);
  return queue_job(env, w, cancel);
}

}  // namespace ep::addon
