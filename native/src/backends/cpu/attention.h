// Paged KV cache and attention over it on the CPU.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include "engine/step.h"

namespace pagoda::cpu {

// Per layer, K and V each [num_blocks, num_kv_heads, block_size, head_dim] float32 ("HND": one head's
// tokens of a block are contiguous).
class KvCache {
 public:
  KvCache(int32_t layers, int32_t num_blocks, int32_t block_size, int32_t kv_heads, int32_t head_dim);
  int32_t num_blocks() const { return num_blocks_; }
  int32_t block_size() const { return block_size_; }
  static int64_t bytes_per_block(int32_t layers, int32_t block_size, int32_t kv_heads, int32_t head_dim) {
    return 2LL * layers * block_size * kv_heads * head_dim * static_cast<int64_t>(sizeof(float));
  }
  // K (or V) of one head of one block: [block_size, head_dim]
  float* k(int32_t layer, int32_t block, int32_t head) { return at(k_, layer, block, head); }
  float* v(int32_t layer, int32_t block, int32_t head) { return at(v_, layer, block, head); }
  const float* k(int32_t layer, int32_t block, int32_t head) const { return at(k_, layer, block, head); }
  const float* v(int32_t layer, int32_t block, int32_t head) const { return at(v_, layer, block, head); }

  // Writes each token's K/V (rows of `k_src` / `v_src`, [T, kv_heads * head_dim] with stride ld) to
  // its slot (block * block_size + offset).
  void store(int32_t layer, const float* k_src, const float* v_src, int32_t ld, const std::vector<int32_t>& slots);

 private:
  // calloc: the OS hands out zero pages lazily, so an idle cache costs no resident memory.
  struct FreeDeleter {
    void operator()(float* p) const { std::free(p); }
  };
  using Buffer = std::unique_ptr<float[], FreeDeleter>;
  float* at(const Buffer& base, int32_t layer, int32_t block, int32_t head) const {
    return base.get() + ((static_cast<int64_t>(layer) * num_blocks_ + block) * kv_heads_ + head) * block_size_ * head_dim_;
  }
  int32_t layers_, num_blocks_, block_size_, kv_heads_, head_dim_;
  Buffer k_, v_;
};

// Causal attention of every query token over its sequence's cached keys 0..position.
//   q:   [T, num_heads * head_dim] with row stride ld_q
//   out: [T, num_heads * head_dim] dense
// Query heads of one KV head's group read each cached key once. A token's result depends only on its
// own query and its sequence's cache: not on chunking, batch or thread count.
void paged_attention(const KvCache& cache, int32_t layer, const StepInput& in, const float* q, int32_t ld_q,
                     int32_t num_heads, int32_t num_kv_heads, int32_t head_dim, float scale, float* out);

}  // namespace pagoda::cpu
