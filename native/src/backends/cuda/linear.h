// Linear layers: Y[M, N] = X[M, K] · W[N, K]^T with bf16 inputs and f32 accumulation; Y is bf16 (feeding
// another kernel) or f32 (feeding the float32 residual stream or the sampler). Decode steps of one
// sequence go through Pagoda's skinny kernel (kernels/skinny_gemm.cuh), larger ones through cuBLAS.
// PAGODA_LINEAR=cublas sends every product to cuBLAS, for comparisons.
#pragma once
#include <cublas_v2.h>
#include <cuda_bf16.h>

#include <string>

#include "backends/cuda/env_choice.h"
#include "engine/errors.h"
#include "skinny_gemm.cuh"

namespace pagoda::cuda {

inline void check_cublas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw EngineError(std::string("cuBLAS error in ") + what + ": " + cublasGetStatusString(s));
}

struct Weight {
  const __nv_bfloat16* data = nullptr;  // [n, k] row-major
  int n = 0, k = 0;
};

// Rows up to which products go to the skinny kernel. It streams W at 3.3-3.7 TB/s for one row (cuBLAS:
// 3.1-3.6), but each extra row costs a pass over X per weight piece, and from 2 rows on it is not faster
// than cuBLAS on the Qwen3-8B shapes (4 rows: half cuBLAS's speed): npm run bench:kernels.
constexpr int kSkinnyDispatchRows = 1;

// Whether products of a few rows may use the skinny kernel (read once from the environment).
inline bool skinny_linear_enabled() {
  static const bool enabled = env_choice("PAGODA_LINEAR", {"auto", "cublas"}) == "auto";
  return enabled;
}

// Whether skinny GEMMs start loading their weights, and decode attention its block table, while the
// previous kernel finishes (programmatic dependent launch, kernels/common.cuh); PAGODA_PDL=0 turns it
// off, for comparisons.
inline bool overlap_launches() {
  static const bool enabled = env_choice("PAGODA_PDL", {"1", "0"}) == "1";
  return enabled;
}

// Whether an MLP's SiLU-and-mul runs in the epilogue of a skinny gate/up GEMM (kernels/skinny_gemm.cuh)
// instead of as a kernel of its own; PAGODA_FUSE_SILU=0 keeps them apart, for comparisons.
inline bool fuse_silu_enabled() {
  static const bool enabled = env_choice("PAGODA_FUSE_SILU", {"1", "0"}) == "1";
  return enabled;
}

// Whether a product of m rows goes to the skinny kernel.
inline bool skinny_dispatch(int m, const Weight& w, const __nv_bfloat16* x) {
  return m <= kSkinnyDispatchRows && skinny_linear_enabled() && kernels::skinny_gemm_supports(m, w.k, w.data, x);
}

inline cudaStream_t stream_of(cublasHandle_t h) {
  cudaStream_t s = nullptr;
  check_cublas(cublasGetStream(h, &s), "cublasGetStream");
  return s;
}

// cuBLAS is column-major: computing Y^T[N, M] = W[N, K] · X^T[K, M] reads both row-major arrays as they are.
// ldy: Y's row stride in elements (0: w.n), wider when Y is a slice of a larger output.
inline void linear(cublasHandle_t h, const __nv_bfloat16* x, int m, const Weight& w, void* y, bool y_f32, int ldy = 0) {
  if (ldy == 0) ldy = w.n;
  if (m == 0) return;
  if (skinny_dispatch(m, w, x)) {
    cudaStream_t s = stream_of(h);
    const bool overlap = overlap_launches();
    if (y_f32) kernels::launch_skinny_gemm(w.data, x, static_cast<float*>(y), m, w.n, w.k, s, ldy, overlap);
    else kernels::launch_skinny_gemm(w.data, x, static_cast<__nv_bfloat16*>(y), m, w.n, w.k, s, ldy, overlap);
    return;
  }
  const float alpha = 1.0f, beta = 0.0f;
  check_cublas(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, w.n, m, w.k, &alpha, w.data, CUDA_R_16BF, w.k, x, CUDA_R_16BF, w.k,
                            &beta, y, y_f32 ? CUDA_R_32F : CUDA_R_16BF, ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               "cublasGemmEx");
}

// Whether an MLP's gate/up projection of m rows can end in its activation (linear_silu_mul).
inline bool gate_up_fused(int m, const Weight& gate_up, const __nv_bfloat16* x) {
  return fuse_silu_enabled() && skinny_dispatch(m, gate_up, x);
}

// An MLP's gate/up projection and activation in one skinny kernel (gate_up_fused() must hold):
// act[m, I] = silu(x · Wg^T) * (x · Wu^T) for the stacked gate/up weight [2I, k].
inline void linear_silu_mul(cublasHandle_t h, const __nv_bfloat16* x, int m, const Weight& gate_up, __nv_bfloat16* act) {
  kernels::launch_skinny_gemm_silu_mul(gate_up.data, x, act, m, gate_up.n / 2, gate_up.k, stream_of(h), overlap_launches());
}

}  // namespace pagoda::cuda
