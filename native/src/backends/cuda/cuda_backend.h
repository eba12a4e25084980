// The CUDA backend: bf16 weights and KV cache in device memory, cuBLAS for the linear layers, Pagoda's
// kernels for everything else, decode steps replayed from CUDA graphs captured per batch-size bucket.
#pragma once
#include <memory>

#include "engine/backend.h"

namespace pagoda::cuda {

std::unique_ptr<Backend> create_cuda_backend(const ModelConfig& cfg, const WeightStore& weights, const EngineOptions& opt);

}  // namespace pagoda::cuda
