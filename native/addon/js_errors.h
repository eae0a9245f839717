// Turning core errors into JS errors: message as-is, plus `code` (EP_IO, EP_FORMAT, ...) and `file`.
#pragma once
#include <napi.h>

#include <string>

#include "core/error.h"

namespace ep::addon {

struct ErrorInfo {
  std::string message;
  std::string code = "EP_ERROR";
  std::string file;
};

inline ErrorInfo error_info(const std::exception& e) {
  ErrorInfo i{e.what()};
  if (auto* ee = dynamic_cast<const Error*>(&e)) {
    i.code = ee->code_name();
    i.file = ee->file();
  }
  return i;
}

inline Napi::Error to_js(Napi::Env env, const ErrorInfo& i) {
  Napi::Error err = Napi::Error::New(env, i.message);
  err.Set("code", Napi::String::New(env, i.code));
  if (!i.file.empty()) err.Set("file", Napi::String::New(env, i.file));
  return err;
}

// The error every native handle throws once its dispose() has run (EP_INVALID_ARGUMENT).
inline void require_not_disposed(Napi::Env env, bool live, const char* message) {
  if (!live) throw to_js(env, {message, "EP_INVALID_ARGUMENT", ""});
}

// Run `f`, converting core exceptions into thrown JS errors (for synchronous entry points).
template <typename F>
auto guarded(Napi::Env env, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::exception& e) {
    throw to_js(env, error_info(e));
  }
}

}  // namespace ep::addon
