// Linear layers on the CPU: Y[M, N] = X[M, K] · W[N, K]^T (+ bias[N]).
//
// W is packed at load into panels of 16 output rows, k-major inside a panel:
//   packed[(p * K + k) * 16 + j] = W[p * 16 + j][k]      (rows past N are zero)
// so the kernel streams a panel once and keeps 16 outputs per register. Every Y[m][n] accumulates
// X[m][k] * W[n][k] for k = 0..K-1 in order with fused multiply-adds, whatever M is and however the
// rows are blocked: a row's result never depends on the rest of the batch.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/dtype.h"

namespace pagoda::cpu {

class PackedMatrix {
 public:
  PackedMatrix() = default;
  // w: [n, k] row-major float32; stored as `store` (F32, F16 or BF16).
  PackedMatrix(const float* w, int32_t n, int32_t k, DType store);
  // Rows of several matrices with the same K stacked into one (fused q/k/v, gate/up).
  static PackedMatrix stack(const std::vector<const std::vector<float>*>& parts, int32_t k, DType store);

  int32_t rows() const { return n_; }
  int32_t cols() const { return k_; }
  DType dtype() const { return dtype_; }
  int64_t bytes() const { return static_cast<int64_t>(data_.size()); }
  std::vector<float> bias;  // [n] or empty

  // Y[m, 0..n) for m < M; x row stride ldx, y row stride ldy.
  void multiply(const float* x, int32_t m, int32_t ldx, float* y, int32_t ldy) const;

 private:
  int32_t n_ = 0, k_ = 0, panels_ = 0;
  DType dtype_ = DType::F32;
  std::vector<uint8_t> data_;
  const uint8_t* panel(int32_t p) const;
};

}  // namespace pagoda::cpu
