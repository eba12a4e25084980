#include "binding/engine_wrap.h"

#include <exception>

#include "binding/step_io.h"
#include "engine/errors.h"

namespace pagoda::binding {

struct Job {
  std::function<void()> work;                        // engine thread; may throw
  std::function<Napi::Value(Napi::Env)> result;      // JS thread, after work succeeded
  Napi::Promise::Deferred deferred;
  std::string error;                                 // set when work threw
  EngineWrap* owner = nullptr;
  explicit Job(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
};

Napi::Function EngineWrap::Define(Napi::Env env) {
  return DefineClass(env, "Engine",
                     {InstanceMethod<&EngineWrap::Load>("load"), InstanceMethod<&EngineWrap::Step>("step"),
                      InstanceMethod<&EngineWrap::Close>("close")});
}

EngineWrap::EngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineWrap>(info) {
  tsfn_ = Delivery::New(info.Env(), "pagoda-engine", 0, 1, nullptr);
  tsfn_.Unref(info.Env());  // an idle engine does not keep the process alive
  thread_ = std::thread([this] { run_thread(); });
}

// The thread-safe function is released by close(); a finalizer must not release it, since the
// environment's teardown finalizes this object while holding the function's own lock.
EngineWrap::~EngineWrap() { stop(); }

void EngineWrap::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void EngineWrap::run_thread() {
  for (;;) {
    std::unique_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping with nothing left
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    try {
      job->work();
    } catch (const std::exception& e) {
      job->error = e.what();
      if (job->error.empty()) job->error = "engine error";
    } catch (...) {
      job->error = "unknown engine error";
    }
    Job* raw = job.release();
    if (tsfn_.BlockingCall(raw) != napi_ok) delete raw;  // environment is shutting down
  }
}

void EngineWrap::deliver(Napi::Env env, Napi::Function, std::nullptr_t*, Job* job) {
  std::unique_ptr<Job> owned(job);
  if (env == nullptr) return;
  EngineWrap* self = owned->owner;
  if (--self->pending_ == 0) self->tsfn_.Unref(env);
  if (!owned->error.empty()) {
    owned->deferred.Reject(Napi::Error::New(env, owned->error).Value());
    return;
  }
  try {
    owned->deferred.Resolve(owned->result(env));
  } catch (const Napi::Error& e) {
    owned->deferred.Reject(e.Value());
  }
}

Napi::Promise EngineWrap::submit(Napi::Env env, std::unique_ptr<Job> job) {
  Napi::Promise promise = job->deferred.Promise();
  job->owner = this;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      job->deferred.Reject(Napi::Error::New(env, "engine is closed").Value());
      return promise;
    }
    if (pending_++ == 0) tsfn_.Ref(env);
    queue_.push_back(std::move(job));
  }
  cv_.notify_one();
  return promise;
}

Napi::Value EngineWrap::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "load(spec): spec must be an object");
  Napi::Object spec = info[0].As<Napi::Object>();
  if (!spec.Get("config").IsObject()) throw Napi::TypeError::New(env, "load(spec): spec.config must be an object");
  if (!spec.Get("tensors").IsArray()) throw Napi::TypeError::New(env, "load(spec): spec.tensors must be an array");
  Napi::Value opts = spec.Get("options");
  auto cfg = std::make_shared<ModelConfig>(read_model_config(spec.Get("config").As<Napi::Object>()));
  auto tensors = std::make_shared<std::vector<TensorEntry>>(read_tensors(spec.Get("tensors").As<Napi::Array>()));
  auto options = std::make_shared<EngineOptions>(opts.IsObject() ? read_engine_options(opts.As<Napi::Object>()) : EngineOptions{});
  auto info_out = std::make_shared<BackendInfo>();
  auto job = std::make_unique<Job>(env);
  job->work = [this, cfg, tensors, options, info_out] {
    if (backend_) throw EngineError("engine already holds a model: create a new Engine");
    cfg->validate();
    auto store = std::make_unique<WeightStore>(std::move(*tensors));
    auto backend = create_backend(*cfg, *store, *options);
    *info_out = backend->info();
    weights_ = std::move(store);
    backend_ = std::move(backend);
  };
  job->result = [info_out](Napi::Env e) { return write_backend_info(e, *info_out); };
  return submit(env, std::move(job));
}

Napi::Value EngineWrap::Step(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "step(batch): batch must be an object");
  auto in = std::make_shared<StepInput>(read_step(info[0].As<Napi::Object>()));
  auto out = std::make_shared<StepOutput>();
  auto job = std::make_unique<Job>(env);
  job->work = [this, in, out] {
    if (!backend_) throw EngineError("engine has no model loaded: call load() first");
    resolve_previous_tokens(*in, previous_tokens_);
    backend_->step(*in, *out);
    previous_tokens_ = out->tokens;
  };
  job->result = [in, out](Napi::Env e) { return write_step_output(e, std::move(*out), *in); };
  return submit(env, std::move(job));
}

Napi::Value EngineWrap::Close(const Napi::CallbackInfo& info) {
  stop();
  if (!released_) {
    released_ = true;
    tsfn_.Release();
  }
  backend_.reset();
  weights_.reset();
  return info.Env().Undefined();
}

}  // namespace pagoda::binding
