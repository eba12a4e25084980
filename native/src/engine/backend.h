// The seam between the engine and a device: a backend owns the weights and the paged KV cache and runs
// one step (forward + sampling) at a time. CPU and CUDA implement it; the binding sees only this.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "engine/model_config.h"
#include "engine/step.h"
#include "engine/weights.h"

namespace pagoda {

struct EngineOptions {
  std::string device = "cpu";        // "cpu" | "cuda"
  int32_t threads = 0;               // CPU workers; 0 = one per core
  int32_t block_size = 16;           // tokens per KV block
  int32_t num_blocks = 0;            // > 0: exactly this many KV blocks
  int64_t kv_cache_bytes = 0;        // else: blocks that fit in this many bytes (CPU)
  double gpu_memory_utilization = 0.9;  // else (CUDA): this share of device memory in all
  std::string weight_dtype = "auto";  // storage of matrices: auto | f32 | f16 | bf16
  int32_t max_num_batched_tokens = 2048;  // largest step, for workspace sizing
  int32_t max_num_seqs = 256;
  int32_t tensor_parallel_size = 1;
  int32_t max_model_len = 0;         // longest sequence a step may hold (sizes block tables); 0 = unknown
  bool enable_cuda_graphs = true;    // CUDA: replay captured decode steps
};

struct BackendInfo {
  std::string device;        // e.g. "cpu (2 threads, avx512)"
  int32_t num_blocks = 0;
  int32_t block_size = 0;
  int64_t kv_cache_bytes = 0;
  int64_t weight_bytes = 0;
  std::string weight_dtype;
};

class Backend {
 public:
  virtual ~Backend() = default;
  // Runs one step. Throws EngineError for invalid input; the KV cache is untouched in that case.
  virtual void step(const StepInput& in, StepOutput& out) = 0;
  virtual BackendInfo info() const = 0;
};

std::unique_ptr<Backend> create_backend(const ModelConfig& cfg, const WeightStore& weights, const EngineOptions& opt);

}  // namespace pagoda
