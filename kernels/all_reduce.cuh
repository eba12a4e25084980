// One-shot all-reduce across the GPUs of one process, through peer-to-peer (NVLink) memory: each rank
// stages its float32 partial sums in its own buffer, tells every peer it has done so, waits until
// every peer has, then reads all staged buffers and adds them. One kernel, no host involvement, so it
// can sit inside a CUDA graph; for the small tensors of decode steps it avoids NCCL's protocol
// overhead (latency, not bandwidth, is what counts there).
//
// Every rank adds the ranks' values in the same order (0, 1, ..., world-1), so all ranks end with
// bit-identical sums.
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

struct OneShotAllReduceParams {
  float* data;                             // [n] this rank's partial sums in; the sum of all ranks' out
  float* staging[kAllReduceMaxRanks];      // [world] -> [2][capacity] each rank's staging buffer
  uint64_t* flags[kAllReduceMaxRanks];     // [world] -> [kAllReduceBlocks][world] each rank's arrival flags
  uint64_t* epochs;                        // [kAllReduceBlocks] this rank's calls so far, per block
  int64_t n;                               // elements, a multiple of 4, <= capacity
  int64_t capacity;                        // elements per half of a staging buffer
  int rank, world;
};

// The parameters of one call: rank `rank` of `world` sums data[0, n) in place through every rank's
// staging buffer and flags (indexed by rank).
inline OneShotAllReduceParams one_shot_params(float* data, int64_t n, float* const* staging, uint64_t* const* flags,
                                              uint64_t* epochs, int64_t capacity, int rank, int world) {
  OneShotAllReduceParams p{};
  p.data = data;
  for (int r = 0; r < world && r < kAllReduceMaxRanks; r++) {
    p.staging[r] = staging[r];
    p.flags[r] = flags[r];
  }
  p.epochs = epochs;
  p.n = n;
  p.capacity = capacity;
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

// Grid: (kAllReduceBlocks). Block: kAllReduceThreads (>= world). WORLD: the rank count when known at
// compile time (2, 4, 8: the peer loads of an element are all issued before the adds), 0 for any.
template <int WORLD>
__global__ void __launch_bounds__(kAllReduceThreads) one_shot_all_reduce_kernel(OneShotAllReduceParams p) {
  const int b = blockIdx.x;
  const uint64_t epoch = p.epochs[b] + 1;
  const int64_t half = static_cast<int64_t>(epoch & 1) * p.capacity;
  const int64_t n4 = p.n / 4, stride = static_cast<int64_t>(kAllReduceBlocks) * kAllReduceThreads;
  const int64_t first = static_cast<int64_t>(b) * kAllReduceThreads + threadIdx.x;

  // 1. Stage this block's share of the partial sums in this rank's buffer.
  float4* mine = reinterpret_cast<float4*>(p.staging[p.rank] + half);
  const float4* in = reinterpret_cast<const float4*>(p.data);
  for (int64_t v = first; v < n4; v += stride) mine[v] = in[v];
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
  float4* out = reinterpret_cast<float4*>(p.data);
  const auto staged = [&](int r, int64_t v) { return __ldcg(reinterpret_cast<const float4*>(p.staging[r] + half) + v); };
  const auto add = [](float4& s, const float4& x) {
    s.x += x.x;
    s.y += x.y;
    s.z += x.z;
    s.w += x.w;
  };
  for (int64_t v = first; v < n4; v += stride) {
    float4 s;
    if constexpr (WORLD > 0) {
      float4 x[WORLD];
#pragma unroll
      for (int r = 0; r < WORLD; r++) x[r] = staged(r, v);
      s = x[0];
#pragma unroll
      for (int r = 1; r < WORLD; r++) add(s, x[r]);
    } else {
      s = staged(0, v);
      for (int r = 1; r < p.world; r++) add(s, staged(r, v));
    }
    out[v] = s;
  }
  if (threadIdx.x == 0) p.epochs[b] = epoch;  // every thread read it before the first __syncthreads
}

inline void launch_one_shot_all_reduce(const OneShotAllReduceParams& p, cudaStream_t s) {
  if (p.world < 2 || p.world > kAllReduceMaxRanks)
    throw std::runtime_error("one-shot all-reduce: world size " + std::to_string(p.world) + " is not 2..8");
  if (p.n % 4 != 0 || p.n > p.capacity)
    throw std::runtime_error("one-shot all-reduce: " + std::to_string(p.n) + " elements (need a multiple of 4, at most " +
                             std::to_string(p.capacity) + ")");
  if (p.n == 0) return;
  switch (p.world) {
    case 2:
      one_shot_all_reduce_kernel<2><<<kAllReduceBlocks, kAllReduceThreads, 0, s>>>(p);
      break;
    case 4:
      one_shot_all_reduce_kernel<4><<<kAllReduceBlocks, kAllReduceThreads, 0, s>>>(p);
      break;
    case 8:
      one_shot_all_reduce_kernel<8><<<kAllReduceBlocks, kAllReduceThreads, 0, s>>>(p);
      break;
    default:
      one_shot_all_reduce_kernel<0><<<kAllReduceBlocks, kAllReduceThreads, 0, s>>>(p);
  }
  PAGODA_LAUNCH_CHECK("one_shot_all_reduce_kernel");
}

}  // namespace pagoda::kernels
