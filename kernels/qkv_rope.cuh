// After the fused q/k/v projection: bias (Qwen2), per-head RMSNorm of q and k (Qwen3), rotary
// embedding (half-split pairs i, i + D/2), and the store of k and v into the paged KV cache by slot.
//
// One warp per head; lane l holds elements l, l + 32, ... of the head (D / 32 of them), so both
// members of a rotary pair (j, j + D/2) sit in the same lane and the norm is one warp reduction. A
// token's heads are spread over several CTAs, one head per warp, so a one-token decode step's call is one
// round of loads, not one per head of a warp's share.
#pragma once
#include "common.cuh"

namespace pagoda::kernels {

struct QkvRopeParams {
  const bf16* qkv;             // [T, (Hq + 2 Hkv) * D] projection output, row stride qkv_stride
  const bf16* bias;            // [(Hq + 2 Hkv) * D] or null
  const bf16* q_norm;          // [D] or null (then k_norm is null too)
  const bf16* k_norm;          // [D] or null
  const float* inv_freq;       // [D / 2]
  const int32_t* positions;    // [T]
  const int32_t* slot_mapping; // [T] block * block_size + offset; < 0: do not store (padding)
  bf16* q_out;                 // [T, Hq * D]
  bf16* k_cache;               // [num_blocks, Hkv, block_size, D] (this layer)
  bf16* v_cache;               // [num_blocks, Hkv, block_size, D] (this layer)
  int T, Hq, Hkv, block_size, qkv_stride;
  float eps;
};

constexpr int kQkvRopeWarps = 4;  // heads per CTA

// Grid: (T, ceil((Hq + 2 Hkv) / kQkvRopeWarps)). Block: kQkvRopeWarps * 32, one head per warp.
template <int D>
__global__ void qkv_rope_kernel(QkvRopeParams p) {
  allow_next_kernel_to_start();  // decode attention may stage its block table meanwhile
  wait_for_previous_kernel();    // launched to overlap: the projection is complete only now
  constexpr int PER_LANE = D / 32;
  const int t = blockIdx.x, lane = threadIdx.x & 31;
  const int h = blockIdx.y * kQkvRopeWarps + (threadIdx.x >> 5);
  if (h >= p.Hq + 2 * p.Hkv) return;
  const float pos = static_cast<float>(p.positions[t]);
  const int slot = p.slot_mapping[t];
  const bool is_q = h < p.Hq, is_k = !is_q && h < p.Hq + p.Hkv;
  const int col0 = h * D;
  float x[PER_LANE];
#pragma unroll
  for (int i = 0; i < PER_LANE; i++) {
    const int c = col0 + lane + 32 * i;
    x[i] = __bfloat162float(p.qkv[static_cast<int64_t>(t) * p.qkv_stride + c]);
    if (p.bias) x[i] += __bfloat162float(p.bias[c]);
  }
  if (!is_q && !is_k) {  // v: straight to the cache
    if (slot >= 0) {
      const int64_t base = ((static_cast<int64_t>(slot / p.block_size) * p.Hkv + (h - p.Hq - p.Hkv)) * p.block_size + slot % p.block_size) * D;
#pragma unroll
      for (int i = 0; i < PER_LANE; i++) p.v_cache[base + lane + 32 * i] = __float2bfloat16(x[i]);
    }
    return;
  }
  const bf16* nw = is_q ? p.q_norm : p.k_norm;
  if (nw) {
    float ss = 0.0f;
#pragma unroll
    for (int i = 0; i < PER_LANE; i++) ss += x[i] * x[i];
    const float inv = rsqrtf(warp_sum(ss) / D + p.eps);
#pragma unroll
    for (int i = 0; i < PER_LANE; i++) x[i] = __bfloat162float(nw[lane + 32 * i]) * (x[i] * inv);
  }
  // Rotary: element j = lane + 32 i pairs with j + D/2 = lane + 32 (i + PER_LANE/2).
#pragma unroll
  for (int i = 0; i < PER_LANE / 2; i++) {
    const int j = lane + 32 * i;
    float s, c;
    sincosf(pos * p.inv_freq[j], &s, &c);
    const float a = x[i], b = x[i + PER_LANE / 2];
    x[i] = a * c - b * s;
    x[i + PER_LANE / 2] = b * c + a * s;
  }
  if (is_q) {
    bf16* o = p.q_out + static_cast<int64_t>(t) * p.Hq * D + h * D;
#pragma unroll
    for (int i = 0; i < PER_LANE; i++) o[lane + 32 * i] = __float2bfloat16(x[i]);
  } else if (slot >= 0) {
    const int64_t base = ((static_cast<int64_t>(slot / p.block_size) * p.Hkv + (h - p.Hq)) * p.block_size + slot % p.block_size) * D;
#pragma unroll
    for (int i = 0; i < PER_LANE; i++) p.k_cache[base + lane + 32 * i] = __float2bfloat16(x[i]);
  }
}

// overlap: launched to overlap the projection before it (programmatic dependent launch).
inline void launch_qkv_rope(const QkvRopeParams& p, int head_dim, cudaStream_t s, bool overlap = false) {
  if (p.T == 0) return;
  const dim3 grid(p.T, ceil_div(p.Hq + 2 * p.Hkv, kQkvRopeWarps)), block(kQkvRopeWarps * 32);
  switch (head_dim) {
    case 64: launch_overlapping(overlap, qkv_rope_kernel<64>, grid, block, 0, s, p); break;
    case 128: launch_overlapping(overlap, qkv_rope_kernel<128>, grid, block, 0, s, p); break;
    default: throw std::runtime_error("qkv_rope: unsupported head_dim: " + std::to_string(head_dim) + " (supported: 64, 128)");
  }
  PAGODA_LAUNCH_CHECK("qkv_rope_kernel");
}

}  // namespace pagoda::kernels
