// The shape of every long native call. The core work runs on a libuv worker thread (run), reporting
// progress to the JS callback; the result is built on the main thread (resolve); a core exception rejects
// the promise with its code and file (js_errors.h). Subclasses implement run and resolve only.
//
// Cancellable calls are returned to JS as {promise, cancel()} (queue_job): cancel() sets the flag the core
// checks between layers, tensors or batches; the job then rejects with EP_CANCELLED.
#pragma once
#include <napi.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>

#include "addon/js_errors.h"

namespace ep::addon {

struct JobProgress {
  double done, total;
};
using ReportProgress = std::function<void(int64_t done, int64_t total)>;

class NativeJob : public Napi::AsyncProgressQueueWorker<JobProgress> {
 public:
  // on_progress: called (done, total) on the main thread after run reports; may be empty.
  NativeJob(Napi::Env env, const Napi::Function& on_progress)
      : Napi::AsyncProgressQueueWorker<JobProgress>(env), deferred_(Napi::Promise::Deferred::New(env)) {
    if (!on_progress.IsEmpty() && on_progress.IsFunction()) progress_ = Napi::Persistent(on_progress);
  }
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  virtual void run(const ReportProgress& report) = 0;  // worker thread: the core call; throws on failure
  virtual Napi::Value resolve(Napi::Env env) = 0;       // main thread: the promise's value

 private:
  void Execute(const ExecutionProgress& progress) final {
    try {
      run([&](int64_t done, int64_t total) {
        const JobProgress p{static_cast<double>(done), static_cast<double>(total)};
        progress.Send(&p, 1);
      });
    } catch (const std::exception& e) {
      err_ = error_info(e);
      SetError(err_.message);
    }
  }
  void OnProgress(const JobProgress* p, size_t count) final {
    if (progress_.IsEmpty() || count == 0) return;
    progress_.Call({Napi::Number::New(Env(), p[count - 1].done), Napi::Number::New(Env(), p[count - 1].total)});
  }
  void OnOK() final { deferred_.Resolve(resolve(Env())); }
  void OnError(const Napi::Error&) final { deferred_.Reject(to_js(Env(), err_).Value()); }

  Napi::FunctionReference progress_;
  ErrorInfo err_;
  Napi::Promise::Deferred deferred_;
};

// The optional progress callback at info[index].
inline Napi::Function callback_at(const Napi::CallbackInfo& info, size_t index) {
  return info.Length() > index && info[index].IsFunction() ? info[index].As<Napi::Function>() : Napi::Function();
}

// Queues `job` and returns the JS object {promise, cancel()} for it.
inline Napi::Object queue_job(Napi::Env env, NativeJob* job, const std::shared_ptr<std::atomic<bool>>& cancel) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("promise", job->promise());
  o.Set("cancel", Napi::Function::New(env, [cancel](const Napi::CallbackInfo&) { cancel->store(true); }));
  job->Queue();
  return o;
}

}  // namespace ep::addon
