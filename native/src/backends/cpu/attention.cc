#include "backends/cpu/attention.h"

#include <cmath>
#include <cstring>

#include "backends/cpu/simd.h"
#include "backends/cpu/threads.h"
#include "engine/errors.h"

namespace pagoda::cpu {

KvCache::KvCache(int32_t layers, int32_t num_blocks, int32_t block_size, int32_t kv_heads, int32_t head_dim)
    : layers_(layers), num_blocks_(num_blocks), block_size_(block_size), kv_heads_(kv_heads), head_dim_(head_dim) {
  size_t n = static_cast<size_t>(layers) * num_blocks * kv_heads * block_size * head_dim;
  k_.reset(static_cast<float*>(std::calloc(n, sizeof(float))));
  v_.reset(static_cast<float*>(std::calloc(n, sizeof(float))));
  if (!k_ || !v_) throw EngineError("cannot allocate the KV cache (" + std::to_string(2 * n * sizeof(float)) + " bytes)");
}

void KvCache::store(int32_t layer, const float* k_src, const float* v_src, int32_t ld,
                    const std::vector<int32_t>& slots) {
  const int32_t T = static_cast<int32_t>(slots.size());
#pragma omp parallel for schedule(static) num_threads(worker_threads())
  for (int32_t t = 0; t < T; t++) {
    int32_t block = slots[t] / block_size_, off = slots[t] % block_size_;
    for (int32_t h = 0; h < kv_heads_; h++) {
      const size_t row = static_cast<size_t>(head_dim_) * sizeof(float);
      std::memcpy(k(layer, block, h) + static_cast<int64_t>(off) * head_dim_,
                  k_src + static_cast<int64_t>(t) * ld + static_cast<int64_t>(h) * head_dim_, row);
      std::memcpy(v(layer, block, h) + static_cast<int64_t>(off) * head_dim_,
                  v_src + static_cast<int64_t>(t) * ld + static_cast<int64_t>(h) * head_dim_, row);
    }
  }
}

namespace {

inline float dot(const float* a, const float* b, int32_t n) {
  if (n % 16 == 0) {
    F32x16 acc = F32x16::zero();
    for (int32_t i = 0; i < n; i += 16) acc = fma(F32x16::load(a + i), F32x16::load(b + i), acc);
    return reduce_add(acc);
  }
  float s = 0;
  for (int32_t i = 0; i < n; i++) s = std::fma(a[i], b[i], s);
  return s;
}

// out[i] += w * v[i]
inline void axpy(float w, const float* v, float* out, int32_t n) {
  if (n % 16 == 0) {
    F32x16 wb = F32x16::broadcast(w);
    for (int32_t i = 0; i < n; i += 16) fma(wb, F32x16::load(v + i), F32x16::load(out + i)).store(out + i);
    return;
  }
  for (int32_t i = 0; i < n; i++) out[i] = std::fma(w, v[i], out[i]);
}

}  // namespace

void paged_attention(const KvCache& cache, int32_t layer, const StepInput& in, const float* q, int32_t ld_q,
                     int32_t num_heads, int32_t num_kv_heads, int32_t head_dim, float scale, float* out) {
  const int32_t T = in.num_tokens();
  const int32_t group = num_heads / num_kv_heads;
  const int32_t bs = cache.block_size();
  std::vector<int32_t> seq_of(T);
  for (int32_t s = 0; s < in.num_seqs(); s++)
    for (int32_t t = in.query_start[s]; t < in.query_start[s + 1]; t++) seq_of[t] = s;
  const int64_t items = static_cast<int64_t>(T) * num_kv_heads;
#pragma omp parallel num_threads(worker_threads())
  {
    std::vector<float> scores;
#pragma omp for schedule(dynamic, 4)
    for (int64_t item = 0; item < items; item++) {
      const int32_t t = static_cast<int32_t>(item / num_kv_heads), g = static_cast<int32_t>(item % num_kv_heads);
      const int32_t* table = in.block_tables.data() + static_cast<int64_t>(seq_of[t]) * in.max_blocks_per_seq;
      const int32_t ctx = in.positions[t] + 1;
      scores.resize(static_cast<size_t>(group) * ctx);
      const float* qt = q + static_cast<int64_t>(t) * ld_q;
      for (int32_t j = 0; j < ctx; j++) {
        const float* kj = cache.k(layer, table[j / bs], g) + static_cast<int64_t>(j % bs) * head_dim;
        for (int32_t h = 0; h < group; h++)
          scores[static_cast<size_t>(h) * ctx + j] = dot(qt + static_cast<int64_t>(g * group + h) * head_dim, kj, head_dim) * scale;
      }
      for (int32_t h = 0; h < group; h++) {
        float* sc = scores.data() + static_cast<size_t>(h) * ctx;
        float mx = -INFINITY;
        for (int32_t j = 0; j < ctx; j++) mx = std::fmax(mx, sc[j]);
        float sum = 0;
        for (int32_t j = 0; j < ctx; j++) {
          sc[j] = std::exp(sc[j] - mx);
          sum += sc[j];
        }
        float* o = out + static_cast<int64_t>(t) * num_heads * head_dim + static_cast<int64_t>(g * group + h) * head_dim;
        std::memset(o, 0, sizeof(float) * head_dim);
        for (int32_t j = 0; j < ctx; j++)
          axpy(sc[j], cache.v(layer, table[j / bs], g) + static_cast<int64_t>(j % bs) * head_dim, o, head_dim);
        const float inv = 1.0f / sum;
        for (int32_t i = 0; i < head_dim; i++) o[i] *= inv;
      }
    }
  }
}

}  // namespace pagoda::cpu
