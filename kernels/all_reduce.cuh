// One-shot all-reduce across the GPUs of one process, through peer-to-peer (NVLink) memory: each rank
// stages its partial sums (float32 or bf16) in its own buffer, tells every peer it has done so, waits until
// every peer has, then reads all staged buffers and adds them. One kernel, no host involvement, so it
// can sit inside a CUDA graph; for the small tensors of decode steps it avoids NCCL's protocol
// overhead (latency, not bandwidth, is what counts there).
//
// Every rank adds the ranks' values in the same order (0, 1, ..., world-1), in float32, and rounds the
// total once (bf16), so all ranks end with bit-identical sums.
//
// Synchronisation, per block: block b of every rank handles the same elements (a fixed grid and a
// fixed element-to-block mapping), so block b only needs to hear from block b of each peer. Each block
// keeps a call counter (`epochs[b]`, on its own rank); call k writes flag value k and stages into half
// k % 2 of the double buffer. A peer can run at most one call ahead (call k+1 cannot finish before
// this rank's call k+1 arrives), so it never overwrites the half this rank is still reading, and a
// flag is waited for with `>=` because it may already show the next call.
#pragma once
#include <type_traits>

#include "common.cuh"

namespace pagoda::kernels {

constexpr int kAllReduceMaxRanks = 8;
// Fixed so that element i always belongs to the same block, whatever the call's size. 64 x 512 threads
// keep enough peer loads in flight to use NVLink on megabyte tensors (32 blocks did not: 2 MiB on 2
// GPUs took 14.7 us, 140 GB/s).
constexpr int kAllReduceBlocks = 64;
constexpr int kAllReduceThreads = 512;

// The kernel moves 16-byte vectors: 4 floats or 8 bf16.
struct OneShotAllReduceParams {
  uint4* data;                             // [vectors] this rank's partial sums in; the sum of all ranks' out
  uint4* staging[kAllReduceMaxRanks];      // [world] -> [2][capacity] each rank's staging buffer
  uint64_t* flags[kAllReduceMaxRanks];     // [world] -> [kAllReduceBlocks][world] each rank's arrival flags
  uint64_t* epochs;                        // [kAllReduceBlocks] this rank's calls so far, per block
  int64_t vectors;                         // 16-byte vectors to sum, <= capacity
  int64_t capacity;                        // 16-byte vectors per half of a staging buffer
  int rank, world;
};

// The parameters of one call: rank `rank` of `world` sums `bytes` of data (a multiple of 16) in place
// through every rank's staging buffer (`capacity_bytes` per half) and flags (indexed by rank).
inline OneShotAllReduceParams one_shot_params(void* data, int64_t bytes, void* const* staging, uint64_t* const* flags,
                                              uint64_t* epochs, int64_t capacity_bytes, int rank, int world) {
  if (bytes % 16 != 0)
    throw std::runtime_error("one-shot all-reduce: " + std::to_string(bytes) + " bytes is not a whole number of 16-byte vectors");
  OneShotAllReduceParams p{};
  p.data = static_cast<uint4*>(data);
  for (int r = 0; r < world && r < kAllReduceMaxRanks; r++) {
    p.staging[r] = static_cast<uint4*>(staging[r]);
    p.flags[r] = flags[r];
  }
  p.epochs = epochs;
  p.vectors = bytes / 16;
  p.capacity = capacity_bytes / 16;
  p.rank = rank;
  p.world = world;
  return p;
}

__device__ __forceinline__ void store_release_system(uint64_t* p, uint64_t v) {
  asm volatile("st.release.sys.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}

__device__ __forceinline__ uint64_t load_acquire_system(const uint64_t* p) {
  uint64_t v;
  asm volatile("ld.acquire.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}

// Sum of the ranks' 16-byte vectors of T (float: 4 values, bf16: 8), added in rank order in float32.
template <typename T, int WORLD>
struct VectorSum;

template <int WORLD>
struct VectorSum<float, WORLD> {
  __device__ __forceinline__ static uint4 of(const uint4* x, int world) {
    float4 s = reinterpret_cast<const float4&>(x[0]);
    for (int r = 1; r < (WORLD > 0 ? WORLD : world); r++) {
      const float4 v = reinterpret_cast<const float4&>(x[r]);
      s.x += v.x;
      s.y += v.y;
      s.z += v.z;
      s.w += v.w;
    }
    return reinterpret_cast<const uint4&>(s);
  }
};

template <int WORLD>
struct VectorSum<bf16, WORLD> {
  __device__ __forceinline__ static uint4 of(const uint4* x, int world) {
    float s[8], v[8];
    unpack8(reinterpret_cast<const Bf16x8&>(x[0]), s);
    for (int r = 1; r < (WORLD > 0 ? WORLD : world); r++) {
      unpack8(reinterpret_cast<const Bf16x8&>(x[r]), v);
#pragma unroll
      for (int i = 0; i < 8; i++) s[i] += v[i];
    }
    const Bf16x8 out = pack8(s);
    return reinterpret_cast<const uint4&>(out);
  }
};

// Phase 2 of a call, for block b: thread r < world tells rank r that this block's share is staged (the
// block's staging stores are ordered before it by the caller's __syncthreads), then waits for rank r's.
__device__ __forceinline__ void arrive_and_wait(const OneShotAllReduceParams& p, int b, uint64_t epoch) {
  if (threadIdx.x < p.world) {
    const int peer = threadIdx.x;
    __threadfence_system();
    store_release_system(p.flags[peer] + b * p.world + p.rank, epoch);
    const uint64_t* from_peer = p.flags[p.rank] + b * p.world + peer;
    while (load_acquire_system(from_peer) < epoch) {
    }
  }
  __syncthreads();
}

// Phase 3: the sum of every rank's staged vector v, in rank order. Peer data is read past L1 (__ldcg):
// it was written by another GPU during this kernel.
template <typename T, int WORLD>
__device__ __forceinline__ uint4 sum_staged(const OneShotAllReduceParams& p, int64_t half, int64_t v) {
  if constexpr (WORLD > 0) {
    uint4 x[WORLD];
#pragma unroll
    for (int r = 0; r < WORLD; r++) x[r] = __ldcg(p.staging[r] + half + v);
    return VectorSum<T, WORLD>::of(x, WORLD);
  } else {
    uint4 x[kAllReduceMaxRanks];
    for (int r = 0; r < p.world; r++) x[r] = __ldcg(p.staging[r] + half + v);
    return VectorSum<T, 0>::of(x, p.world);
  }
}

// Grid: (kAllReduceBlocks). Block: kAllReduceThreads (>= world). T: float or bf16. WORLD: the rank
// count when known at compile time (2, 4, 8: the peer loads of a vector are all issued before the adds),
// 0 for any.
template <typename T, int WORLD>
__global__ void __launch_bounds__(kAllReduceThreads) one_shot_all_reduce_kernel(OneShotAllReduceParams p) {
  allow_next_kernel_to_start();  // the next GEMM may start loading its weights
  const int b = blockIdx.x;
  const uint64_t epoch = p.epochs[b] + 1;
  const int64_t half = static_cast<int64_t>(epoch & 1) * p.capacity;
  const int64_t n = p.vectors, stride = static_cast<int64_t>(kAllReduceBlocks) * kAllReduceThreads;
  const int64_t first = static_cast<int64_t>(b) * kAllReduceThreads + threadIdx.x;

  // 1. Stage this block's share of the partial sums in this rank's buffer.
  uint4* mine = p.staging[p.rank] + half;
  for (int64_t v = first; v < n; v += stride) mine[v] = p.data[v];
  __syncthreads();
  // 2. Tell the peers, wait for them.
  arrive_and_wait(p, b, epoch);
  // 3. Add every rank's staged share.
  for (int64_t v = first; v < n; v += stride) p.data[v] = sum_staged<T, WORLD>(p, half, v);
  if (threadIdx.x == 0) p.epochs[b] = epoch;  // every thread read it before the first __syncthreads
}

// The all-reduce of a row-parallel projection fused with what follows it in a transformer layer:
//   residual[t, :] += bf16(sum over ranks of data[t, :]);  out[t, :] = RMSNorm(residual[t, :]) * weight
// with the same roundings as the plain bf16 all-reduce followed by add_rmsnorm (norm.cuh), so the
// residual stream is bit-identical to that path. Rows, not vectors, are spread over the blocks (row t
// belongs to block t % kAllReduceBlocks): a block owns whole rows for the norm's sum of squares.
struct AddNormParams {
  float* residual;      // [rows, H] float32 residual stream, updated in place
  const bf16* weight;   // [H] norm weight
  bf16* out;            // [rows, H] normalised activations (the next GEMM's input)
  int rows, H;          // H % 8 == 0
  float eps;
};

// Grid: (kAllReduceBlocks). Block: kAllReduceThreads. data: [rows, H] bf16 partial sums (not written).
template <int WORLD>
__global__ void __launch_bounds__(kAllReduceThreads) one_shot_all_reduce_add_norm_kernel(OneShotAllReduceParams p, AddNormParams a) {
  allow_next_kernel_to_start();  // the next GEMM may start loading its weights
  __shared__ float scratch[32];
  const int b = blockIdx.x;
  const uint64_t epoch = p.epochs[b] + 1;
  const int64_t half = static_cast<int64_t>(epoch & 1) * p.capacity;
  const int per_row = a.H / 8;  // 16-byte vectors per row

  uint4* mine = p.staging[p.rank] + half;
  for (int r = b; r < a.rows; r += kAllReduceBlocks)
    for (int v = threadIdx.x; v < per_row; v += kAllReduceThreads) {
      const int64_t i = static_cast<int64_t>(r) * per_row + v;
      mine[i] = p.data[i];
    }
  __syncthreads();
  arrive_and_wait(p, b, epoch);

  for (int r = b; r < a.rows; r += kAllReduceBlocks) {
    float* x = a.residual + static_cast<int64_t>(r) * a.H;
    float ss = 0.0f;
    for (int v = threadIdx.x; v < per_row; v += kAllReduceThreads) {
      const uint4 sum = sum_staged<bf16, WORLD>(p, half, static_cast<int64_t>(r) * per_row + v);
      float d[8];
      unpack8(reinterpret_cast<const Bf16x8&>(sum), d);
      float4* xv = reinterpret_cast<float4*>(x + v * 8);
      float4 lo = xv[0], hi = xv[1];
      lo.x += d[0], lo.y += d[1], lo.z += d[2], lo.w += d[3];
      hi.x += d[4], hi.y += d[5], hi.z += d[6], hi.w += d[7];
      xv[0] = lo;
      xv[1] = hi;
      ss += lo.x * lo.x + lo.y * lo.y + lo.z * lo.z + lo.w * lo.w + hi.x * hi.x + hi.y * hi.y + hi.z * hi.z + hi.w * hi.w;
    }
    const float inv = rsqrtf(block_sum(ss, scratch) / a.H + a.eps);
    bf16* o = a.out + static_cast<int64_t>(r) * a.H;
    for (int v = threadIdx.x; v < per_row; v += kAllReduceThreads) {
      const float4* xv = reinterpret_cast<const float4*>(x + v * 8);  // this thread's own stores above
      const float4 lo = xv[0], hi = xv[1];
      const float xs[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
      float w[8], y[8];
      unpack8(*reinterpret_cast<const Bf16x8*>(a.weight + v * 8), w);
#pragma unroll
      for (int i = 0; i < 8; i++) y[i] = w[i] * (xs[i] * inv);
      *reinterpret_cast<Bf16x8*>(o + v * 8) = pack8(y);
    }
  }
  if (threadIdx.x == 0) p.epochs[b] = epoch;
}

// Calls launch(std::integral_constant<int, W>) with the kernels' WORLD for p.world: 2, 4 or 8 when
// specialised, else 0 (any count). Refuses counts outside 2..8.
template <typename F>
inline void with_world(const OneShotAllReduceParams& p, F&& launch) {
  switch (p.world) {
    case 2: launch(std::integral_constant<int, 2>{}); break;
    case 4: launch(std::integral_constant<int, 4>{}); break;
    case 8: launch(std::integral_constant<int, 8>{}); break;
    default:
      if (p.world < 2 || p.world > kAllReduceMaxRanks)
        throw std::runtime_error("one-shot all-reduce: world size " + std::to_string(p.world) + " is not 2..8");
      launch(std::integral_constant<int, 0>{});
  }
}

// T: the element type of data (float or bf16).
template <typename T>
inline void launch_one_shot_all_reduce(const OneShotAllReduceParams& p, cudaStream_t s) {
  if (p.vectors > p.capacity)
    throw std::runtime_error("one-shot all-reduce: " + std::to_string(p.vectors * 16) + " bytes exceed the staging buffer of " +
                             std::to_string(p.capacity * 16));
  with_world(p, [&](auto world) {
    if (p.vectors == 0) return;
    one_shot_all_reduce_kernel<T, decltype(world)::value><<<kAllReduceBlocks, kAllReduceThreads, 0, s>>>(p);
    PAGODA_LAUNCH_CHECK("one_shot_all_reduce_kernel");
  });
}

inline void launch_one_shot_all_reduce_add_norm(const OneShotAllReduceParams& p, const AddNormParams& a, cudaStream_t s) {
  if (a.H % 8 != 0) throw std::runtime_error("one-shot all-reduce + norm: hidden size " + std::to_string(a.H) + " is not a multiple of 8");
  if (static_cast<int64_t>(a.rows) * a.H / 8 > p.capacity)
    throw std::runtime_error("one-shot all-reduce + norm: " + std::to_string(a.rows) + " rows exceed the staging buffer");
  with_world(p, [&](auto world) {
    if (a.rows == 0) return;
    one_shot_all_reduce_add_norm_kernel<decltype(world)::value><<<kAllReduceBlocks, kAllReduceThreads, 0, s>>>(p, a);
    PAGODA_LAUNCH_CHECK("one_shot_all_reduce_add_norm_kernel");
  });
}

}  // namespace pagoda::kernels
