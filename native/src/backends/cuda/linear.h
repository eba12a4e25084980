// Linear layers on cuBLAS: Y[M, N] = X[M, K] · W[N, K]^T with bf16 inputs and f32 accumulation; Y is
// bf16 (feeding another kernel) or f32 (feeding the float32 residual stream or the sampler).
#pragma once
#include <cublas_v2.h>
#include <cuda_bf16.h>

#include <string>

#include "engine/errors.h"

namespace pagoda::cuda {

inline void check_cublas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw EngineError(std::string("cuBLAS error in ") + what + ": " + cublasGetStatusString(s));
}

struct Weight {
  const __nv_bfloat16* data = nullptr;  // [n, k] row-major
  int n = 0, k = 0;
};

// cuBLAS is column-major: computing Y^T[N, M] = W[N, K] · X^T[K, M] reads both row-major arrays as they are.
inline void linear(cublasHandle_t h, const __nv_bfloat16* x, int m, const Weight& w, void* y, bool y_f32) {
  if (m == 0) return;
  const float alpha = 1.0f, beta = 0.0f;
  check_cublas(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, w.n, m, w.k, &alpha, w.data, CUDA_R_16BF, w.k, x, CUDA_R_16BF, w.k,
                            &beta, y, y_f32 ? CUDA_R_32F : CUDA_R_16BF, w.n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               "cublasGemmEx");
}

}  // namespace pagoda::cuda
