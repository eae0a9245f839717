// measurePlanLoss(model, {blocks, means, refit?, tokens: Int32Array (nSeqs × seqLen), nSeqs, seqLen, leaveOneOut,
//   memoryBudget?, cudaDevices?, precision?}, onProgress?) -> {promise: Promise<{intactNll, plan: {nll, kl}, attnRestored: {nll, kl},
//   mlpRestored: {nll, kl} (Float64Array per block), refit?}>, cancel()}: the loss of the model applyPlan would write, and of it with
// each partly cut layer restored (core/apply/plan_loss.h), off the main thread. With refit, least-squares
// compensation runs first as applyPlan runs it; progress counts its calibration sequences, then the plan-loss
// blocks. cudaDevices: the plan loss on the first of them (block-major), the refit's capture on the CPU.
#include <napi.h>

#include <atomic>

#include "addon/native_job.h"
#include "addon/plan_args.h"
#include "addon/model_wrap.h"
#include "core/apply/refit.h"
#include "core/apply/plan_loss.h"

namespace ep::addon {

namespace {

class PlanLossWorker final : public NativeJob {
 public:
  PlanLossWorker(Napi::Env env, std::shared_ptr<const Model> model, PlanLossRequest request, RefitArgs refit, std::vector<int32_t> tokens, int n_seqs,
                 int seq_len, RunDevices device, const Napi::Function& on_progress, std::shared_ptr<std::atomic<bool>> cancel)
      : NativeJob(env, on_progress), cancel_(std::move(cancel)), model_(std::move(model)), request_(std::move(request)), refit_(std::move(refit)),
        tokens_(std::move(tokens)), n_seqs_(n_seqs), seq_len_(seq_len), device_(std::move(device)) {}

 private:
  void run(const ReportProgress& report) override {
    std::vector<LayerRefit> refits;
    if (!refit_.tokens.empty()) {
      refit_.batches.tokens = refit_.tokens.data();
      refits = refit_plan(*model_, request_.plan, refit_.batches, refit_.options, cancel_.get(), report, &refit_report_);
      request_.refits = &refits;
      refitted_ = true;
    }
    losses_ = measure_plan_losses(*model_, TokenBatches{tokens_.data(), n_seqs_, seq_len_, 1}, request_, cancel_.get(), report, device_);
  }
  Napi::Value resolve(Napi::Env env) override {
    Napi::Object r = Napi::Object::New(env);
    r.Set("intactNll", losses_.intact_nll);
    Napi::Object plan = Napi::Object::New(env);
    plan.Set("nll", losses_.plan.nll);
    plan.Set("kl", losses_.plan.kl);
    r.Set("plan", plan);
    auto per_block = [&](const std::vector<PlanLoss>& v) {
      Napi::Float64Array nll = Napi::Float64Array::New(env, v.size()), kl = Napi::Float64Array::New(env, v.size());
      for (size_t i = 0; i < v.size(); ++i) nll[i] = v[i].nll, kl[i] = v[i].kl;
      Napi::Object o = Napi::Object::New(env);
      o.Set("nll", nll);
      o.Set("kl", kl);
      return o;
    };
    r.Set("attnRestored", per_block(losses_.attn_restored));
    r.Set("mlpRestored", per_block(losses_.mlp_restored));
    if (refitted_) r.Set("refit", refit_report_object(env, refit_report_));
    return r;
  }
  std::shared_ptr<std::atomic<bool>> cancel_;
  std::shared_ptr<const Model> model_;
  PlanLossRequest request_;
  RefitArgs refit_;
  std::vector<int32_t> tokens_;
  int n_seqs_, seq_len_;
  RunDevices device_;
  PlanLosses losses_;
  RefitReport refit_report_;
  bool refitted_ = false;
};

}  // namespace

Napi::Value MeasurePlanLoss(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsObject()) throw Napi::TypeError::New(env, "measurePlanLoss(model, options, onProgress?)");
  ModelWrap* mw = Napi::ObjectWrap<ModelWrap>::Unwrap(info[0].As<Napi::Object>());
  mw->require_live(env);
  Napi::Object o = info[1].As<Napi::Object>();
  PlanLossRequest request;
  request.plan = plan_blocks(o);
  request.means = block_means(o);
  request.leave_one_out = o.Has("leaveOneOut") && o.Get("leaveOneOut").ToBoolean();
  if (o.Get("memoryBudget").IsNumber()) request.memory_budget = static_cast<uint64_t>(o.Get("memoryBudget").As<Napi::Number>().DoubleValue());
  RefitArgs refit = refit_args(env, o);
  TokenWindows in = token_windows(env, o, "measurePlanLoss", 2);
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  auto* w = new PlanLossWorker(env, mw->model, std::move(request), std::move(refit), std::move(in.tokens), in.n_seqs, in.seq_len,
                               device_option(env, o, "measurePlanLoss"), callback_at(info, 2), cancel);
  return queue_job(env, w, cancel);
}

}  // namespace ep::addon
