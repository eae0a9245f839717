#include "addon/tokenizer_wrap.h"

#include "addon/js_errors.h"
#include "addon/native_job.h"

namespace ep::addon {

Napi::FunctionReference* TokenizerWrap::constructor = nullptr;

Napi::Function TokenizerWrap::Init(Napi::Env env) {
  Napi::Function f = DefineClass(env, "NativeSpmTokenizer",
                                 {InstanceMethod("encode", &TokenizerWrap::Encode), InstanceMethod("encodeAll", &TokenizerWrap::EncodeAll), InstanceMethod("dispose", &TokenizerWrap::Dispose), InstanceMethod("decode", &TokenizerWrap::Decode),
                                  InstanceAccessor("size", &TokenizerWrap::Size, nullptr),
                                  InstanceAccessor("bos", &TokenizerWrap::Bos, nullptr),
                                  InstanceAccessor("eos", &TokenizerWrap::Eos, nullptr)});
  constructor = new Napi::FunctionReference(Napi::Persistent(f));
  return f;
}

TokenizerWrap::TokenizerWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TokenizerWrap>(info) {
  Napi::Env env = info.Env();
  if (info.Length() == 1 && info[0].IsString()) {
    const std::string path = info[0].As<Napi::String>();
    vocab = guarded(env, [&] { return std::make_shared<const SpmVocab>(SpmVocab::from_llama2c_file(path)); });
  } else if (info.Length() == 1 && info[0].IsExternal()) {
    vocab = std::move(*info[0].As<Napi::External<std::shared_ptr<const SpmVocab>>>().Data());  // not kept until GC by the External
  } else if (info.Length() == 1 && info[0].IsObject()) {
    // {pieces: string[] (spaces as "▁"), scores: Float32Array, bos, eos, source}: a vocabulary converted on the JS side.
    Napi::Object o = info[0].As<Napi::Object>();
    Napi::Array arr = o.Get("pieces").As<Napi::Array>();
    Napi::Float32Array sc = o.Get("scores").As<Napi::Float32Array>();
    std::vector<std::string> pieces(arr.Length());
    for (uint32_t i = 0; i < arr.Length(); ++i) pieces[i] = arr.Get(i).As<Napi::String>().Utf8Value();
    std::vector<float> scores(sc.Data(), sc.Data() + sc.ElementLength());
    const int bos = o.Get("bos").As<Napi::Number>().Int32Value(), eos = o.Get("eos").As<Napi::Number>().Int32Value();
    const std::string source = o.Get("source").IsString() ? o.Get("source").As<Napi::String>().Utf8Value() : "vocabulary";
    vocab = guarded(env, [&] { return std::make_shared<const SpmVocab>(SpmVocab::from_pieces(std::move(pieces), std::move(scores), {}, bos, eos, source)); });
  } else {
    throw Napi::TypeError::New(env, "NativeSpmTokenizer(path: string | {pieces, scores, bos, eos, source})");
  }
}

Napi::Value TokenizerWrap::Encode(const Napi::CallbackInfo& info) {
  require_live(info.Env());
  const std::string text = info[0].As<Napi::String>();
  const bool bos = info.Length() > 1 && info[1].ToBoolean();
  std::vector<int32_t> ids = vocab->encode(text, bos);
  Napi::Int32Array out = Napi::Int32Array::New(info.Env(), ids.size());
  std::copy(ids.begin(), ids.end(), out.Data());
  return out;
}

namespace {

// Long texts through a SentencePiece vocabulary on a worker thread (the vocabulary is immutable: encode is
// const), cancellable between texts.
class EncodeAllWorker final : public NativeJob {
 public:
  EncodeAllWorker(Napi::Env env, std::shared_ptr<const SpmVocab> vocab, std::vector<std::string> texts, bool bos, std::shared_ptr<std::atomic<bool>> cancel)
      : NativeJob(env, Napi::Function()), vocab_(std::move(vocab)), texts_(std::move(texts)), bos_(bos), cancel_(std::move(cancel)) {}

 private:
  void run(const ReportProgress&) override {
    for (const std::string& t : texts_) {
      throw_if_cancelled(cancel_.get());
      std::vector<int32_t> ids = vocab_->encode(t, bos_);
      lengths_.push_back(static_cast<int32_t>(ids.size()));
      flat_.insert(flat_.end(), ids.begin(), ids.end());
    }
  }
  Napi::Value resolve(Napi::Env env) override {
    Napi::Int32Array flat = Napi::Int32Array::New(env, flat_.size()), lengths = Napi::Int32Array::New(env, lengths_.size());
    std::copy(flat_.begin(), flat_.end(), flat.Data());
    std::copy(lengths_.begin(), lengths_.end(), lengths.Data());
    Napi::Object o = Napi::Object::New(env);
    o.Set("flat", flat);
    o.Set("lengths", lengths);
    return o;
  }
  std::shared_ptr<const SpmVocab> vocab_;
  std::vector<std::string> texts_;
  bool bos_;
  std::shared_ptr<std::atomic<bool>> cancel_;
  std::vector<int32_t> flat_, lengths_;
};

}  // namespace

Napi::Value TokenizerWrap::EncodeAll(const Napi::CallbackInfo& info) {
  require_live(info.Env());
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray()) throw Napi::TypeError::New(env, "encodeAll(texts: string[], addBos)");
  Napi::Array a = info[0].As<Napi::Array>();
  std::vector<std::string> texts;
  texts.reserve(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) texts.push_back(a.Get(i).As<Napi::String>());
  const bool bos = info.Length() > 1 && info[1].ToBoolean();
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  return queue_job(env, new EncodeAllWorker(env, vocab, std::move(texts), bos, cancel), cancel);
}

Napi::Value TokenizerWrap::Decode(const Napi::CallbackInfo& info) {
  require_live(info.Env());
  Napi::Int32Array a = info[0].As<Napi::Int32Array>();
  std::vector<int32_t> ids(a.Data(), a.Data() + a.ElementLength());
  return Napi::String::New(info.Env(), vocab->decode(ids));
}

void TokenizerWrap::require_live(Napi::Env env) const { require_not_disposed(env, vocab != nullptr, "this tokenizer was disposed"); }

Napi::Value TokenizerWrap::Dispose(const Napi::CallbackInfo& info) {
  vocab.reset();
  return info.Env().Undefined();
}

Napi::Value TokenizerWrap::Size(const Napi::CallbackInfo& info) {
  require_live(info.Env());
  return Napi::Number::New(info.Env(), vocab->size());
}
Napi::Value TokenizerWrap::Bos(const Napi::CallbackInfo& info) {
  require_live(info.Env());
  return Napi::Number::New(info.Env(), vocab->bos());
}
Napi::Value TokenizerWrap::Eos(const Napi::CallbackInfo& info) {
  require_live(info.Env());
  return Napi::Number::New(info.Env(), vocab->eos());
}

}  // namespace ep::addon
