// Module entry: exports { Engine, version }.
#include <napi.h>

#include "binding/engine_wrap.h"
#include "binding/step_io.h"
#include "engine/weights.h"

#ifdef PAGODA_WITH_CUDA
#include <cuda_runtime.h>
#endif

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

#ifdef PAGODA_WITH_CUDA
// deviceMemory() → {free, total}   [sync] bytes of GPU memory on the current device.
Napi::Value DeviceMemory(const Napi::CallbackInfo& info) {
  size_t free_b = 0, total_b = 0;
  cudaError_t e = cudaMemGetInfo(&free_b, &total_b);
  if (e != cudaSuccess) throw Napi::Error::New(info.Env(), std::string("cudaMemGetInfo: ") + cudaGetErrorString(e));
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("free", static_cast<double>(free_b));
  o.Set("total", static_cast<double>(total_b));
  return o;
}
// gpuCount() → number   [sync] CUDA devices visible to this process (0 when none or no driver).
Napi::Value GpuCount(const Napi::CallbackInfo& info) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) n = 0;
  return Napi::Number::New(info.Env(), n);
}
#endif

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Engine", pagoda::binding::EngineWrap::Define(env));
  exports.Set("version", Napi::String::New(env, "0.1.0"));
  exports.Set("decodeTensor", Napi::Function::New(env, DecodeTensor, "decodeTensor"));
#ifdef PAGODA_WITH_CUDA
  exports.Set("cuda", Napi::Boolean::New(env, true));
  exports.Set("deviceMemory", Napi::Function::New(env, DeviceMemory, "deviceMemory"));
  exports.Set("gpuCount", Napi::Function::New(env, GpuCount, "gpuCount"));
#else
  exports.Set("cuda", Napi::Boolean::New(env, false));
#endif
  return exports;
}


}  // namespace

NODE_API_MODULE(pagoda_native, Init)
