// Linear layers of decode steps with a few sequences: Y[M, N] = X[M, K] · W[N, K]^T for M <= 4, bf16
// inputs, float32 accumulation, Y in float32 or bf16 with row stride ldy >= N (a slice of a wider
// output, as a vocabulary-parallel LM head writes its columns of the logits).
//
// With M this small the product is a matrix-vector one: each weight byte is used M times, so the time is
// the time to stream W from memory once. One warp computes one output column n for all M rows: its 32
// lanes walk W's row n in 16-byte pieces (8 bf16), several pieces in flight per lane, each piece
// multiplied by the same 8 values of every X row (X is small and stays in L1), then a warp sum. W is read
// with a streaming load that does not allocate in L1, so it does not evict X.
//
// An MLP's gate/up projection can end in its activation (launch_skinny_gemm_silu_mul): a warp then walks
// the gate row and the up row of its column together and writes silu(gate) * up, which saves the
// activation kernel between the gate/up and down projections of a decode step, and its launch.
#pragma once
#include "common.cuh"

namespace pagoda::kernels {

constexpr int kSkinnyMaxRows = 4;
constexpr int kSkinnyWarps = 8;   // warps per CTA: one output column each
constexpr int kSkinnyLoads = 4;   // 16-byte weight pieces in flight per lane (over its R weight rows)

__device__ __forceinline__ Bf16x8 load_streaming(const bf16* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return *reinterpret_cast<Bf16x8*>(&v);
}

__device__ __forceinline__ void store_out(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_out(bf16* p, float v) { *p = __float2bfloat16(v); }

// acc[r][m] += dot(w[r][0..8), x[m][k0 .. k0 + 8)) for every weight row r and X row m (each X piece
// unpacked once for the R rows).
template <int R, int M>
__device__ __forceinline__ void accumulate_piece(float (&acc)[R][M], const Bf16x8 (&wv)[R], const bf16* __restrict__ x, int K, int k0) {
  float w[R][8];
#pragma unroll
  for (int r = 0; r < R; r++) unpack8(wv[r], w[r]);
#pragma unroll
  for (int m = 0; m < M; m++) {
    float xv[8];
    unpack8(*reinterpret_cast<const Bf16x8*>(x + static_cast<int64_t>(m) * K + k0), xv);
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
      for (int i = 0; i < 8; i++) acc[r][m] = fmaf(w[r][i], xv[i], acc[r][m]);
  }
}

// What a warp makes of its column's dot products: the product itself, or (gate/up projection of an MLP)
// silu(gate) * up, from the gate row n and the up row N + n of a stacked [2N, K] weight.
enum class SkinnyEpilogue { kProduct, kSiluMul };

// CTAs per SM the compiler is told to fit (__launch_bounds__), which sets its register budget. Measured
// on an H200 (docs/perf.md): with an explicit 1 the product kernel takes 56 registers at M = 1 instead of
// the 40 it got by default, and a Qwen3-8B TP=2 decode step's GEMMs run 4.6 % faster; the one-row
// gate/up + SiLU kernel is fastest held to 40 registers (6 CTAs per SM; a 4-byte spill), which also puts
// Qwen3-8B's 6,144 gate/up columns per GPU at TP=2 in one wave of warps.
template <int M, SkinnyEpilogue EPI>
__host__ __device__ constexpr int skinny_min_ctas_per_sm() {
  return EPI == SkinnyEpilogue::kSiluMul && M == 1 ? 6 : 1;
}

// Grid: (ceil(N / kSkinnyWarps)). Block: kSkinnyWarps * 32. K % 8 == 0; W and X 16-byte aligned.
// W: [N, K] for kProduct; [2N, K] (gate rows, then up rows) for kSiluMul. Y: [M, ldy], columns [0, N).
template <int M, SkinnyEpilogue EPI, typename OutT>
__global__ void __launch_bounds__(kSkinnyWarps * 32, skinny_min_ctas_per_sm<M, EPI>()) skinny_gemm_kernel(const bf16* __restrict__ W,  // see above
                                                                         const bf16* __restrict__ X,  // [M, K]
                                                                         OutT* __restrict__ Y,        // [M, ldy]
                                                                         int N, int K, int ldy) {
  constexpr int R = EPI == SkinnyEpilogue::kSiluMul ? 2 : 1;  // weight rows per warp
  constexpr int UNROLL = kSkinnyLoads / R;                      // pieces of each row in flight per lane
  const int lane = threadIdx.x & 31;
  const int n = blockIdx.x * kSkinnyWarps + (threadIdx.x >> 5);
  if (n >= N) return;
  const bf16* w[R];
#pragma unroll
  for (int r = 0; r < R; r++) w[r] = W + static_cast<int64_t>(n + r * N) * K;
  const int pieces = K / 8;
  float acc[R][M];
#pragma unroll
  for (int r = 0; r < R; r++)
#pragma unroll
    for (int m = 0; m < M; m++) acc[r][m] = 0.0f;
  int p = lane;
  Bf16x8 wv[UNROLL][R];
  const auto load_round = [&]() {
#pragma unroll
    for (int u = 0; u < UNROLL; u++)
#pragma unroll
      for (int r = 0; r < R; r++) wv[u][r] = load_streaming(w[r] + (p + 32 * u) * 8);
  };
  // The first round of weight loads goes out before waiting for the kernel that writes X: launched with
  // overlap, it streams while that kernel finishes.
  const bool first_round = p + 32 * (UNROLL - 1) < pieces;
  if (first_round) load_round();
  wait_for_previous_kernel();
  // Full rounds: UNROLL * R loads issued before any arithmetic.
  for (bool loaded = first_round; p + 32 * (UNROLL - 1) < pieces; p += 32 * UNROLL, loaded = false) {
    if (!loaded) load_round();
#pragma unroll
    for (int u = 0; u < UNROLL; u++) accumulate_piece<R, M>(acc, wv[u], X, K, (p + 32 * u) * 8);
  }
  for (; p < pieces; p += 32) {
    Bf16x8 last[R];
#pragma unroll
    for (int r = 0; r < R; r++) last[r] = load_streaming(w[r] + p * 8);
    accumulate_piece<R, M>(acc, last, X, K, p * 8);
  }
  allow_next_kernel_to_start();  // every weight load of this warp is done: the next GEMM may start its own
#pragma unroll
  for (int m = 0; m < M; m++) {
    float col[R];
#pragma unroll
    for (int r = 0; r < R; r++) col[r] = warp_sum(acc[r][m]);
    const float y = EPI == SkinnyEpilogue::kSiluMul ? col[0] / (1.0f + __expf(-col[0])) * col[R - 1] : col[0];
    if (lane == 0) store_out(Y + static_cast<int64_t>(m) * ldy + n, y);
  }
}

// Whether the skinny kernel can compute this product (else the caller uses a general GEMM).
inline bool skinny_gemm_supports(int M, int K, const void* W, const void* X) {
  return M >= 1 && M <= kSkinnyMaxRows && K % 8 == 0 && reinterpret_cast<uintptr_t>(W) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(X) % 16 == 0;
}

template <SkinnyEpilogue EPI, typename OutT>
void launch_skinny(const char* what, const bf16* W, const bf16* X, OutT* Y, int M, int N, int K, cudaStream_t s, int ldy, bool overlap) {
  if (ldy == 0) ldy = N;
  if (!skinny_gemm_supports(M, K, W, X))
    throw std::runtime_error(std::string(what) + ": needs 1 <= M <= " + std::to_string(kSkinnyMaxRows) +
                             ", K a multiple of 8 and 16-byte aligned W and X (M=" + std::to_string(M) + ", K=" + std::to_string(K) + ")");
  if (ldy < N) throw std::runtime_error(std::string(what) + ": row stride " + std::to_string(ldy) + " < N=" + std::to_string(N));
  if (N == 0) return;
  const dim3 grid(ceil_div(N, kSkinnyWarps)), block(kSkinnyWarps * 32);
  const auto launch = [&](auto kernel) { launch_overlapping(overlap, kernel, grid, block, 0, s, W, X, Y, N, K, ldy); };
  switch (M) {
    case 1: launch(skinny_gemm_kernel<1, EPI, OutT>); break;
    case 2: launch(skinny_gemm_kernel<2, EPI, OutT>); break;
    case 3: launch(skinny_gemm_kernel<3, EPI, OutT>); break;
    default: launch(skinny_gemm_kernel<4, EPI, OutT>);
  }
  PAGODA_LAUNCH_CHECK("skinny_gemm_kernel");
}

// Y[M, N] = X[M, K] · W[N, K]^T. ldy: Y's row stride (0: N). overlap: launched to overlap the previous
// kernel in the stream (programmatic dependent launch; its weight loads start before that kernel ends).
template <typename OutT>
inline void launch_skinny_gemm(const bf16* W, const bf16* X, OutT* Y, int M, int N, int K, cudaStream_t s, int ldy = 0,
                               bool overlap = false) {
  launch_skinny<SkinnyEpilogue::kProduct>("skinny_gemm", W, X, Y, M, N, K, s, ldy, overlap);
}

// An MLP's gate/up projection and its activation in one kernel: Y[M, I] = silu(X · Wg^T) * (X · Wu^T)
// for W = [Wg; Wu] ([2I, K], the stacked gate/up weight), without the [M, 2I] intermediate.
inline void launch_skinny_gemm_silu_mul(const bf16* W, const bf16* X, bf16* Y, int M, int I, int K, cudaStream_t s, bool overlap = false) {
  launch_skinny<SkinnyEpilogue::kSiluMul>("skinny_gemm_silu_mul", W, X, Y, M, I, K, s, 0, overlap);
}

}  // namespace pagoda::kernels
