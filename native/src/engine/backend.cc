#include "engine/backend.h"

#include "backends/cpu/cpu_backend.h"
#include "engine/errors.h"

#ifdef PAGODA_WITH_CUDA
#include "backends/cuda/cuda_backend.h"
#endif

namespace pagoda {

std::unique_ptr<Backend> create_backend(const ModelConfig& cfg, const WeightStore& weights, const EngineOptions& opt) {
  if (opt.device == "cpu") return cpu::create_cpu_backend(cfg, weights, opt);
  if (opt.device == "cuda") {
#ifdef PAGODA_WITH_CUDA
    return cuda::create_cuda_backend(cfg, weights, opt);
#else
    throw EngineError("this build has no CUDA backend: rebuild with PAGODA_CUDA=1 npm run build:native");
#endif
  }
  throw EngineError("unknown device '" + opt.device + "' (expected cpu or cuda)");
}

}  // namespace pagoda
