// RMSNorm fused with the residual add, and the embedding gather that starts the residual stream.
//
//   embed:       residual[t, :] = float(table[tokens[t], :])
//   add_rmsnorm: residual[t, :] += delta[t, :] (when delta is given);
//                out[t, :] = bf16(weight * residual[t, :] / sqrt(mean(residual[t, :]^2) + eps))
// The residual stream stays float32 between layers; normalized activations are bf16 (GEMM inputs).
#pragma once
#include "common.cuh"

namespace pagoda::kernels {

// Grid: (T). Block: 256.
__global__ void embed_kernel(const int32_t* __restrict__ tokens,  // [T]
                             const bf16* __restrict__ table,      // [vocab, H]
                             float* __restrict__ residual,        // [T, H]
                             int H) {
  const int t = blockIdx.x;
  // NOTE: 64-bit row offset: vocab * H exceeds 2^31 for large models.
  const bf16* row = table + static_cast<int64_t>(tokens[t]) * H;
  float* out = residual + static_cast<int64_t>(t) * H;
  for (int i = threadIdx.x; i < H; i += blockDim.x) out[i] = __bfloat162float(row[i]);
}

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(bf16 x) { return __bfloat162float(x); }

// Grid: (T). Block: 256 (or fewer for small H). Rows are gathered through `rows` when given
// (final norm over the sampled rows only): input row rows[t], output row t. The delta (a projection's
// output) is float32 or bf16.
template <typename DeltaT>
__global__ void add_rmsnorm_kernel(float* __restrict__ residual,      // [T_all, H]
                                   const DeltaT* __restrict__ delta,  // [T_all, H] or null
                                   const bf16* __restrict__ weight,  // [H]
                                   bf16* __restrict__ out,           // [T, H]
                                   const int32_t* __restrict__ rows, // [T] or null
                                   int H, float eps) {
  allow_next_kernel_to_start();  // the next GEMM may start loading its weights
  wait_for_previous_kernel();    // launched to overlap: the delta is complete only now
  __shared__ float scratch[32];
  const int t = blockIdx.x;
  const int64_t src = rows ? rows[t] : t;
  float* x = residual + src * H;
  const DeltaT* d = delta ? delta + src * H : nullptr;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < H; i += blockDim.x) {
    float v = x[i];
    if (d) {
      v += to_float(d[i]);
      x[i] = v;
    }
    ss += v * v;
  }
  const float inv = rsqrtf(block_sum(ss, scratch) / H + eps);
  bf16* o = out + static_cast<int64_t>(t) * H;
  for (int i = threadIdx.x; i < H; i += blockDim.x) o[i] = __float2bfloat16(__bfloat162float(weight[i]) * (x[i] * inv));
}

inline void launch_embed(const int32_t* tokens, const bf16* table, float* residual, int T, int H, cudaStream_t s) {
  if (T == 0) return;
  embed_kernel<<<T, 256, 0, s>>>(tokens, table, residual, H);
  PAGODA_LAUNCH_CHECK("embed_kernel");
}

// overlap: launched to overlap the kernel before it (programmatic dependent launch): its CTAs are
// resident and waiting when that kernel ends, which saves the launch gap of a one-CTA call.
template <typename DeltaT>
void launch_add_rmsnorm(float* residual, const DeltaT* delta, const bf16* weight, bf16* out, const int32_t* rows, int T, int H,
                        float eps, cudaStream_t s, bool overlap = false) {
  if (T == 0) return;
  launch_overlapping(overlap, add_rmsnorm_kernel<DeltaT>, dim3(T), dim3(H >= 1024 ? 512 : 256), 0, s, residual, delta, weight, out,
                     rows, H, eps);
  PAGODA_LAUNCH_CHECK("add_rmsnorm_kernel");
}

}  // namespace pagoda::kernels
