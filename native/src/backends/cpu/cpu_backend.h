// The CPU backend: float32 activations and KV cache, weights packed as f32/f16/bf16 panels, OpenMP
// workers over rows, panels and heads. It is the reference every other backend is checked against.
#pragma once
#include <memory>

#include "engine/backend.h"

namespace pagoda::cpu {

std::unique_ptr<Backend> create_cpu_backend(const ModelConfig& cfg, const WeightStore& weights,
                                            const EngineOptions& opt);

}  // namespace pagoda::cpu
