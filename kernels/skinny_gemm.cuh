// Linear layers of decode steps with a few sequences: Y[M, N] = X[M, K] · W[N, K]^T for M <= 4, bf16
// inputs, float32 accumulation, Y in float32 or bf16 with row stride ldy >= N (a slice of a wider
// output, as a vocabulary-parallel LM head writes its columns of the logits).
//
// With M this small the product is a matrix-vector one: each weight byte is used M times, so the time is
// the time to stream W from memory once. One warp computes one output column n for all M rows: its 32
// lanes walk W's row n in 16-byte pieces (8 bf16), several pieces in flight per lane, each piece
// multiplied by the same 8 values of every X row (X is small and stays in L1), then a warp sum. W is read
// with a streaming load that does not allocate in L1, so it does not evict X.
#pragma once
#include "common.cuh"

namespace pagoda::kernels {

constexpr int kSkinnyMaxRows = 4;
constexpr int kSkinnyWarps = 8;   // warps per CTA: one output column each
constexpr int kSkinnyUnroll = 4;  // 16-byte weight pieces in flight per lane

__device__ __forceinline__ Bf16x8 load_streaming(const bf16* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return *reinterpret_cast<Bf16x8*>(&v);
}

__device__ __forceinline__ void store_out(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_out(bf16* p, float v) { *p = __float2bfloat16(v); }

// acc[m] += dot(w[0..8), x[m][k0 .. k0 + 8)) for every row m.
template <int M>
__device__ __forceinline__ void accumulate_piece(float (&acc)[M], const Bf16x8& wv, const bf16* __restrict__ x, int K, int k0) {
  float w[8];
  unpack8(wv, w);
#pragma unroll
  for (int m = 0; m < M; m++) {
    float xv[8];
    unpack8(*reinterpret_cast<const Bf16x8*>(x + static_cast<int64_t>(m) * K + k0), xv);
#pragma unroll
    for (int i = 0; i < 8; i++) acc[m] = fmaf(w[i], xv[i], acc[m]);
  }
}

// Grid: (ceil(N / kSkinnyWarps)). Block: kSkinnyWarps * 32. K % 8 == 0; W and X 16-byte aligned.
template <int M, typename OutT>
__global__ void __launch_bounds__(kSkinnyWarps * 32) skinny_gemm_kernel(const bf16* __restrict__ W,  // [N, K]
                                                                         const bf16* __restrict__ X,  // [M, K]
                                                                         OutT* __restrict__ Y,        // [M, ldy]
                                                                         int N, int K, int ldy) {
  const int lane = threadIdx.x & 31;
  const int n = blockIdx.x * kSkinnyWarps + (threadIdx.x >> 5);
  if (n >= N) return;
  const bf16* w = W + static_cast<int64_t>(n) * K;
  const int pieces = K / 8;
  float acc[M];
#pragma unroll
  for (int m = 0; m < M; m++) acc[m] = 0.0f;
  int p = lane;
  // The first round of weight loads goes out before waiting for the kernel that writes X: launched with
  // overlap, it streams while that kernel finishes.
  Bf16x8 wv[kSkinnyUnroll];
  const bool first_round = p + 32 * (kSkinnyUnroll - 1) < pieces;
  if (first_round) {
#pragma unroll
    for (int u = 0; u < kSkinnyUnroll; u++) wv[u] = load_streaming(w + (p + 32 * u) * 8);
  }
  wait_for_previous_kernel();
  // Full rounds: kSkinnyUnroll loads issued before any arithmetic.
  for (bool loaded = first_round; p + 32 * (kSkinnyUnroll - 1) < pieces; p += 32 * kSkinnyUnroll, loaded = false) {
    if (!loaded) {
#pragma unroll
      for (int u = 0; u < kSkinnyUnroll; u++) wv[u] = load_streaming(w + (p + 32 * u) * 8);
    }
#pragma unroll
    for (int u = 0; u < kSkinnyUnroll; u++) accumulate_piece<M>(acc, wv[u], X, K, (p + 32 * u) * 8);
  }
  for (; p < pieces; p += 32) accumulate_piece<M>(acc, load_streaming(w + p * 8), X, K, p * 8);
#pragma unroll
  for (int m = 0; m < M; m++) {
    const float s = warp_sum(acc[m]);
    if (lane == 0) store_out(Y + static_cast<int64_t>(m) * ldy + n, s);
  }
}

// Whether the skinny kernel can compute this product (else the caller uses a general GEMM).
inline bool skinny_gemm_supports(int M, int K, const void* W, const void* X) {
  return M >= 1 && M <= kSkinnyMaxRows && K % 8 == 0 && reinterpret_cast<uintptr_t>(W) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(X) % 16 == 0;
}

// ldy: Y's row stride (0: N). overlap: launched to overlap the previous kernel in the stream (programmatic
// dependent launch; its weight loads start before that kernel ends).
template <typename OutT>
inline void launch_skinny_gemm(const bf16* W, const bf16* X, OutT* Y, int M, int N, int K, cudaStream_t s, int ldy = 0,
                               bool overlap = false) {
  if (ldy == 0) ldy = N;
  if (!skinny_gemm_supports(M, K, W, X))
    throw std::runtime_error("skinny_gemm: needs 1 <= M <= " + std::to_string(kSkinnyMaxRows) +
                             ", K a multiple of 8 and 16-byte aligned W and X (M=" + std::to_string(M) + ", K=" + std::to_string(K) + ")");
  if (ldy < N) throw std::runtime_error("skinny_gemm: row stride " + std::to_string(ldy) + " < N=" + std::to_string(N));
  if (N == 0) return;
  const dim3 grid(ceil_div(N, kSkinnyWarps)), block(kSkinnyWarps * 32);
  const auto launch = [&](auto kernel) { launch_overlapping(overlap, kernel, grid, block, 0, s, W, X, Y, N, K, ldy); };
  switch (M) {
    case 1: launch(skinny_gemm_kernel<1, OutT>); break;
    case 2: launch(skinny_gemm_kernel<2, OutT>); break;
    case 3: launch(skinny_gemm_kernel<3, OutT>); break;
    default: launch(skinny_gemm_kernel<4, OutT>);
  }
  PAGODA_LAUNCH_CHECK("skinny_gemm_kernel");
}

}  // namespace pagoda::kernels
