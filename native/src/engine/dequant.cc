// Block formats follow the GGUF specification (ggml's quantization types):
//   Q8_0: {f16 d; int8 q[32]}                       x = d*q
//   Q4_0: {f16 d; u8 q[16]}                         x[j] = d*(lo(q[j])-8), x[j+16] = d*(hi(q[j])-8)
//   Q4_1: {f16 d; f16 m; u8 q[16]}                  x[j] = d*lo(q[j])+m,   x[j+16] = d*hi(q[j])+m
//   Q6_K: {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d} per 256 elements, 6-bit values minus 32,
//         one int8 scale per 16 elements.
#include "engine/dequant.h"

#include <cstring>

#include "engine/half.h"

namespace pagoda {
namespace {

uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

void decode_q8_0(const uint8_t* src, int64_t nblocks, float* dst) {
  for (int64_t b = 0; b < nblocks; b++, src += 34, dst += 32) {
    float d = half_to_float(load_u16(src));
    const int8_t* q = reinterpret_cast<const int8_t*>(src + 2);
    for (int j = 0; j < 32; j++) dst[j] = d * static_cast<float>(q[j]);
  }
}

void decode_q4_0(const uint8_t* src, int64_t nblocks, float* dst) {
  for (int64_t b = 0; b < nblocks; b++, src += 18, dst += 32) {
    float d = half_to_float(load_u16(src));
    const uint8_t* q = src + 2;
    for (int j = 0; j < 16; j++) {
      dst[j] = d * static_cast<float>((q[j] & 0x0f) - 8);
      dst[j + 16] = d * static_cast<float>((q[j] >> 4) - 8);
    }
  }
}

void decode_q4_1(const uint8_t* src, int64_t nblocks, float* dst) {
  for (int64_t b = 0; b < nblocks; b++, src += 20, dst += 32) {
    float d = half_to_float(load_u16(src));
    float m = half_to_float(load_u16(src + 2));
    const uint8_t* q = src + 4;
    for (int j = 0; j < 16; j++) {
      dst[j] = d * static_cast<float>(q[j] & 0x0f) + m;
      dst[j + 16] = d * static_cast<float>(q[j] >> 4) + m;
    }
  }
}

void decode_q6_k(const uint8_t* src, int64_t nblocks, float* dst) {
  for (int64_t b = 0; b < nblocks; b++, src += 210) {
    const uint8_t* ql = src;
    const uint8_t* qh = src + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(src + 192);
    float d = half_to_float(load_u16(src + 208));
    for (int half = 0; half < 2; half++) {  // two groups of 128 elements
      for (int l = 0; l < 32; l++) {
        int is = l / 16;
        int q1 = ((ql[l] & 0x0f) | ((qh[l] >> 0) & 3) << 4) - 32;
        int q2 = ((ql[l + 32] & 0x0f) | ((qh[l] >> 2) & 3) << 4) - 32;
        int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
        int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
        dst[l] = d * static_cast<float>(sc[is]) * static_cast<float>(q1);
        dst[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
        dst[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
        dst[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
      }
      dst += 128;
      ql += 64;
      qh += 32;
      sc += 8;
    }
  }
}

}  // namespace

void decode_to_f32(DType t, const uint8_t* src, int64_t n, float* dst) {
  switch (t) {
    case DType::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case DType::F16:
      for (int64_t i = 0; i < n; i++) dst[i] = half_to_float(load_u16(src + 2 * i));
      return;
    case DType::BF16:
      for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_float(load_u16(src + 2 * i));
      return;
    case DType::Q8_0: decode_q8_0(src, n / 32, dst); return;
    case DType::Q4_0: decode_q4_0(src, n / 32, dst); return;
    case DType::Q4_1: decode_q4_1(src, n / 32, dst); return;
    case DType::Q6_K: decode_q6_k(src, n / 256, dst); return;
  }
}

}  // namespace pagoda
