// Megatron-style sharding of one model across the N GPUs of a tensor-parallel group: which attention
// heads, KV heads and MLP columns rank r holds (the matrices themselves are sliced as they are read,
// WeightStore::read_bf16). Pure C++ (no CUDA), so the rules are the same wherever they are checked.
//
//   column-parallel (output features split):  q/k/v, gate/up      W[n, k] → rows of W
//   row-parallel (input features split):      o, down             W[n, k] → columns of W, then all-reduce
//   replicated:                               norms, embedding
//   LM head:                                  vocabulary-parallel (rows of W, each rank writing its
//                                             columns of rank 0's logits) when the GPUs reach each
//                                             other's memory, else whole on rank 0
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/errors.h"
#include "engine/model_config.h"

namespace pagoda::cuda {

struct Shard {
  int rank = 0, world = 1;
  int heads = 0, head0 = 0;        // query heads [head0, head0 + heads)
  int kv_heads = 0, kv_head0 = 0;  // KV heads [kv_head0, kv_head0 + kv_heads); replicated when world > KV heads
  int inter = 0, inter0 = 0;       // MLP intermediate columns [inter0, inter0 + inter)
  int vocab = 0, vocab0 = 0;       // LM head rows (logit columns) [vocab0, vocab0 + vocab); 0: none
};

// Throws EngineError with the fix when the model cannot be split N ways on `visible_gpus` GPUs.
inline void validate_tensor_parallel(const ModelConfig& cfg, int world, int visible_gpus) {
  const std::string n = std::to_string(world);
  if (world != 1 && world != 2 && world != 4 && world != 8)
    throw EngineError("--tensor-parallel-size must be 1, 2, 4 or 8, got " + n);
  if (world > visible_gpus)
    throw EngineError("--tensor-parallel-size " + n + " needs " + n + " GPUs but " + std::to_string(visible_gpus) +
                      " are visible (check the pod's GPU limit and CUDA_VISIBLE_DEVICES)");
  if (cfg.num_heads % world != 0)
    throw EngineError("--tensor-parallel-size " + n + " must divide the model's " + std::to_string(cfg.num_heads) +
                      " attention heads");
  if (cfg.num_kv_heads % world != 0 && world % cfg.num_kv_heads != 0)
    throw EngineError("--tensor-parallel-size " + n + " must divide the model's " + std::to_string(cfg.num_kv_heads) +
                      " KV heads, or be a multiple of them");
  if (cfg.intermediate_size % world != 0)
    throw EngineError("--tensor-parallel-size " + n + " must divide the MLP size " + std::to_string(cfg.intermediate_size));
}

// `vocab_parallel`: every rank computes a slice of the logits (else rank 0 computes them all).
inline Shard shard_for(const ModelConfig& cfg, int world, int rank, bool vocab_parallel) {
  Shard s;
  s.rank = rank;
  s.world = world;
  s.heads = cfg.num_heads / world;
  s.head0 = rank * s.heads;
  if (world <= cfg.num_kv_heads) {
    s.kv_heads = cfg.num_kv_heads / world;
    s.kv_head0 = rank * s.kv_heads;
  } else {
    // More ranks than KV heads: each rank keeps the one KV head its query heads read.
    s.kv_heads = 1;
    s.kv_head0 = s.head0 / (cfg.num_heads / cfg.num_kv_heads);
  }
  s.inter = cfg.intermediate_size / world;
  s.inter0 = rank * s.inter;
  if (vocab_parallel && world > 1) {
    const int per = (cfg.vocab_size + world - 1) / world;
    s.vocab0 = std::min(cfg.vocab_size, rank * per);
    s.vocab = std::min(cfg.vocab_size, s.vocab0 + per) - s.vocab0;
  } else if (rank == 0) {
    s.vocab = cfg.vocab_size;
  }
  return s;
}

// The shape one rank computes: the full model's with its share of heads and MLP columns.
inline ModelConfig local_config(const ModelConfig& cfg, const Shard& s) {
  ModelConfig c = cfg;
  c.num_heads = s.heads;
  c.num_kv_heads = s.kv_heads;
  c.intermediate_size = s.inter;
  return c;
}

// Rows [r0, r0 + count) of a row-major [n, k] array (a column-parallel shard of a bias vector: k = 1).
// Matrices are sliced as they are read: WeightStore::read_bf16.
inline std::vector<float> take_rows(const std::vector<float>& w, int64_t k, int64_t r0, int64_t count) {
  return std::vector<float>(w.begin() + r0 * k, w.begin() + (r0 + count) * k);
}

}  // namespace pagoda::cuda
