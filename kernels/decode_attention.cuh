// Paged decode attention: one new query token per sequence attends to its whole cached context.
//
// GQA-aware: a CTA serves GC query heads that share one KV head, so each cached K/V row is read once
// for all of them. Split-K: long contexts are cut into `splits` ranges processed by separate CTAs; a
// reduction pass merges their (max, sum, output) triples. 16-byte loads, several tokens in flight.
//
// Thread layout (D = head dim): TPT = D / 8 threads share one token (8 dims each, one 16-byte load of K
// and of V); a warp covers 32 / TPT tokens at a time; 4 warps; UNROLL token groups are loaded before
// any arithmetic so enough bytes are in flight to cover memory latency.
#pragma once
#include <algorithm>

#include "common.cuh"
#include "mma.cuh"

namespace pagoda::kernels {

struct DecodeAttentionParams {
  const bf16* q;                // [*, Hq, D] query rows, row stride q_stride elements
  const bf16* k_cache;          // [num_blocks, Hkv, block_size, D]
  const bf16* v_cache;          // [num_blocks, Hkv, block_size, D]
  const int32_t* block_tables;  // [num_seqs, max_blocks]
  const int32_t* context_lens;  // [num_seqs] tokens in the cache, the new one included; 0 = padding entry
  const int32_t* entry_seq;     // [E] sequence of each decode entry (null: entry e is sequence e)
  const int32_t* entry_row;     // [E] token row of q and out for each entry (null: row e)
  bf16* out;                    // [*, Hq, D] row stride out_stride elements
  float* partial_acc;           // [E, Hq, splits, D] (splits > 1)
  float* partial_ml;            // [E, Hq, splits, 2] (splits > 1): running max (log2 domain) and sum
  int E, Hq, Hkv, block_size, max_blocks, splits, q_stride, out_stride;
  float scale;
};

namespace detail {

constexpr int kDecodeWarps = 4;
constexpr int kDecodeTile = 32;    // tokens per pipeline stage
constexpr int kDecodeStages = 4;   // stages in flight

struct alignas(16) Raw16 {
  uint4 v;
};

__device__ __forceinline__ void merge_state(float& m, float& l, float (&acc)[8], float m2, float l2, const float (&acc2)[8]) {
  const float mx = fmaxf(m, m2);
  const float a = (m == -INFINITY) ? 0.0f : exp2f(m - mx);
  const float b = (m2 == -INFINITY) ? 0.0f : exp2f(m2 - mx);
  l = l * a + l2 * b;
#pragma unroll
  for (int i = 0; i < 8; i++) acc[i] = acc[i] * a + acc2[i] * b;
  m = mx;
}

}  // namespace detail

// Grid: (Hq / GC, E, splits). Block: 128. Dynamic shared memory: decode_smem_bytes<D>().
//
// K/V tiles of kDecodeTile tokens stream through a kDecodeStages-deep cp.async pipeline in shared
// memory (gathered by the block table, zero-filled past the range), so several tiles are in flight while
// one is processed and no register waits on global memory. Each warp takes a quarter of every tile.
template <int D, int GC>
__global__ void __launch_bounds__(128) decode_attention_kernel(DecodeAttentionParams p) {
  using namespace detail;
  constexpr int TPT = D / 8;              // threads per token: 8 dims each
  constexpr int TOK_PER_WARP = 32 / TPT;  // tokens a warp reads at once
  constexpr int CHUNKS = D / 8;           // 16-byte chunks per K (or V) row
  constexpr int PASSES = kDecodeTile / kDecodeWarps / TOK_PER_WARP;
  extern __shared__ __align__(16) unsigned char decode_smem[];
  bf16* Ks = reinterpret_cast<bf16*>(decode_smem);  // [stages][tile][D]
  bf16* Vs = Ks + kDecodeStages * kDecodeTile * D;  // [stages][tile][D]
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int lane_tok = lane / TPT, dim0 = (lane % TPT) * 8;
  const int h0 = blockIdx.x * GC;                 // first query head of this CTA
  const int kvh = h0 / (p.Hq / p.Hkv);            // its KV head
  const int e = blockIdx.y, split = blockIdx.z;
  const int seq = p.entry_seq ? p.entry_seq[e] : e;
  const int row = p.entry_row ? p.entry_row[e] : e;
  const int ctx = p.context_lens[seq];
  const int chunk = (ctx + p.splits - 1) / p.splits;
  const int start = split * chunk, end = min(ctx, start + chunk);
  const int32_t* table = p.block_tables + static_cast<int64_t>(seq) * p.max_blocks;
  const int bs = p.block_size;
  constexpr float LOG2E = 1.4426950408889634f;

  float q[GC][8];
#pragma unroll
  for (int g = 0; g < GC; g++) {
    Bf16x8 raw = *reinterpret_cast<const Bf16x8*>(p.q + static_cast<int64_t>(row) * p.q_stride + (h0 + g) * D + dim0);
    unpack8(raw, q[g]);
#pragma unroll
    for (int i = 0; i < 8; i++) q[g][i] *= p.scale * LOG2E;  // scores in the log2 domain
  }
  float m[GC], l[GC], acc[GC][8];
#pragma unroll
  for (int g = 0; g < GC; g++) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int i = 0; i < 8; i++) acc[g][i] = 0.0f;
  }

  const int ntiles = end > start ? (end - start + kDecodeTile - 1) / kDecodeTile : 0;
  // Async copies of tile `t` into its stage; every call commits one group (empty past the end), so
  // the group count that wait<> relies on is the same in every thread.
  auto issue = [&](int t) {
    if (t < ntiles) {
      const int t0 = start + t * kDecodeTile;
      bf16* ks = Ks + (t % kDecodeStages) * kDecodeTile * D;
      bf16* vs = Vs + (t % kDecodeStages) * kDecodeTile * D;
      for (int c = threadIdx.x; c < kDecodeTile * CHUNKS; c += blockDim.x) {
        const int r = c / CHUNKS, part = (c % CHUNKS) * 8, tok = t0 + r;
        const bool valid = tok < end;
        const int64_t off = valid ? ((static_cast<int64_t>(table[tok / bs]) * p.Hkv + kvh) * bs + tok % bs) * D + part : 0;
        cp_async16(ks + r * D + part, p.k_cache + off, valid);
        cp_async16(vs + r * D + part, p.v_cache + off, valid);
      }
    }
    cp_async_commit();
  };
#pragma unroll
  for (int t = 0; t < kDecodeStages - 1; t++) issue(t);
  for (int t = 0; t < ntiles; t++) {
    cp_async_wait<kDecodeStages - 2>();  // this thread's copies of tile t have landed
    __syncthreads();                     // everyone's have; and the stage of tile t-1 is free again
    issue(t + kDecodeStages - 1);
    const bf16* ks = Ks + (t % kDecodeStages) * kDecodeTile * D;
    const bf16* vs = Vs + (t % kDecodeStages) * kDecodeTile * D;
    const int t0 = start + t * kDecodeTile;
#pragma unroll
    for (int pass = 0; pass < PASSES; pass++) {
      const int r = warp * (kDecodeTile / kDecodeWarps) + pass * TOK_PER_WARP + lane_tok;
      const bool valid = t0 + r < end;
      float k[8], v[8];
      unpack8(*reinterpret_cast<const Bf16x8*>(ks + r * D + dim0), k);
      unpack8(*reinterpret_cast<const Bf16x8*>(vs + r * D + dim0), v);
#pragma unroll
      for (int g = 0; g < GC; g++) {
        float s = 0.0f;
#pragma unroll
        for (int i = 0; i < 8; i++) s = fmaf(q[g][i], k[i], s);
#pragma unroll
        for (int o = TPT / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (valid) {
          const float mx = fmaxf(m[g], s);
          const float corr = exp2f(m[g] - mx);  // m = -inf first: exp2(-inf) = 0
          const float w = exp2f(s - mx);
          l[g] = l[g] * corr + w;
#pragma unroll
          for (int i = 0; i < 8; i++) acc[g][i] = fmaf(w, v[i], acc[g][i] * corr);
          m[g] = mx;
        }
      }
    }
  }
  cp_async_wait<0>();

  // Merge the token lanes of a warp (lanes that differ by multiples of TPT hold the same dims).
#pragma unroll
  for (int o = TPT; o < 32; o <<= 1) {
#pragma unroll
    for (int g = 0; g < GC; g++) {
      float m2 = __shfl_xor_sync(0xffffffffu, m[g], o), l2 = __shfl_xor_sync(0xffffffffu, l[g], o), a2[8];
#pragma unroll
      for (int i = 0; i < 8; i++) a2[i] = __shfl_xor_sync(0xffffffffu, acc[g][i], o);
      merge_state(m[g], l[g], acc[g], m2, l2, a2);
    }
  }
  // Then the warps, through shared memory: [warp][g][TPT lanes][10].
  __shared__ float state[kDecodeWarps][GC][TPT][10];
  if (lane < TPT) {
#pragma unroll
    for (int g = 0; g < GC; g++) {
      state[warp][g][lane][0] = m[g];
      state[warp][g][lane][1] = l[g];
#pragma unroll
      for (int i = 0; i < 8; i++) state[warp][g][lane][2 + i] = acc[g][i];
    }
  }
  __syncthreads();
  if (warp != 0 || lane >= TPT) return;
#pragma unroll
  for (int g = 0; g < GC; g++) {
    for (int w = 1; w < kDecodeWarps; w++) {
      float a2[8];
#pragma unroll
      for (int i = 0; i < 8; i++) a2[i] = state[w][g][lane][2 + i];
      merge_state(m[g], l[g], acc[g], state[w][g][lane][0], state[w][g][lane][1], a2);
    }
    const int h = h0 + g;
    const float inv = l[g] > 0.0f ? 1.0f / l[g] : 0.0f;
    float o[8];
#pragma unroll
    for (int i = 0; i < 8; i++) o[i] = acc[g][i] * inv;
    if (p.splits == 1) {
      *reinterpret_cast<Bf16x8*>(p.out + static_cast<int64_t>(row) * p.out_stride + h * D + dim0) = pack8(o);
    } else {
      const int64_t slot = (static_cast<int64_t>(e) * p.Hq + h) * p.splits + split;
      float* pa = p.partial_acc + slot * D + dim0;
#pragma unroll
      for (int i = 0; i < 8; i++) pa[i] = o[i];
      if (dim0 == 0) {
        p.partial_ml[slot * 2] = m[g];
        p.partial_ml[slot * 2 + 1] = l[g];
      }
    }
  }
}

// Grid: (E, Hq). Block: D. Merges the splits of each (entry, head).
template <int D>
__global__ void decode_attention_reduce_kernel(DecodeAttentionParams p) {
  const int e = blockIdx.x, h = blockIdx.y, d = threadIdx.x;
  const int row = p.entry_row ? p.entry_row[e] : e;
  const int64_t base = (static_cast<int64_t>(e) * p.Hq + h) * p.splits;
  float mx = -INFINITY;
  for (int s = 0; s < p.splits; s++) mx = fmaxf(mx, p.partial_ml[(base + s) * 2]);
  float num = 0.0f, den = 0.0f;
  for (int s = 0; s < p.splits; s++) {
    const float ms = p.partial_ml[(base + s) * 2];
    if (ms == -INFINITY) continue;
    const float w = p.partial_ml[(base + s) * 2 + 1] * exp2f(ms - mx);
    num += w * p.partial_acc[(base + s) * D + d];
    den += w;
  }
  p.out[static_cast<int64_t>(row) * p.out_stride + h * D + d] = __float2bfloat16(den > 0.0f ? num / den : 0.0f);
}

template <int D>
constexpr int decode_smem_bytes() {
  return 2 * detail::kDecodeStages * detail::kDecodeTile * D * static_cast<int>(sizeof(bf16));
}

/** Largest divisor of the group size that is at most 8: query heads per CTA. */
inline int decode_heads_per_cta(int group) {
  for (int gc = 8; gc >= 1; gc--)
    if (group % gc == 0) return gc;
  return 1;
}

template <int D, int GC>
void launch_decode_gc(const DecodeAttentionParams& p, dim3 grid, cudaStream_t s) {
  constexpr int smem = decode_smem_bytes<D>();
  static bool configured = false;  // per kernel instance; set before first use (never inside a capture)
  if (!configured) {
    PAGODA_CUDA_CHECK(cudaFuncSetAttribute(decode_attention_kernel<D, GC>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    configured = true;
  }
  decode_attention_kernel<D, GC><<<grid, 128, smem, s>>>(p);
}

template <int D>
void launch_decode_attention_d(const DecodeAttentionParams& p, cudaStream_t s) {
  const int gc = decode_heads_per_cta(p.Hq / p.Hkv);
  dim3 grid(p.Hq / gc, p.E, p.splits);
  switch (gc) {
    case 1: launch_decode_gc<D, 1>(p, grid, s); break;
    case 2: launch_decode_gc<D, 2>(p, grid, s); break;
    case 3: launch_decode_gc<D, 3>(p, grid, s); break;
    case 4: launch_decode_gc<D, 4>(p, grid, s); break;
    case 5: launch_decode_gc<D, 5>(p, grid, s); break;
    case 6: launch_decode_gc<D, 6>(p, grid, s); break;
    case 7: launch_decode_gc<D, 7>(p, grid, s); break;
    default: launch_decode_gc<D, 8>(p, grid, s); break;
  }
  PAGODA_LAUNCH_CHECK("decode_attention_kernel");
  if (p.splits > 1) {
    decode_attention_reduce_kernel<D><<<dim3(p.E, p.Hq), D, 0, s>>>(p);
    PAGODA_LAUNCH_CHECK("decode_attention_reduce_kernel");
  }
}

inline void launch_decode_attention(const DecodeAttentionParams& p, int head_dim, cudaStream_t s) {
  if (p.E == 0) return;
  if (p.Hq % p.Hkv != 0) throw std::runtime_error("decode_attention: query heads must be a multiple of KV heads");
  if (p.splits < 1) throw std::runtime_error("decode_attention: splits must be >= 1");
  switch (head_dim) {
    case 64: launch_decode_attention_d<64>(p, s); break;
    case 128: launch_decode_attention_d<128>(p, s); break;
    default: throw std::runtime_error("decode_attention: unsupported head_dim: " + std::to_string(head_dim) + " (supported: 64, 128)");
  }
}

/** CTAs of the decode kernel that fit on one SM at once (for the split heuristic). */
inline int decode_resident_ctas(int head_dim, int group) {
  const int gc = decode_heads_per_cta(group);
  int n = 0;
  auto occ = [&](auto kernel) {
    const int smem = head_dim == 64 ? decode_smem_bytes<64>() : decode_smem_bytes<128>();
    PAGODA_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    PAGODA_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, 128, smem));
  };
#define PAGODA_OCC(DD)                                        \
  switch (gc) {                                               \
    case 1: occ(decode_attention_kernel<DD, 1>); break;       \
    case 2: occ(decode_attention_kernel<DD, 2>); break;       \
    case 3: occ(decode_attention_kernel<DD, 3>); break;       \
    case 4: occ(decode_attention_kernel<DD, 4>); break;       \
    case 5: occ(decode_attention_kernel<DD, 5>); break;       \
    case 6: occ(decode_attention_kernel<DD, 6>); break;       \
    case 7: occ(decode_attention_kernel<DD, 7>); break;       \
    default: occ(decode_attention_kernel<DD, 8>); break;      \
  }
  if (head_dim == 64) {
    PAGODA_OCC(64)
  } else {
    PAGODA_OCC(128)
  }
#undef PAGODA_OCC
  return n > 0 ? n : 1;
}

/** Splits for a batch: as few as keep every SM busy to the end (whole waves of CTAs), with each split
 *  at least `min_tokens` long. `max_context` 0 = unknown (graph capture): assume long contexts. */
inline int decode_splits(int entries, int q_heads, int heads_per_cta, int max_context, int num_sms, int resident_per_sm,
                         int max_splits, int min_tokens = 256) {
  const int ctas = entries * (q_heads / heads_per_cta);
  if (ctas == 0) return 1;
  const int capacity = num_sms * resident_per_sm;
  const int by_len = max_context > 0 ? std::max(1, max_context / min_tokens) : max_splits;
  int best = 1;
  double best_eff = 0;
  for (int s = 1; s <= std::min(max_splits, by_len); s++) {
    const int64_t work = static_cast<int64_t>(ctas) * s;
    const int64_t waves = (work + capacity - 1) / capacity;
    // useful share of the slot-time, mildly favouring fewer splits (each adds a merge)
    const double eff = static_cast<double>(work) / static_cast<double>(waves * capacity) / (1.0 + 0.01 * s);
    if (eff > best_eff + 1e-9) {
      best_eff = eff;
      best = s;
    }
  }
  return best;
}

}  // namespace pagoda::kernels
