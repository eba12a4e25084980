#include "backends/cpu/ops.h"

#include <cmath>

#include "backends/cpu/threads.h"

namespace pagoda::cpu {

void rms_norm(const float* x, int32_t rows, int32_t n, int32_t ld_x, const float* weight, float eps, float* out,
              int32_t ld_out) {
#pragma omp parallel for schedule(static) num_threads(worker_threads())
  for (int32_t t = 0; t < rows; t++) {
    const float* xr = x + static_cast<int64_t>(t) * ld_x;
    float* o = out + static_cast<int64_t>(t) * ld_out;
    double ss = 0;
    for (int32_t i = 0; i < n; i++) ss += static_cast<double>(xr[i]) * xr[i];
    float inv = 1.0f / std::sqrt(static_cast<float>(ss / n) + eps);
    for (int32_t i = 0; i < n; i++) o[i] = weight[i] * (xr[i] * inv);
  }
}

void head_rms_norm(float* x, int32_t rows, int32_t ld, int32_t heads, int32_t head_dim, const float* weight,
                   float eps) {
#pragma omp parallel for schedule(static) num_threads(worker_threads())
  for (int32_t t = 0; t < rows; t++)
    for (int32_t h = 0; h < heads; h++) {
      float* v = x + static_cast<int64_t>(t) * ld + static_cast<int64_t>(h) * head_dim;
      double ss = 0;
      for (int32_t i = 0; i < head_dim; i++) ss += static_cast<double>(v[i]) * v[i];
      float inv = 1.0f / std::sqrt(static_cast<float>(ss / head_dim) + eps);
      for (int32_t i = 0; i < head_dim; i++) v[i] = weight[i] * (v[i] * inv);
    }
}

void rope(float* x, int32_t rows, int32_t ld, int32_t heads, int32_t head_dim, const int32_t* positions,
          const std::vector<float>& inv_freq) {
  const int32_t half = head_dim / 2;
#pragma omp parallel for schedule(static) num_threads(worker_threads())
  for (int32_t t = 0; t < rows; t++) {
    float cs[512], sn[512];
    const float pos = static_cast<float>(positions[t]);
    for (int32_t i = 0; i < half; i++) {
      float angle = pos * inv_freq[i];
      cs[i] = std::cos(angle);
      sn[i] = std::sin(angle);
    }
    for (int32_t h = 0; h < heads; h++) {
      float* v = x + static_cast<int64_t>(t) * ld + static_cast<int64_t>(h) * head_dim;
      for (int32_t i = 0; i < half; i++) {
        float a = v[i], b = v[i + half];
        v[i] = a * cs[i] - b * sn[i];
        v[i + half] = b * cs[i] + a * sn[i];
      }
    }
  }
}

void silu_and_mul(const float* gu, int32_t rows, int32_t n, float* out) {
#pragma omp parallel for schedule(static) num_threads(worker_threads())
  for (int32_t t = 0; t < rows; t++) {
    const float* g = gu + static_cast<int64_t>(t) * 2 * n;
    const float* u = g + n;
    float* o = out + static_cast<int64_t>(t) * n;
    for (int32_t i = 0; i < n; i++) o[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
  }
}

void add_inplace(float* x, const float* y, int64_t n) {
#pragma omp parallel for schedule(static) num_threads(worker_threads())
  for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

}  // namespace pagoda::cpu
