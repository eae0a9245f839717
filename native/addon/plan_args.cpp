#include "addon/plan_args.h"

#include "addon/model_wrap.h"

#include <string>

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

}  // namespace

std::vector<PlanBlock> plan_blocks(const Napi::Object& o) {
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
  return plan;
}

std::vector<BlockMeans> block_means(const Napi::Object& o) {
  std::vector<BlockMeans> means;
  if (o.Has("means") && o.Get("means").IsArray()) {
    Napi::Array ms = o.Get("means").As<Napi::Array>();
    for (uint32_t i = 0; i < ms.Length(); ++i) {
      Napi::Object m = ms.Get(i).As<Napi::Object>();
      means.push_back({doubles(m, "headMean"), doubles(m, "channelMean"), doubles(m, "attnOutMean"), doubles(m, "mlpOutMean")});
    }
  }
  return means;
}

RefitArgs refit_args(Napi::Env env, const Napi::Object& o) {
  RefitArgs r;
  if (!o.Has("refit") || !o.Get("refit").IsObject()) return r;
  Napi::Object f = o.Get("refit").As<Napi::Object>();
  Napi::Int32Array t = f.Get("tokens").As<Napi::Int32Array>();
  r.tokens.assign(t.Data(), t.Data() + t.ElementLength());
  r.batches.n_seqs = f.Get("nSeqs").As<Napi::Number>().Int32Value();
  r.batches.seq_len = f.Get("seqLen").As<Napi::Number>().Int32Value();
  r.batches.batch_seqs = f.Get("batchSeqs").IsNumber() ? f.Get("batchSeqs").As<Napi::Number>().Int32Value() : 4;
  if (f.Get("damping").IsNumber()) r.options.damping = f.Get("damping").As<Napi::Number>().DoubleValue();
  if (f.Get("memoryBudget").IsNumber()) r.options.memory_budget = static_cast<uint64_t>(f.Get("memoryBudget").As<Napi::Number>().DoubleValue());
  r.options.device = device_option(env, f, "refit");
  if (f.Has("cache") && !f.Get("cache").IsUndefined()) {
    if (!f.Get("cache").IsExternal()) throw Napi::TypeError::New(env, "refit.cache must come from createRefitMomentCache()");
    r.options.cache = *f.Get("cache").As<Napi::External<std::shared_ptr<RefitMomentCache>>>().Data();
  }
  if (static_cast<int64_t>(r.tokens.size()) != static_cast<int64_t>(r.batches.n_seqs) * r.batches.seq_len || r.tokens.empty())
    throw Napi::TypeError::New(env, "refit.tokens must hold nSeqs × seqLen tokens");
  return r;
}

Napi::Object refit_report_object(Napi::Env env, const RefitReport& report) {
  Napi::Object f = Napi::Object::New(env);
  f.Set("layers", report.layers_refitted);
  f.Set("passes", report.passes);
  f.Set("cached", report.cached);
  f.Set("moreDamping", report.undamped_failures);
  f.Set("fallbacks", report.fallbacks);
  return f;
}

Napi::Value CreateRefitMomentCache(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber() || info[0].As<Napi::Number>().DoubleValue() < 0)
    throw Napi::TypeError::New(env, "createRefitMomentCache(budgetBytes >= 0)");
  // The handle owns a shared_ptr: a worker that took the cache keeps it alive past the handle's collection.
  auto* held = new std::shared_ptr<RefitMomentCache>(std::make_shared<RefitMomentCache>(static_cast<uint64_t>(info[0].As<Napi::Number>().DoubleValue())));
  return Napi::External<std::shared_ptr<RefitMomentCache>>::New(env, held, [](Napi::Env, std::shared_ptr<RefitMomentCache>* p) { delete p; });
}

}  // namespace ep::addon
