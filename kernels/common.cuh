// Shared device helpers for Pagoda's kernels: bf16 vectors, warp and block reductions, error checks.
// Framework-free: only the CUDA runtime and cuda_bf16.h.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <utility>

namespace pagoda::kernels {

using bf16 = __nv_bfloat16;

// Throws std::runtime_error with the call site; launchers check every launch with this.
inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}
#define PAGODA_CUDA_CHECK(call) ::pagoda::kernels::check((call), #call)
#define PAGODA_LAUNCH_CHECK(name) ::pagoda::kernels::check(cudaGetLastError(), name)

// 8 bf16 values = one 16-byte load or store.
struct alignas(16) Bf16x8 {
  __nv_bfloat162 h[4];
};

__device__ __forceinline__ void unpack8(const Bf16x8& v, float (&out)[8]) {
#pragma unroll
  for (int i = 0; i < 4; i++) {
    float2 f = __bfloat1622float2(v.h[i]);
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}

__device__ __forceinline__ Bf16x8 pack8(const float (&in)[8]) {
  Bf16x8 v;
#pragma unroll
  for (int i = 0; i < 4; i++) v.h[i] = __floats2bfloat162_rn(in[2 * i], in[2 * i + 1]);
  return v;
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}

// Sum over a block of up to 1024 threads; every thread gets the result. `scratch`: 32 floats of shared memory.
__device__ __forceinline__ float block_sum(float x, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  x = warp_sum(x);
  __syncthreads();
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  x = lane < warps ? scratch[lane] : 0.0f;
  return warp_sum(x);
}

__device__ __forceinline__ float block_max(float x, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  x = warp_max(x);
  __syncthreads();
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  x = lane < warps ? scratch[lane] : -INFINITY;
  return warp_max(x);
}

// The GPU's global timer in nanoseconds (one clock for every SM) and the SM a thread runs on: for
// kernel timelines (bench_kernels --timeline).
__device__ __forceinline__ uint64_t global_timer_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
__device__ __forceinline__ uint32_t sm_id() {
  uint32_t s;
  asm volatile("mov.u32 %0, %%smid;" : "=r"(s));
  return s;
}

inline int ceil_div(int a, int b) { return (a + b - 1) / b; }

// Split work merged by its last CTA (decode attention's split-K, token selection's split rows): a CTA
// whose partials are written counts itself in at `counter`; the last of the `splits` CTAs of its group
// gets true, sees every partial, merges them and so saves a separate merge kernel. It re-arms the
// counter for the next launch. Every thread of the CTA calls.
__device__ __forceinline__ bool arrive_last_split(int32_t* counter, int splits) {
  __shared__ int last;
  __syncthreads();  // every thread's partials are stored before thread 0 releases them
  if (threadIdx.x == 0) {
    int32_t before;
    // release: this CTA's partials (ordered before it by the barrier) are visible to whoever acquires the
    // counter after it; acquire: the last arrival sees every earlier CTA's partials (its other threads
    // through the barrier below)
    asm volatile("atom.acq_rel.gpu.global.add.s32 %0, [%1], 1;" : "=r"(before) : "l"(counter) : "memory");
    last = before == splits - 1;
    if (last) *counter = 0;  // every CTA of the group has arrived: nothing else touches it in this launch
  }
  __syncthreads();
  return last;
}

// Programmatic dependent launch (Hopper). A kernel launched with launch_overlapping() may start while the
// previous kernel in its stream still runs, once every CTA of that kernel has called
// allow_next_kernel_to_start() (or exited). Until it calls wait_for_previous_kernel() it may read only
// what the previous kernel does not write (a GEMM's weights); the wait returns when the previous kernel
// has finished and its writes are visible. Without the launch attribute both are no-ops, so a kernel can
// call them whichever way it was launched.
__device__ __forceinline__ void allow_next_kernel_to_start() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void wait_for_previous_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Launches kernel<<<grid, block, smem, stream>>>(args...), allowed to overlap the previous kernel's tail
// when `overlap` (the kernel must call wait_for_previous_kernel() before reading its inputs).
template <typename... Params, typename... Args>
void launch_overlapping(bool overlap, void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                        Args&&... args) {
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = overlap ? &attr : nullptr;
  cfg.numAttrs = overlap ? 1 : 0;
  PAGODA_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

// Lets `kernel` use `bytes` (> 48 KiB) of dynamic shared memory on the current device. The attribute is
// per function and per device: `configured` (one static per kernel instantiation) remembers the devices
// already set, since tensor parallelism launches from one thread per GPU.
template <typename Kernel>
inline void allow_dynamic_smem(Kernel kernel, int bytes, std::atomic<uint64_t>& configured) {
  int device = 0;
  PAGODA_CUDA_CHECK(cudaGetDevice(&device));
  const uint64_t bit = uint64_t{1} << (device & 63);
  if ((configured.load(std::memory_order_acquire) & bit) != 0) return;
  PAGODA_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  configured.fetch_or(bit, std::memory_order_release);
}

}  // namespace pagoda::kernels
