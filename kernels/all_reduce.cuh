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

// Grid: (kAllReduceBlocks). Block: kAllReduceThreads (>= world). T: float or bf16. WORLD: the rank
// count when known at compile time (2, 4, 8: the peer loads of a vector are all issued before the adds),
// 0 for any.
template <typename T, int WORLD>
__global__ void __launch_bounds__(kAllReduceThreads) one_shot_all_reduce_kernel(OneShotAllReduceParams p) {
  const int b = blockIdx.x;
  const uint64_t epoch = p.epochs[b] + 1;
  const int64_t half = static_cast<int64_t>(epoch & 1) * p.capacity;
  const int64_t n = p.vectors, stride = static_cast<int64_t>(kAllReduceBlocks) * kAllReduceThreads;
  const int64_t first = static_cast<int64_t>(b) * kAllReduceThreads + threadIdx.x;

  // 1. Stage this block's share of the partial sums in this rank's buffer.
  uint4* mine = p.staging[p.rank] + half;
  for (int64_t v = first; v < n; v += stride) mine[v] = p.data[v];
  __syncthreads();

  // 2. Thread r < world tells rank r that this block's share is staged, then waits for rank r's.
  if (threadIdx.x < p.world) {
    const int peer = threadIdx.x;
    __threadfence_system();  // the whole block's staging stores (ordered before by __syncthreads)
    store_release_system(p.flags[peer] + b * p.world + p.rank, epoch);
    const uint64_t* from_peer = p.flags[p.rank] + b * p.world + peer;
    while (load_acquire_system(from_peer) < epoch) {
    }
  }
  __syncthreads();

  // 3. Add every rank's staged share, in rank order. Peer data is read past L1 (__ldcg): it was
  // written by another GPU during this kernel.
  for (int64_t v = first; v < n; v += stride) {
    if constexpr (WORLD > 0) {
      uint4 x[WORLD];
#pragma unroll
      for (int r = 0; r < WORLD; r++) x[r] = __ldcg(p.staging[r] + half + v);
      p.data[v] = VectorSum<T, WORLD>::of(x, WORLD);
    } else {
      uint4 x[kAllReduceMaxRanks];
      for (int r = 0; r < p.world; r++) x[r] = __ldcg(p.staging[r] + half + v);
      p.data[v] = VectorSum<T, 0>::of(x, p.world);
    }
  }
  if (threadIdx.x == 0) p.epochs[b] = epoch;  // every thread read it before the first __syncthreads
}

// T: the element type of data (float or bf16).
template <typename T>
inline void launch_one_shot_all_reduce(const OneShotAllReduceParams& p, cudaStream_t s) {
  if (p.world < 2 || p.world > kAllReduceMaxRanks)
    throw std::runtime_error("one-shot all-reduce: world size " + std::to_string(p.world) + " is not 2..8");
  if (p.vectors > p.capacity)
    throw std::runtime_error("one-shot all-reduce: " + std::to_string(p.vectors * 16) + " bytes exceed the staging buffer of " +
                             std::to_string(p.capacity * 16));
  if (p.vectors == 0) return;
  switch (p.world) {
    case 2:
      one_shot_all_reduce_kernel<T, 2><<<kAllReduceBlocks, kAllReduceThreads, 0, s>>>(p);
      break;
    case 4:
      one_shot_all_reduce_kernel<T, 4><<<kAllReduceBlocks, kAllReduceThreads, 0, s>>>(p);
      break;
    case 8:
      one_shot_all_reduce_kernel<T, 8><<<kAllReduceBlocks, kAllReduceThreads, 0, s>>>(p);
      break;
    default:
      one_shot_all_reduce_kernel<T, 0><<<kAllReduceBlocks, kAllReduceThreads, 0, s>>>(p);
  }
  PAGODA_LAUNCH_CHECK("one_shot_all_reduce_kernel");
}

}  // namespace pagoda::kernels
