// The JS side of every long native call: an object {promise, cancel()}. cancel() sets the flag the core
// checks between layers; the worker then rejects the promise with EP_CANCELLED.
#pragma once
#include <napi.h>

#include <atomic>
#include <memory>

namespace ep::addon {

// Queues `worker` (any AsyncWorker with a promise()) and returns the job object for it.
template <typename Worker>
Napi::Object queue_job(Napi::Env env, Worker* worker, const std::shared_ptr<std::atomic<bool>>& cancel) {
  Napi::Object job = Napi::Object::New(env);
  job.Set("promise", worker->promise());
  job.Set("cancel", Napi::Function::New(env, [cancel](const Napi::CallbackInfo&) { cancel->store(true); }));
  worker->Queue();
  return job;
}

}  // namespace ep::addon
