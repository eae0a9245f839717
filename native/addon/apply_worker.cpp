// applyPlan(model, {blocks, means, output, format: gguf|hf|llama2c, dtype, zero, vocabFile, vocab, refit?}, onProgress?)
//   -> {promise: Promise<{layers, tensors, refit?}>, cancel()}:
// slice + compensate + write, off the main thread. The JS side picks the temporary output name.
// refit: {tokens: Int32Array (nSeqs × seqLen), nSeqs, seqLen, batchSeqs, damping, memoryBudget} runs least-squares
// compensation first (core/apply/refit.h); progress then counts its calibration sequences (over all passes) before the tensors.
#include <napi.h>

#include <atomic>

#include "addon/js_errors.h"
#include "addon/native_job.h"
#include "addon/tokenizer_wrap.h"
#include "addon/model_wrap.h"
#include "core/apply/apply.h"
#include "core/apply/refit.h"
#include "core/apply/write_pruned.h"
#include "core/format/tokenizer_spm.h"

namespace ep::addon {

namespace {

std::vector<int> ints(const Napi::Value& v) {
  std::vector<int> out;
  if (!v.IsArray()) return out;
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) out.push_back(a.Get(i).As<Napi::Number>().Int32Value());
  return out;
}

std::vector<double> doubles(const Napi::Object& o, const char* key) {
  if (!o.Has(key) || !o.Get(key).IsTypedArray()) return {};
  Napi::Float64Array a = o.Get(key).As<Napi::Float64Array>();
  return std::vector<double>(a.Data(), a.Data() + a.ElementLength());
}

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
    if (refitted_) {
      Napi::Object f = Napi::Object::New(env);
      f.Set("layers", refit_report_.layers_refitted);
      f.Set("passes", refit_report_.passes);
      f.Set("moreDamping", refit_report_.undamped_failures);
      f.Set("fallbacks", refit_report_.fallbacks);
      r.Set("refit", f);
    }
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
  std::vector<PlanBlock> plan;
  Napi::Array blocks = o.Get("blocks").As<Napi::Array>();
  for (uint32_t i = 0; i < blocks.Length(); ++i) {
    Napi::Object b = blocks.Get(i).As<Napi::Object>();
    PlanBlock p;
    p.removed = b.Get("removed").ToBoolean();
    p.attn_removed = b.Get("attnRemoved").ToBoolean();
    p.mlp_removed = b.Get("mlpRemoved").ToBoolean();
    p.kept_kv = ints(b.Get("keptKvHeads"));
    p.kept_heads = ints(b.Get("keptHeads"));
    p.kept_channels = ints(b.Get("keptChannels"));
    p.compensate = b.Get("compensate").ToBoolean();
    plan.push_back(std::move(p));
  }
  std::vector<BlockMeans> means;
  if (o.Has("means") && o.Get("means").IsArray()) {
    Napi::Array ms = o.Get("means").As<Napi::Array>();
    for (uint32_t i = 0; i < ms.Length(); ++i) {
      Napi::Object m = ms.Get(i).As<Napi::Object>();
      means.push_back({doubles(m, "headMean"), doubles(m, "channelMean"), doubles(m, "attnOutMean"), doubles(m, "mlpOutMean")});
    }
  }
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  std::shared_ptr<const SpmVocab> vocab;
  if (o.Get("vocab").IsObject()) vocab = Napi::ObjectWrap<TokenizerWrap>::Unwrap(o.Get("vocab").As<Napi::Object>())->vocab;
  const std::string dt = o.Get("dtype").IsString() ? o.Get("dtype").As<Napi::String>().Utf8Value() : "f32";
  const DType dtype = dt == "f16" ? DType::F16 : dt == "bf16" ? DType::BF16 : DType::F32;
  std::vector<int32_t> refit_tokens;
  TokenBatches refit_batches;
  RefitOptions refit_options;
  if (o.Has("refit") && o.Get("refit").IsObject()) {
    Napi::Object f = o.Get("refit").As<Napi::Object>();
    Napi::Int32Array t = f.Get("tokens").As<Napi::Int32Array>();
    refit_tokens.assign(t.Data(), t.Data() + t.ElementLength());
    refit_batches.n_seqs = f.Get("nSeqs").As<Napi::Number>().Int32Value();
    refit_batches.seq_len = f.Get("seqLen").As<Napi::Number>().Int32Value();
    refit_batches.batch_seqs = f.Get("batchSeqs").IsNumber() ? f.Get("batchSeqs").As<Napi::Number>().Int32Value() : 4;
    if (f.Get("damping").IsNumber()) refit_options.damping = f.Get("damping").As<Napi::Number>().DoubleValue();
    if (f.Get("memoryBudget").IsNumber()) refit_options.memory_budget = static_cast<uint64_t>(f.Get("memoryBudget").As<Napi::Number>().DoubleValue());
    if (static_cast<int64_t>(refit_tokens.size()) != static_cast<int64_t>(refit_batches.n_seqs) * refit_batches.seq_len || refit_tokens.empty()) {
      Napi::TypeError::New(env, "refit.tokens must hold nSeqs × seqLen tokens").ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }
  auto* w = new ApplyWorker(env, mw->model, std::move(plan), std::move(means), o.Get("output").As<Napi::String>(), o.Get("format").As<Napi::String>(),
                            dtype, o.Has("zero") && o.Get("zero").ToBoolean(),
                            o.Has("vocabFile") && o.Get("vocabFile").IsString() ? o.Get("vocabFile").As<Napi::String>().Utf8Value() : "",
                            vocab, o.Get("shardBytes").IsNumber() ? static_cast<uint64_t>(o.Get("shardBytes").As<Napi::Number>().DoubleValue()) : (5ull << 30),
                            std::move(refit_tokens), refit_batches, refit_options, callback_at(info, 2), cancel);
  return queue_job(env, w, cancel);
}

}  // namespace ep::addon
