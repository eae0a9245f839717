// applyPlan(model, {blocks, means, output, format: gguf|hf|llama2c, dtype, zero, vocabFile, vocab, refit?}, onProgress?)
//   -> {promise: Promise<{layers, tensors, refit?}>, cancel()}:
// slice + compensate + write, off the main thread. The JS side picks the temporary output name.
// refit: {tokens: Int32Array (nSeqs × seqLen), nSeqs, seqLen, batchSeqs, damping, memoryBudget} runs least-squares
// compensation first (core/apply/refit.h); progress then counts its calibration sequences (over all passes) before the tensors.
#include <napi.h>

#include <atomic>

#include "addon/js_errors.h"
#include "addon/native_job.h"
#include "addon/plan_args.h"
#include "addon/tokenizer_wrap.h"
#include "addon/model_wrap.h"
#include "core/apply/apply.h"
#include "core/apply/refit.h"
#include "core/apply/write_pruned.h"
#include "core/format/tokenizer_spm.h"

namespace ep::addon {

namespace {

class ApplyWorker final : public NativeJob {
 public:
  ApplyWorker(Napi::Env env, std::shared_ptr<const Model> model, std::vector<PlanBlock> plan, std::vector<BlockMeans> means, std::string output,
              std::string format, DType dtype, bool zero, std::string vocab_file, std::shared_ptr<const SpmVocab> vocab, uint64_t shard_bytes,
              std::vector<int32_t> refit_tokens, TokenBatches refit_batches, RefitOptions refit_options,
              const Napi::Function& on_progress, std::shared_ptr<std::atomic<bool>> cancel)
      : NativeJob(env, on_progress), cancel_(std::move(cancel)), model_(std::move(model)), plan_(std::move(plan)), means_(std::move(means)),
        output_(std::move(output)), format_(std::move(format)), dtype_(dtype), zero_(zero), vocab_file_(std::move(vocab_file)),
        vocab_(std::move(vocab)), shard_bytes_(shard_bytes), refit_tokens_(std::move(refit_tokens)), refit_batches_(refit_batches),
        refit_options_(refit_options) {}

 private:
  void run(const ReportProgress& report) override {
    WriteRequest request;
    request.output = output_;
    request.format = format_;
    request.dtype = dtype_;
    request.zero_instead_of_slice = zero_;
    request.vocab_file = vocab_file_;
    request.vocab = vocab_.get();
    request.shard_bytes = shard_bytes_;
    std::vector<LayerRefit> refits;
    if (!refit_tokens_.empty()) {
      refit_batches_.tokens = refit_tokens_.data();
      refits = refit_plan(*model_, plan_, refit_batches_, refit_options_, cancel_.get(), report, &refit_report_);
      request.refits = &refits;
      refitted_ = true;
    }
    const WriteResult r = write_pruned_model(*model_, plan_, means_, request, cancel_.get(), report);
    layers_ = r.layers;
    tensors_ = r.tensors;
  }
  Napi::Value resolve(Napi::Env env) override {
    Napi::Object r = Napi::Object::New(env);
    r.Set("layers", layers_);
    r.Set("tensors", tensors_);
    if (refitted_) r.Set("refit", refit_report_object(env, refit_report_));
    return r;
  }
  std::shared_ptr<std::atomic<bool>> cancel_;
  std::shared_ptr<const Model> model_;
  std::vector<PlanBlock> plan_;
  std::vector<BlockMeans> means_;
  std::string output_, format_;
  DType dtype_;
  bool zero_;
  std::string vocab_file_;
  std::shared_ptr<const SpmVocab> vocab_;  // converted from tokenizer.json on the JS side
  uint64_t shard_bytes_;
  std::vector<int32_t> refit_tokens_;  // empty: bias compensation only
  TokenBatches refit_batches_;
  RefitOptions refit_options_;
  RefitReport refit_report_;
  bool refitted_ = false;
  int layers_ = 0, tensors_ = 0;
};

}  // namespace

Napi::Value ApplyPlan(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ModelWrap* mw = Napi::ObjectWrap<ModelWrap>::Unwrap(info[0].As<Napi::Object>());
  mw->require_live(env);
  Napi::Object o = info[1].As<Napi::Object>();
  std::vector<PlanBlock> plan = plan_blocks(o);
  std::vector<BlockMeans> means = block_means(o);
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  std::shared_ptr<const SpmVocab> vocab;
  if (o.Get("vocab").IsObject()) vocab = Napi::ObjectWrap<TokenizerWrap>::Unwrap(o.Get("vocab").As<Napi::Object>())->vocab;
  const std::string dt = o.Get("dtype").IsString() ? o.Get("dtype").As<Napi::String>().Utf8Value() : "f32";
  const DType dtype = dt == "f16" ? DType::F16 : dt == "bf16" ? DType::BF16 : DType::F32;
  RefitArgs refit = refit_args(env, o);
  auto* w = new ApplyWorker(env, mw->model, std::move(plan), std::move(means), o.Get("output").As<Napi::String>(), o.Get("format").As<Napi::String>(),
                            dtype, o.Has("zero") && o.Get("zero").ToBoolean(),
                            o.Has("vocabFile") && o.Get("vocabFile").IsString() ? o.Get("vocabFile").As<Napi::String>().Utf8Value() : "",
                            vocab, o.Get("shardBytes").IsNumber() ? static_cast<uint64_t>(o.Get("shardBytes").As<Napi::Number>().DoubleValue()) : (5ull << 30),
                            std::move(refit.tokens), refit.batches, refit.options, callback_at(info, 2), cancel);
  return queue_job(env, w, cancel);
}

}  // namespace ep::addon
