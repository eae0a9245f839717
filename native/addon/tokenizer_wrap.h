// JS class NativeSpmTokenizer: llama2.c tok*.bin and GGUF-embedded SentencePiece vocabularies.
#pragma once
#include <napi.h>

#include <memory>

#include "core/format/tokenizer_spm.h"

namespace ep::addon {

class TokenizerWrap : public Napi::ObjectWrap<TokenizerWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  static Napi::FunctionReference* constructor;
  TokenizerWrap(const Napi::CallbackInfo& info);  // new NativeSpmTokenizer(path) or internal External
  std::shared_ptr<const SpmVocab> vocab;

 private:
  Napi::Value Encode(const Napi::CallbackInfo& info);  // (text, addBos) -> Int32Array
  // (texts: string[], addBos) -> {promise: Promise<{flat: Int32Array, lengths: Int32Array}>, cancel()}: off the
  // main thread, every text's ids back to back
  Napi::Value EncodeAll(const Napi::CallbackInfo& info);
  Napi::Value Decode(const Napi::CallbackInfo& info);  // (Int32Array) -> string
  Napi::Value Size(const Napi::CallbackInfo& info);
  Napi::Value Bos(const Napi::CallbackInfo& info);
  Napi::Value Eos(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);  // drops the vocabulary (running jobs keep theirs)
  void require_live(Napi::Env env) const;
};

}  // namespace ep::addon
