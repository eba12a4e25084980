// Paged prefill attention on tensor cores (FlashAttention-2 style): query tiles of 64 rows attend,
// causally, to the sequence's cached keys — earlier chunks and prefix-cache hits included, since a
// chunk's queries sit at positions context_len - query_len ... context_len - 1.
//
// CTA = (one 64-row query tile of one sequence, one query head); 4 warps x 16 rows. K/V tiles of 64
// tokens are gathered from the paged cache by the block table into shared memory (cp.async, zero-fill
// past the context); S = Q K^T and O += P V run on mma.sync m16n8k16 with f32 accumulators; softmax
// is online, in the log2 domain.
#pragma once
#include <atomic>

#include "common.cuh"
#include "mma.cuh"

namespace pagoda::kernels {

struct PrefillAttentionParams {
  const bf16* q;                // [T, Hq, D] row stride q_stride elements
  const bf16* k_cache;          // [num_blocks, Hkv, block_size, D]
  const bf16* v_cache;          // [num_blocks, Hkv, block_size, D]
  const int32_t* block_tables;  // [S, max_blocks]
  const int32_t* context_lens;  // [S] tokens in the cache after this step's
  const int32_t* query_start;   // [S + 1] first token row of each sequence in q/out
  const int32_t* tile_seq;      // [num_tiles] sequence of each query tile
  const int32_t* tile_row0;     // [num_tiles] first query row of the tile, relative to its sequence
  bf16* out;                    // [T, Hq, D] row stride out_stride elements
  int num_tiles, Hq, Hkv, block_size, max_blocks, q_stride, out_stride;
  float scale;
};

constexpr int kPrefillRows = 64;   // query rows per CTA
constexpr int kPrefillKeys = 64;   // keys per K/V tile

template <int D>
constexpr int prefill_smem_bytes() {
  return 3 * kPrefillRows * (D + 8) * static_cast<int>(sizeof(bf16));
}

// Grid: (num_tiles, Hq). Block: 128. Dynamic shared memory: prefill_smem_bytes<D>().
template <int D>
__global__ void __launch_bounds__(128) prefill_attention_kernel(PrefillAttentionParams p) {
  constexpr int LD = D + 8;  // padded row: 8 consecutive rows hit 8 different 16-byte bank groups
  constexpr int CHUNKS = D / 8;  // 16-byte chunks per row
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* Qs = reinterpret_cast<bf16*>(smem_raw);
  bf16* Ks = Qs + kPrefillRows * LD;
  bf16* Vs = Ks + kPrefillKeys * LD;

  const int tile = blockIdx.x, h = blockIdx.y;
  const int kvh = h / (p.Hq / p.Hkv);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, t4 = lane & 3;
  const int seq = p.tile_seq[tile], r0 = p.tile_row0[tile];
  const int qs = p.query_start[seq], qlen = p.query_start[seq + 1] - qs;
  const int ctx = p.context_lens[seq];
  const int first_pos = ctx - qlen;  // absolute position of the sequence's first query row
  const int32_t* table = p.block_tables + static_cast<int64_t>(seq) * p.max_blocks;
  constexpr float LOG2E = 1.4426950408889634f;
  const float sl2 = p.scale * LOG2E;

  // Q tile → shared memory (rows past the chunk are zero).
  for (int i = tid; i < kPrefillRows * CHUNKS; i += 128) {
    const int r = i / CHUNKS, c = (i % CHUNKS) * 8;
    const bool valid = r0 + r < qlen;
    const bf16* src = p.q + static_cast<int64_t>(qs + (valid ? r0 + r : 0)) * p.q_stride + h * D + c;
    cp_async16(Qs + r * LD + c, src, valid);
  }
  cp_async_commit();
  cp_async_wait_all();
  __syncthreads();

  // This warp's 16 query rows as A fragments, kept in registers for every K tile.
  uint32_t qf[D / 16][4];
#pragma unroll
  for (int ks = 0; ks < D / 16; ks++) {
    const int row = warp * 16 + (lane % 8) + 8 * ((lane / 8) % 2);
    const int col = ks * 16 + 8 * (lane / 16);
    ldmatrix_x4(qf[ks], Qs + row * LD + col);
  }

  // Each thread owns rows g and g + 8 of its warp's 16.
  const int row_a = warp * 16 + g, row_b = row_a + 8;
  const int pos_a = first_pos + r0 + row_a, pos_b = first_pos + r0 + row_b;
  float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.0f, l_b = 0.0f;
  float oacc[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; n++) oacc[n][0] = oacc[n][1] = oacc[n][2] = oacc[n][3] = 0.0f;

  const int last_row = min(r0 + kPrefillRows, qlen) - 1;
  const int kv_end = min(ctx, first_pos + last_row + 1);
  for (int kt = 0; kt < kv_end; kt += kPrefillKeys) {
    __syncthreads();  // the previous tile's readers are done
    for (int i = tid; i < kPrefillKeys * CHUNKS; i += 128) {
      const int r = i / CHUNKS, c = (i % CHUNKS) * 8;
      const int tok = kt + r;
      const bool valid = tok < ctx;
      const int64_t off =
          valid ? ((static_cast<int64_t>(table[tok / p.block_size]) * p.Hkv + kvh) * p.block_size + tok % p.block_size) * D + c : 0;
      cp_async16(Ks + r * LD + c, p.k_cache + off, valid);
      cp_async16(Vs + r * LD + c, p.v_cache + off, valid);
    }
    cp_async_commit();
    cp_async_wait_all();
    __syncthreads();

    // S = Q K^T for 16 rows x 64 keys: 8 n-tiles of 8 keys.
    float s[kPrefillKeys / 8][4];
#pragma unroll
    for (int n = 0; n < kPrefillKeys / 8; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < D / 16; ks++) {
#pragma unroll
      for (int np = 0; np < kPrefillKeys / 16; np++) {
        uint32_t b[4];
        const int key = np * 16 + (lane % 8) + 8 * (lane / 16);
        const int dim = ks * 16 + 8 * ((lane / 8) % 2);
        ldmatrix_x4(b, Ks + key * LD + dim);
        mma_bf16_16816(s[2 * np], qf[ks], b[0], b[1]);
        mma_bf16_16816(s[2 * np + 1], qf[ks], b[2], b[3]);
      }
    }
    // Mask (causal and past the context), scale into the log2 domain, row maxima.
    float mx_a = m_a, mx_b = m_b;
#pragma unroll
    for (int n = 0; n < kPrefillKeys / 8; n++) {
#pragma unroll
      for (int j = 0; j < 2; j++) {
        const int key = kt + n * 8 + 2 * t4 + j;
        s[n][j] = (key <= pos_a && key < ctx) ? s[n][j] * sl2 : -INFINITY;
        s[n][2 + j] = (key <= pos_b && key < ctx) ? s[n][2 + j] * sl2 : -INFINITY;
        mx_a = fmaxf(mx_a, s[n][j]);
        mx_b = fmaxf(mx_b, s[n][2 + j]);
      }
    }
    quad_max(mx_a, mx_b);
    // A row whose keys are all masked so far keeps max -inf; its weights stay 0.
    const float corr_a = mx_a == -INFINITY ? 1.0f : exp2f(m_a - mx_a);
    const float corr_b = mx_b == -INFINITY ? 1.0f : exp2f(m_b - mx_b);
    m_a = mx_a;
    m_b = mx_b;
    l_a *= corr_a;
    l_b *= corr_b;
    scale_rows(oacc, corr_a, corr_b);
    // P = exp2(S - m) as bf16 A fragments (two key n-tiles make one 16-key k-step).
    uint32_t pf[kPrefillKeys / 16][4];
#pragma unroll
    for (int n = 0; n < kPrefillKeys / 8; n++) {
      const float e0 = m_a == -INFINITY ? 0.0f : exp2f(s[n][0] - m_a);
      const float e1 = m_a == -INFINITY ? 0.0f : exp2f(s[n][1] - m_a);
      const float e2 = m_b == -INFINITY ? 0.0f : exp2f(s[n][2] - m_b);
      const float e3 = m_b == -INFINITY ? 0.0f : exp2f(s[n][3] - m_b);
      l_a += e0 + e1;
      l_b += e2 + e3;
      pf[n / 2][(n % 2) * 2] = pack_bf16x2(e0, e1);
      pf[n / 2][(n % 2) * 2 + 1] = pack_bf16x2(e2, e3);
    }
    // O += P V: V^T fragments by transposed ldmatrix from V rows.
#pragma unroll
    for (int kk = 0; kk < kPrefillKeys / 16; kk++) {
#pragma unroll
      for (int dp = 0; dp < D / 16; dp++) {
        uint32_t b[4];
        const int key = kk * 16 + (lane % 8) + 8 * ((lane / 8) % 2);
        const int dim = dp * 16 + 8 * (lane / 16);
        ldmatrix_x4_trans(b, Vs + key * LD + dim);
        mma_bf16_16816(oacc[2 * dp], pf[kk], b[0], b[1]);
        mma_bf16_16816(oacc[2 * dp + 1], pf[kk], b[2], b[3]);
      }
    }
  }

  // Row sums across the 4 threads of a row, normalise, store valid rows.
  quad_sum(l_a, l_b);
  const float inv_a = l_a > 0.0f ? 1.0f / l_a : 0.0f, inv_b = l_b > 0.0f ? 1.0f / l_b : 0.0f;
  const bool valid_a = r0 + row_a < qlen, valid_b = r0 + row_b < qlen;
  bf16* out_a = p.out + static_cast<int64_t>(qs + r0 + row_a) * p.out_stride + h * D;
  bf16* out_b = p.out + static_cast<int64_t>(qs + r0 + row_b) * p.out_stride + h * D;
#pragma unroll
  for (int n = 0; n < D / 8; n++) {
    const int col = n * 8 + 2 * t4;
    if (valid_a) *reinterpret_cast<__nv_bfloat162*>(out_a + col) = __floats2bfloat162_rn(oacc[n][0] * inv_a, oacc[n][1] * inv_a);
    if (valid_b) *reinterpret_cast<__nv_bfloat162*>(out_b + col) = __floats2bfloat162_rn(oacc[n][2] * inv_b, oacc[n][3] * inv_b);
  }
}

template <int D>
void launch_prefill_attention_d(const PrefillAttentionParams& p, cudaStream_t s) {
  constexpr int smem = prefill_smem_bytes<D>();
  static std::atomic<uint64_t> configured_devices{0};
  allow_dynamic_smem(prefill_attention_kernel<D>, smem, configured_devices);
  prefill_attention_kernel<D><<<dim3(p.num_tiles, p.Hq), 128, smem, s>>>(p);
  PAGODA_LAUNCH_CHECK("prefill_attention_kernel");
}

inline void launch_prefill_attention(const PrefillAttentionParams& p, int head_dim, cudaStream_t s) {
  if (p.num_tiles == 0) return;
  if (p.Hq % p.Hkv != 0) throw std::runtime_error("prefill_attention: query heads must be a multiple of KV heads");
  switch (head_dim) {
    case 64: launch_prefill_attention_d<64>(p, s); break;
    case 128: launch_prefill_attention_d<128>(p, s); break;
    default: throw std::runtime_error("prefill_attention: unsupported head_dim: " + std::to_string(head_dim) + " (supported: 64, 128)");
  }
}

}  // namespace pagoda::kernels
