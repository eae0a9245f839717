#include "addon/tokenizer_wrap.h"

#include "addon/js_errors.h"

namespace ep::addon {

Napi::FunctionReference* TokenizerWrap::constructor = nullptr;

Napi::Function TokenizerWrap::Init(Napi::Env env) {
  Napi::Function f = DefineClass(env, "NativeSpmTokenizer",
                                 {InstanceMethod("encode", &TokenizerWrap::Encode), InstanceMethod("decode", &TokenizerWrap::Decode),
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
    vocab = *info[0].As<Napi::External<std::shared_ptr<const SpmVocab>>>().Data();
  } else {
    throw Napi::TypeError::New(env, "NativeSpmTokenizer(path: string)");
  }
}

Napi::Value TokenizerWrap::Encode(const Napi::CallbackInfo& info) {
  const std::string text = info[0].As<Napi::String>();
  const bool bos = info.Length() > 1 && info[1].ToBoolean();
  std::vector<int32_t> ids = vocab->encode(text, bos);
  Napi::Int32Array out = Napi::Int32Array::New(info.Env(), ids.size());
  std::copy(ids.begin(), ids.end(), out.Data());
  return out;
}

Napi::Value TokenizerWrap::Decode(const Napi::CallbackInfo& info) {
  Napi::Int32Array a = info[0].As<Napi::Int32Array>();
  std::vector<int32_t> ids(a.Data(), a.Data() + a.ElementLength());
  return Napi::String::New(info.Env(), vocab->decode(ids));
}

Napi::Value TokenizerWrap::Size(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), vocab->size()); }
Napi::Value TokenizerWrap::Bos(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), vocab->bos()); }
Napi::Value TokenizerWrap::Eos(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), vocab->eos()); }

}  // namespace ep::addon
