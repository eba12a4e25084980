#include "backends/cpu/matmul.h"

#include <omp.h>

#include <algorithm>
#include <cstring>

#include "backends/cpu/simd.h"
#include "backends/cpu/threads.h"
#include "engine/errors.h"
#include "engine/half.h"

namespace pagoda::cpu {
namespace {

constexpr int kPanel = 16;

template <DType T>
inline F32x16 load_panel_row(const uint8_t* panel, int32_t k) {
  if constexpr (T == DType::F32) {
    return F32x16::load(reinterpret_cast<const float*>(panel) + static_cast<int64_t>(k) * kPanel);
  } else {
    return F32x16::load(reinterpret_cast<const uint16_t*>(panel) + static_cast<int64_t>(k) * kPanel, T == DType::BF16);
  }
}

// R rows of X against P consecutive panels; y written for columns [n0, min(n0 + 16P, N)).
template <DType T, int R, int P>
void micro_kernel(const float* x, int32_t ldx, const uint8_t* panels, int64_t panel_bytes, int32_t K,
                  float* y, int32_t ldy, int32_t n0, int32_t N, const float* bias) {
  F32x16 acc[R][P];
  for (int r = 0; r < R; r++)
    for (int p = 0; p < P; p++) acc[r][p] = F32x16::zero();
  for (int32_t k = 0; k < K; k++) {
    F32x16 w[P];
    for (int p = 0; p < P; p++) w[p] = load_panel_row<T>(panels + p * panel_bytes, k);
    for (int r = 0; r < R; r++) {
      F32x16 xb = F32x16::broadcast(x[static_cast<int64_t>(r) * ldx + k]);
      for (int p = 0; p < P; p++) acc[r][p] = fma(xb, w[p], acc[r][p]);
    }
  }
  for (int r = 0; r < R; r++) {
    for (int p = 0; p < P; p++) {
      int32_t c0 = n0 + p * kPanel;
      if (c0 >= N) break;
      float tmp[kPanel];
      F32x16 out = acc[r][p];
      if (bias) {
        float b[kPanel] = {};
        std::memcpy(b, bias + c0, sizeof(float) * std::min<int32_t>(kPanel, N - c0));
        out = out + F32x16::load(b);
      }
      out.store(tmp);
      std::memcpy(y + static_cast<int64_t>(r) * ldy + c0, tmp, sizeof(float) * std::min<int32_t>(kPanel, N - c0));
    }
  }
}

#if defined(__AVX512F__)
constexpr int kRows = 6;  // 6 x 2 accumulators + 2 weights + 1 broadcast of 32 registers
#else
constexpr int kRows = 4;  // with 16 registers
#endif

template <DType T, int P>
void rows_loop(const float* x, int32_t M, int32_t ldx, const uint8_t* panels, int64_t panel_bytes, int32_t K,
               float* y, int32_t ldy, int32_t n0, int32_t N, const float* bias) {
  int32_t m = 0;
  for (; m + kRows <= M; m += kRows)
    micro_kernel<T, kRows, P>(x + static_cast<int64_t>(m) * ldx, ldx, panels, panel_bytes, K,
                              y + static_cast<int64_t>(m) * ldy, ldy, n0, N, bias);
  const float* xr = x + static_cast<int64_t>(m) * ldx;
  float* yr = y + static_cast<int64_t>(m) * ldy;
  switch (M - m) {
    case 0: break;
    case 1: micro_kernel<T, 1, P>(xr, ldx, panels, panel_bytes, K, yr, ldy, n0, N, bias); break;
    case 2: micro_kernel<T, 2, P>(xr, ldx, panels, panel_bytes, K, yr, ldy, n0, N, bias); break;
    case 3: micro_kernel<T, 3, P>(xr, ldx, panels, panel_bytes, K, yr, ldy, n0, N, bias); break;
    case 4: micro_kernel<T, 4, P>(xr, ldx, panels, panel_bytes, K, yr, ldy, n0, N, bias); break;
    default: micro_kernel<T, 5, P>(xr, ldx, panels, panel_bytes, K, yr, ldy, n0, N, bias); break;
  }
}

template <DType T>
void multiply_typed(const float* x, int32_t M, int32_t ldx, const uint8_t* data, int32_t panels, int32_t K,
                    float* y, int32_t ldy, int32_t N, const float* bias) {
  const int64_t panel_bytes = static_cast<int64_t>(K) * kPanel * (T == DType::F32 ? 4 : 2);
  // A single row is bandwidth-bound: four panels at a time give four independent FMA chains.
  // Several rows reuse each weight load: two panels keep 2R accumulators in registers.
  const int group = M == 1 ? 4 : 2;
  const int32_t groups = (panels + group - 1) / group;
#pragma omp parallel for schedule(static) num_threads(worker_threads())
  for (int32_t g = 0; g < groups; g++) {
    int32_t p0 = g * group;
    int32_t np = std::min(group, panels - p0);
    const uint8_t* base = data + p0 * panel_bytes;
    int32_t n0 = p0 * kPanel;
    if (np == 4) rows_loop<T, 4>(x, M, ldx, base, panel_bytes, K, y, ldy, n0, N, bias);
    else if (np == 2) rows_loop<T, 2>(x, M, ldx, base, panel_bytes, K, y, ldy, n0, N, bias);
    else for (int32_t p = 0; p < np; p++)
      rows_loop<T, 1>(x, M, ldx, base + p * panel_bytes, panel_bytes, K, y, ldy, n0 + p * kPanel, N, bias);
  }
}

}  // namespace

PackedMatrix::PackedMatrix(const float* w, int32_t n, int32_t k, DType store) : n_(n), k_(k), dtype_(store) {
  if (store != DType::F32 && store != DType::F16 && store != DType::BF16)
    throw EngineError(std::string("CPU weights cannot be stored as ") + dtype_name(store));
  panels_ = (n + kPanel - 1) / kPanel;
  const int elem = store == DType::F32 ? 4 : 2;
  data_.assign(static_cast<size_t>(panels_) * k * kPanel * elem, 0);
  for (int32_t row = 0; row < n; row++) {
    int32_t p = row / kPanel, j = row % kPanel;
    const float* src = w + static_cast<int64_t>(row) * k;
    for (int32_t kk = 0; kk < k; kk++) {
      int64_t at = (static_cast<int64_t>(p) * k + kk) * kPanel + j;
      if (store == DType::F32) {
        reinterpret_cast<float*>(data_.data())[at] = src[kk];
      } else {
        reinterpret_cast<uint16_t*>(data_.data())[at] =
            store == DType::F16 ? float_to_half(src[kk]) : float_to_bf16(src[kk]);
      }
    }
  }
}

PackedMatrix PackedMatrix::stack(const std::vector<const std::vector<float>*>& parts, int32_t k, DType store) {
  std::vector<float> all;
  for (const auto* p : parts) all.insert(all.end(), p->begin(), p->end());
  return PackedMatrix(all.data(), static_cast<int32_t>(all.size() / k), k, store);
}

const uint8_t* PackedMatrix::panel(int32_t p) const {
  const int elem = dtype_ == DType::F32 ? 4 : 2;
  return data_.data() + static_cast<int64_t>(p) * k_ * kPanel * elem;
}

void PackedMatrix::multiply(const float* x, int32_t m, int32_t ldx, float* y, int32_t ldy) const {
  if (m <= 0) return;
  const float* b = bias.empty() ? nullptr : bias.data();
  switch (dtype_) {
    case DType::F32: multiply_typed<DType::F32>(x, m, ldx, panel(0), panels_, k_, y, ldy, n_, b); break;
    case DType::F16: multiply_typed<DType::F16>(x, m, ldx, panel(0), panels_, k_, y, ldy, n_, b); break;
    case DType::BF16: multiply_typed<DType::BF16>(x, m, ldx, panel(0), panels_, k_, y, ldy, n_, b); break;
    default: break;
  }
}

}  // namespace pagoda::cpu
