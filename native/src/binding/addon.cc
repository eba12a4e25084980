// Module entry: exports { Engine, version }.
#include <napi.h>

#include "binding/engine_wrap.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Engine", pagoda::binding::EngineWrap::Define(env));
  exports.Set("version", Napi::String::New(env, "0.1.0"));
#ifdef PAGODA_WITH_CUDA
  exports.Set("cuda", Napi::Boolean::New(env, true));
#else
  exports.Set("cuda", Napi::Boolean::New(env, false));
#endif
  return exports;
}

}  // namespace

NODE_API_MODULE(pagoda_native, Init)
