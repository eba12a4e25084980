// Element-wise and row-wise transformer operations on the CPU, float32 throughout.
#pragma once
#include <cstdint>
#include <vector>

namespace pagoda::cpu {

// out[t, :] = weight[t] * x[t, :] / sqrt(mean(x[t, :]^2) + eps) for t < rows; row length n,
// strides ld_x / ld_out. The mean accumulates in double.
void rms_norm(const float* x, int32_t rows, int32_t n, int32_t ld_x, const float* weight, float eps, float* out,
              int32_t ld_out);

// Per-head RMSNorm (Qwen3 q/k norm) in place: x [rows, heads * head_dim] inside rows of stride ld.
void head_rms_norm(float* x, int32_t rows, int32_t ld, int32_t heads, int32_t head_dim, const float* weight,
                   float eps);

// Rotary embedding, half-split (NeoX) pairs (i, i + head_dim/2), in place on `heads` heads of each row.
void rope(float* x, int32_t rows, int32_t ld, int32_t heads, int32_t head_dim, const int32_t* positions,
          const std::vector<float>& inv_freq);

// out[t, i] = silu(gu[t, i]) * gu[t, n + i]  (gate then up in one row of 2n)
void silu_and_mul(const float* gu, int32_t rows, int32_t n, float* out);

// x[i] += y[i]
void add_inplace(float* x, const float* y, int64_t n);

}  // namespace pagoda::cpu
