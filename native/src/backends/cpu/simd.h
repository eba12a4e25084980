// 16 float32 lanes, as one AVX-512 register, two AVX2 registers, or a plain array. Every operation
// is lane-wise and `fma` is fused in all three, so a result does not depend on which one was built.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "engine/half.h"

namespace pagoda::cpu {

#if defined(__AVX512F__)
struct F32x16 {
  __m512 v;
  static F32x16 zero() { return {_mm512_setzero_ps()}; }
  static F32x16 broadcast(float x) { return {_mm512_set1_ps(x)}; }
  static F32x16 load(const float* p) { return {_mm512_loadu_ps(p)}; }
  static F32x16 load(const uint16_t* p, bool bf16) {
    __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    if (bf16) return {_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))};
    return {_mm512_cvtph_ps(h)};
  }
  void store(float* p) const { _mm512_storeu_ps(p, v); }
  friend F32x16 fma(F32x16 a, F32x16 b, F32x16 c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
  friend F32x16 operator+(F32x16 a, F32x16 b) { return {_mm512_add_ps(a.v, b.v)}; }
  friend F32x16 operator*(F32x16 a, F32x16 b) { return {_mm512_mul_ps(a.v, b.v)}; }
};
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
struct F32x16 {
  __m256 lo, hi;
  static F32x16 zero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
  static F32x16 broadcast(float x) { return {_mm256_set1_ps(x), _mm256_set1_ps(x)}; }
  static F32x16 load(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
  static F32x16 load(const uint16_t* p, bool bf16) {
    __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8));
    if (bf16)
      return {_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(a), 16)),
              _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(b), 16))};
    return {_mm256_cvtph_ps(a), _mm256_cvtph_ps(b)};
  }
  void store(float* p) const {
    _mm256_storeu_ps(p, lo);
    _mm256_storeu_ps(p + 8, hi);
  }
  friend F32x16 fma(F32x16 a, F32x16 b, F32x16 c) {
    return {_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)};
  }
  friend F32x16 operator+(F32x16 a, F32x16 b) { return {_mm256_add_ps(a.lo, b.lo), _mm256_add_ps(a.hi, b.hi)}; }
  friend F32x16 operator*(F32x16 a, F32x16 b) { return {_mm256_mul_ps(a.lo, b.lo), _mm256_mul_ps(a.hi, b.hi)}; }
};
#else
struct F32x16 {
  float v[16];
  static F32x16 zero() { return broadcast(0.0f); }
  static F32x16 broadcast(float x) {
    F32x16 r;
    for (float& e : r.v) e = x;
    return r;
  }
  static F32x16 load(const float* p) {
    F32x16 r;
    std::memcpy(r.v, p, sizeof r.v);
    return r;
  }
  static F32x16 load(const uint16_t* p, bool bf16) {
    F32x16 r;
    for (int i = 0; i < 16; i++) r.v[i] = bf16 ? bf16_to_float(p[i]) : half_to_float(p[i]);
    return r;
  }
  void store(float* p) const { std::memcpy(p, v, sizeof v); }
  friend F32x16 fma(F32x16 a, F32x16 b, F32x16 c) {
    F32x16 r;
    for (int i = 0; i < 16; i++) r.v[i] = std::fma(a.v[i], b.v[i], c.v[i]);
    return r;
  }
  friend F32x16 operator+(F32x16 a, F32x16 b) {
    F32x16 r;
    for (int i = 0; i < 16; i++) r.v[i] = a.v[i] + b.v[i];
    return r;
  }
  friend F32x16 operator*(F32x16 a, F32x16 b) {
    F32x16 r;
    for (int i = 0; i < 16; i++) r.v[i] = a.v[i] * b.v[i];
    return r;
  }
};
#endif

// Sum of the 16 lanes in a fixed order (pairwise halving), the same in every build.
inline float reduce_add(F32x16 a) {
  float t[16];
  a.store(t);
  for (int w = 8; w >= 1; w /= 2)
    for (int i = 0; i < w; i++) t[i] = t[i] + t[i + w];
  return t[0];
}

}  // namespace pagoda::cpu
