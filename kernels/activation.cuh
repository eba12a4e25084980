// SiLU-and-multiply: out[t, i] = silu(gu[t, i]) * gu[t, I + i], gate and up halves of one GEMM row.
#pragma once
#include "common.cuh"

namespace pagoda::kernels {

// Grid: (ceil(T * I / 8 / 256)). Block: 256. Each thread handles 8 elements (I % 8 == 0).
__global__ void silu_and_mul_kernel(const bf16* __restrict__ gu,  // [T, 2I]
                                    bf16* __restrict__ out,       // [T, I]
                                    int T, int I) {
  allow_next_kernel_to_start();  // the next GEMM may start loading its weights
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t per_row = I / 8;
  if (idx >= static_cast<int64_t>(T) * per_row) return;
  const int64_t t = idx / per_row, c = (idx % per_row) * 8;
  float g[8], u[8], r[8];
  unpack8(*reinterpret_cast<const Bf16x8*>(gu + t * 2 * I + c), g);
  unpack8(*reinterpret_cast<const Bf16x8*>(gu + t * 2 * I + I + c), u);
#pragma unroll
  for (int i = 0; i < 8; i++) r[i] = g[i] / (1.0f + __expf(-g[i])) * u[i];
  *reinterpret_cast<Bf16x8*>(out + t * I + c) = pack8(r);
}

inline void launch_silu_and_mul(const bf16* gu, bf16* out, int T, int I, cudaStream_t s) {
  if (I % 8 != 0) throw std::runtime_error("silu_and_mul: intermediate size must be a multiple of 8, got " + std::to_string(I));
  const int64_t n = static_cast<int64_t>(T) * (I / 8);
  if (n == 0) return;
  silu_and_mul_kernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, s>>>(gu, out, T, I);
  PAGODA_LAUNCH_CHECK("silu_and_mul_kernel");
}

}  // namespace pagoda::kernels
