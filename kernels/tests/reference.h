// CPU references for the kernels (float32 math on bf16-rounded inputs), used by check_kernels.cu.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace pagoda::reference {

inline float bf16_to_f(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t f_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// Element offset of token `t`'s row for KV head `kvh` in a paged cache [blocks, Hkv, bs, D]
// (`table`: the sequence's block table).
inline int64_t kv_row_offset(const int32_t* table, int t, int kvh, int Hkv, int bs, int D) {
  return ((static_cast<int64_t>(table[t / bs]) * Hkv + kvh) * bs + t % bs) * D;
}

// Causal attention of one query row (absolute position `pos`) over keys 0..pos of one sequence whose
// K/V live in a paged cache [blocks, Hkv, bs, D]; out[D].
inline void attention_row(const uint16_t* q, const uint16_t* kc, const uint16_t* vc, const int32_t* table, int pos, int kvh, int Hkv,
                          int bs, int D, float scale, float* out) {
  std::vector<double> s(pos + 1);
  double mx = -1e300;
  for (int j = 0; j <= pos; j++) {
    const uint16_t* k = kc + kv_row_offset(table, j, kvh, Hkv, bs, D);
    double d = 0;
    for (int i = 0; i < D; i++) d += static_cast<double>(bf16_to_f(q[i])) * bf16_to_f(k[i]);
    s[j] = d * scale;
    mx = std::fmax(mx, s[j]);
  }
  double sum = 0;
  for (int j = 0; j <= pos; j++) {
    s[j] = std::exp(s[j] - mx);
    sum += s[j];
  }
  std::vector<double> acc(D, 0.0);
  for (int j = 0; j <= pos; j++) {
    const uint16_t* v = vc + kv_row_offset(table, j, kvh, Hkv, bs, D);
    for (int i = 0; i < D; i++) acc[i] += s[j] * bf16_to_f(v[i]);
  }
  for (int i = 0; i < D; i++) out[i] = static_cast<float>(acc[i] / sum);
}

}  // namespace pagoda::reference
