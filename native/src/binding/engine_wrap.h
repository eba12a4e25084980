// class Engine (JS): one model on one backend, driven from TypeScript.
//
//   new Engine()                                  [sync]  starts the engine's own worker thread
//   load({config, tensors, options}) → Promise<BackendInfo>
//                                                 [async] maps the files, decodes and packs weights,
//                                                         allocates the KV cache. Rejects with the
//                                                         loader's message (file and problem named).
//   step(batch) → Promise<StepResult>             [async] one forward + sampling; the batch's typed
//                                                         arrays are copied before this returns.
//                                                         Rejects on invalid input; state unchanged.
//   close()                                       [sync]  waits for the running step, stops the thread.
//
// Work runs on the engine's thread (never libuv's pool); results come back to the JS thread through a
// thread-safe function and settle the Promise there.
#pragma once
#include <napi.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "engine/backend.h"
#include "engine/weights.h"

namespace pagoda::binding {

struct Job;

class EngineWrap : public Napi::ObjectWrap<EngineWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit EngineWrap(const Napi::CallbackInfo& info);
  ~EngineWrap() override;

 private:
  Napi::Value Load(const Napi::CallbackInfo& info);
  Napi::Value Step(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  Napi::Promise submit(Napi::Env env, std::unique_ptr<Job> job);
  void run_thread();
  void stop();
  static void deliver(Napi::Env env, Napi::Function, std::nullptr_t*, Job* job);

  using Delivery = Napi::TypedThreadSafeFunction<std::nullptr_t, Job, &EngineWrap::deliver>;
  Delivery tsfn_;
  int pending_ = 0;  // jobs submitted and not yet delivered (JS thread only)
  bool released_ = false;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Job>> queue_;
  bool stopping_ = false;
  std::thread thread_;

  // Owned by the engine thread once loaded.
  std::unique_ptr<WeightStore> weights_;
  std::unique_ptr<Backend> backend_;
  std::vector<int32_t> previous_tokens_;  // what the last successful step sampled, per logit row
};

}  // namespace pagoda::binding
