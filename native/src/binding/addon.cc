// Module entry: exports { Engine, version }.
#include <napi.h>

#include "binding/engine_wrap.h"
#include "binding/step_io.h"
#include "engine/weights.h"

namespace {

// decodeTensor(entry) → Float32Array   [sync] decodes one tensor of a model file exactly as the loader
// does (dequantization, rope permutation). For tests and tools; throws Error naming file and problem.
Napi::Value DecodeTensor(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array one = Napi::Array::New(env, 1);
  one.Set(uint32_t{0}, info[0]);
  std::vector<pagoda::TensorEntry> entries = pagoda::binding::read_tensors(one);
  std::string name = entries[0].name;
  try {
    pagoda::WeightStore store(std::move(entries));
    std::vector<float> data = store.read_f32(name);
    auto out = Napi::Float32Array::New(env, data.size());
    std::copy(data.begin(), data.end(), out.Data());
    return out;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Engine", pagoda::binding::EngineWrap::Define(env));
  exports.Set("version", Napi::String::New(env, "0.1.0"));
  exports.Set("decodeTensor", Napi::Function::New(env, DecodeTensor, "decodeTensor"));
#ifdef PAGODA_WITH_CUDA
  exports.Set("cuda", Napi::Boolean::New(env, true));
#else
  exports.Set("cuda", Napi::Boolean::New(env, false));
#endif
  return exports;
}

}  // namespace

NODE_API_MODULE(pagoda_native, Init)
