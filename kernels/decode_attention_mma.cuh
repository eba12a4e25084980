// Paged decode attention on tensor cores, used for GQA groups of 4 to 16 query heads per KV head
// (Qwen3-8B, Llama 3 8B/70B, Qwen3-32B); it serves any group of 1 to 16. The CUDA-core kernel
// (decode_attention.cuh) does 2 x group FMAs per cached element and stops being memory-bound from a group
// of 4 (2.2-2.5 TB/s against 4 for a group of 2). Here the group's query heads are the M dimension of
// mma.sync m16n8k16 (padded to 16 rows), so the arithmetic per byte no longer matters: 3.6-3.7 TB/s for a
// group of 4. For a group of 2 the CUDA-core kernel stays faster (4.0 against 3.7 TB/s).
//
// CTA = (decode entry, KV head, split); 4 warps. The CTA's token range is cut into 16-token chunks dealt
// round-robin to the warps; each warp streams its chunks through its own two-stage cp.async buffer in
// shared memory and keeps its own online-softmax state (m, l per row; O in mma accumulators), exactly the
// fragment code of the prefill kernel with 16 query rows. At the end the 4 warps' states are merged
// through shared memory and written as the CUDA-core kernel writes them (bf16 output, or split-K partials
// for decode_attention_reduce_kernel). Block-table entries are staged in shared memory, a window at a time.
#pragma once
#include "decode_attention.cuh"
#include "mma.cuh"

namespace pagoda::kernels {

constexpr int kMmaDecodeWarps = 4;
constexpr int kMmaDecodeKeys = 16;      // keys per chunk (one mma k-step of P·V)
constexpr int kMmaDecodeRows = 16;      // query rows of the mma tile: the group's heads, zero-padded
constexpr int kMmaDecodeWindow = 512;   // block-table entries staged at a time

// Shared memory: per warp two stages of a 16-key K and V chunk, then the query tile.
template <int D>
__host__ __device__ constexpr int decode_mma_kv_elems() {
  return kMmaDecodeWarps * 2 * 2 * kMmaDecodeKeys * (D + 8);
}
template <int D>
__host__ __device__ constexpr int decode_mma_smem_bytes() {
  return (decode_mma_kv_elems<D>() + kMmaDecodeRows * (D + 8)) * static_cast<int>(sizeof(bf16));
}

// Grid: (Hkv, E, splits). Block: 128. Dynamic shared memory: decode_mma_smem_bytes<D>(). The CTA serves
// the G = Hq / Hkv query heads of its KV head, 1 <= G <= 16.
template <int D>
__global__ void __launch_bounds__(128) decode_attention_mma_kernel(DecodeAttentionParams p) {
  decode_timeline_mark(p, kMarkStart);
  allow_next_kernel_to_start();  // the next GEMM may start loading its weights
  constexpr int LD = D + 8;       // padded row (bank spread for ldmatrix), as the prefill kernel
  constexpr int CHUNKS = D / 8;   // 16-byte pieces per row
  constexpr int STAGE = 2 * kMmaDecodeKeys * LD;  // K then V of one chunk, bf16 elements
  // Per warp: 2 stages. Reused at the end for the warps' states (floats): 4 x 16 x (D + 2).
  static_assert(decode_mma_kv_elems<D>() * 2 >= kMmaDecodeWarps * kMmaDecodeRows * (D + 2) * 4, "merge area fits the K/V buffers");
  extern __shared__ __align__(16) unsigned char smem_raw[];  // decode_mma_smem_bytes<D>()
  bf16* kv = reinterpret_cast<bf16*>(smem_raw);              // [4 warps][2 stages][K, V][16][LD]
  bf16* Qs = kv + decode_mma_kv_elems<D>();                   // [16][LD]
  __shared__ int32_t tbl[kMmaDecodeWindow];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, t4 = lane & 3;
  const int G = p.Hq / p.Hkv;             // query heads of this CTA (the whole group)
  const int h0 = blockIdx.x * G, kvh = blockIdx.x;
  const int e = blockIdx.y, split = blockIdx.z;
  const int seq = p.entry_seq ? p.entry_seq[e] : e;
  const int row = p.entry_row ? p.entry_row[e] : e;
  const int ctx = p.context_lens[seq];
  const int chunk_len = (ctx + p.splits - 1) / p.splits;
  const int start = split * chunk_len, end = min(ctx, start + chunk_len);
  const int32_t* table = p.block_tables + static_cast<int64_t>(seq) * p.max_blocks;
  const int bs = p.block_size;
  constexpr float LOG2E = 1.4426950408889634f;
  const float sl2 = p.scale * LOG2E;
  const int first_block = start / bs;
  const int end_block = end > start ? (end - 1) / bs + 1 : first_block;
  bf16* my_kv = kv + warp * 2 * STAGE;

  // Chunk c of a window → stage buffer `st` of this warp (tokens past w_end zero-filled).
  const auto issue = [&](int c, int st, int w_start, int w_end, int base_off) {
    bf16* Ks = my_kv + st * STAGE;
    bf16* Vs = Ks + kMmaDecodeKeys * LD;
#pragma unroll
    for (int i = lane; i < kMmaDecodeKeys * CHUNKS; i += 32) {
      const int r = i / CHUNKS, col = (i % CHUNKS) * 8;
      const int tok = w_start + c * kMmaDecodeKeys + r;
      const bool valid = tok < w_end;
      const int rel = valid ? tok - base_off : 0;
      const int64_t off = valid ? ((static_cast<int64_t>(tbl[rel / bs]) * p.Hkv + kvh) * bs + rel % bs) * D + col : 0;
      cp_async16(Ks + r * LD + col, p.k_cache + off, valid);
      cp_async16(Vs + r * LD + col, p.v_cache + off, valid);
    }
  };
  // Before waiting for the previous kernel: the first block-table window (written by the host) and
  // this warp's first chunk when it does not reach the newest token — the previous kernel writes only q
  // and the newest token's K/V row, cached rows are older. The loads are then in flight across the wait.
  for (int i = tid; i < min(kMmaDecodeWindow, end_block - first_block); i += 128) tbl[i] = table[first_block + i];
  __syncthreads();
  const int first_w_end = min(end, (first_block + kMmaDecodeWindow) * bs);
  bool prefetched = start + warp * kMmaDecodeKeys < first_w_end && min(start + (warp + 1) * kMmaDecodeKeys, first_w_end) <= ctx - 1;
  if (prefetched) issue(warp, 0, start, first_w_end, first_block * bs);
  cp_async_commit();
  wait_for_previous_kernel();
  decode_timeline_mark(p, kMarkWaited);

  // The group's query rows → shared memory (rows past G are zero), then A fragments in every warp.
  for (int i = tid; i < kMmaDecodeRows * CHUNKS; i += 128) {
    const int r = i / CHUNKS, c = (i % CHUNKS) * 8;
    const bool valid = r < G;
    cp_async16(Qs + r * LD + c, p.q + static_cast<int64_t>(row) * p.q_stride + (h0 + (valid ? r : 0)) * D + c, valid);
  }
  cp_async_commit();
  cp_async_wait_all();
  __syncthreads();
  uint32_t qf[D / 16][4];
#pragma unroll
  for (int ks = 0; ks < D / 16; ks++) ldmatrix_x4(qf[ks], Qs + ((lane % 8) + 8 * ((lane / 8) % 2)) * LD + ks * 16 + 8 * (lane / 16));

  // This thread's rows of the tile: g and g + 8.
  float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.0f, l_b = 0.0f;
  float oacc[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; n++) oacc[n][0] = oacc[n][1] = oacc[n][2] = oacc[n][3] = 0.0f;

  for (int wb = first_block; wb < end_block; wb += kMmaDecodeWindow) {
    const int nb = min(kMmaDecodeWindow, end_block - wb);
    if (wb != first_block) {
      __syncthreads();  // every warp is done with the previous window's table
      for (int i = tid; i < nb; i += 128) tbl[i] = table[wb + i];
      __syncthreads();
    }
    const int w_start = max(start, wb * bs), w_end = min(end, (wb + nb) * bs), base_off = wb * bs;
    const int chunks = (w_end - w_start + kMmaDecodeKeys - 1) / kMmaDecodeKeys;
    int st = 0;
    if (warp < chunks && !prefetched) issue(warp, 0, w_start, w_end, base_off);
    prefetched = false;
    cp_async_commit();
    for (int c = warp; c < chunks; c += kMmaDecodeWarps, st ^= 1) {
      if (c + kMmaDecodeWarps < chunks) issue(c + kMmaDecodeWarps, st ^ 1, w_start, w_end, base_off);
      cp_async_commit();  // possibly empty: keeps "all but the newest group" meaning the current chunk
      cp_async_wait<1>();
      __syncwarp();
      const bf16* Ks = my_kv + st * STAGE;
      const bf16* Vs = Ks + kMmaDecodeKeys * LD;

      // S = Q K^T: 16 rows x 16 keys (two n-tiles of 8 keys).
      float s[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
#pragma unroll
      for (int ks = 0; ks < D / 16; ks++) {
        uint32_t b[4];
        ldmatrix_x4(b, Ks + ((lane % 8) + 8 * (lane / 16)) * LD + ks * 16 + 8 * ((lane / 8) % 2));
        mma_bf16_16816(s[0], qf[ks], b[0], b[1]);
        mma_bf16_16816(s[1], qf[ks], b[2], b[3]);
      }
      // Mask tokens past the range, scale into the log2 domain, row maxima over the 4 threads of a row.
      const int key0 = w_start + c * kMmaDecodeKeys;
      float mx_a = m_a, mx_b = m_b;
#pragma unroll
      for (int n = 0; n < 2; n++)
#pragma unroll
        for (int j = 0; j < 2; j++) {
          const bool valid = key0 + n * 8 + 2 * t4 + j < w_end;
          s[n][j] = valid ? s[n][j] * sl2 : -INFINITY;
          s[n][2 + j] = valid ? s[n][2 + j] * sl2 : -INFINITY;
          mx_a = fmaxf(mx_a, s[n][j]);
          mx_b = fmaxf(mx_b, s[n][2 + j]);
        }
      quad_max(mx_a, mx_b);
      // Every chunk holds at least one valid key, so the maxima are finite from the first chunk on.
      const float corr_a = exp2f(m_a - mx_a), corr_b = exp2f(m_b - mx_b);  // m = -inf first: 0
      m_a = mx_a;
      m_b = mx_b;
      l_a *= corr_a;
      l_b *= corr_b;
      scale_rows(oacc, corr_a, corr_b);
      // P = exp2(S - m) as one bf16 A fragment (16 keys), then O += P V.
      uint32_t pf[4];
#pragma unroll
      for (int n = 0; n < 2; n++) {
        const float e0 = exp2f(s[n][0] - m_a), e1 = exp2f(s[n][1] - m_a);  // masked: exp2(-inf) = 0
        const float e2 = exp2f(s[n][2] - m_b), e3 = exp2f(s[n][3] - m_b);
        l_a += e0 + e1;
        l_b += e2 + e3;
        pf[n * 2] = pack_bf16x2(e0, e1);
        pf[n * 2 + 1] = pack_bf16x2(e2, e3);
      }
#pragma unroll
      for (int dp = 0; dp < D / 16; dp++) {
        uint32_t b[4];
        ldmatrix_x4_trans(b, Vs + ((lane % 8) + 8 * ((lane / 8) % 2)) * LD + dp * 16 + 8 * (lane / 16));
        mma_bf16_16816(oacc[2 * dp], pf, b[0], b[1]);
        mma_bf16_16816(oacc[2 * dp + 1], pf, b[2], b[3]);
      }
      __syncwarp();  // the stage is refilled next iteration
    }
    cp_async_wait_all();
  }

  // Row sums over the 4 threads of a row; then the warps' states into shared memory:
  // [warp][row][0] = m, [1] = l, [2 ..] = O (unnormalised).
  decode_timeline_mark(p, kMarkLoopDone);
  quad_sum(l_a, l_b);
  __syncthreads();  // every warp is done with its K/V buffers
  float* state = reinterpret_cast<float*>(kv);
  const auto at = [&](int w, int r) { return state + (w * kMmaDecodeRows + r) * (D + 2); };
  if (t4 == 0) {
    at(warp, g)[0] = m_a;
    at(warp, g)[1] = l_a;
    at(warp, g + 8)[0] = m_b;
    at(warp, g + 8)[1] = l_b;
  }
#pragma unroll
  for (int n = 0; n < D / 8; n++) {
    const int col = 2 + n * 8 + 2 * t4;
    at(warp, g)[col] = oacc[n][0];
    at(warp, g)[col + 1] = oacc[n][1];
    at(warp, g + 8)[col] = oacc[n][2];
    at(warp, g + 8)[col + 1] = oacc[n][3];
  }
  __syncthreads();

  // Merge the warps per (head, dim) and write as the CUDA-core kernel does.
  for (int i = tid; i < G * D; i += 128) {
    const int r = i / D, d = i % D;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < kMmaDecodeWarps; w++) mx = fmaxf(mx, at(w, r)[0]);
    float l = 0.0f, o = 0.0f;
#pragma unroll
    for (int w = 0; w < kMmaDecodeWarps; w++) {
      const float mw = at(w, r)[0];
      const float f = mw == -INFINITY ? 0.0f : exp2f(mw - mx);  // a warp that saw no token adds nothing
      l += at(w, r)[1] * f;
      o += at(w, r)[2 + d] * f;
    }
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    const int h = h0 + r;
    const int64_t slot = (static_cast<int64_t>(e) * p.Hq + h) * p.splits + split;
    bf16* dst = p.splits == 1 ? p.out + static_cast<int64_t>(row) * p.out_stride + h * D : p.partial_acc + slot * D;
    dst[d] = __float2bfloat16(o * inv);
    if (p.splits > 1 && d == 0) {
      p.partial_ml[slot * 2] = mx;
      p.partial_ml[slot * 2 + 1] = l;
    }
  }
  // Fused split-K merge by the group's last CTA; its scratch is the K/V area again.
  static_assert(decode_mma_kv_elems<D>() * 2 >= decode_merge_scratch_floats(kMmaDecodeRows, 128) * 4, "merge scratch fits the K/V buffers");
  decode_timeline_mark(p, kMarkWritten);
  if (p.splits > 1 && p.split_done != nullptr && arrive_last_split(decode_group_counter(p, e, blockIdx.x, gridDim.x), p.splits)) {
    decode_timeline_mark(p, kMarkMerge);
    merge_split_partials<D>(p, e, row, h0, G, reinterpret_cast<float*>(kv));
  }
  decode_timeline_mark(p, kMarkDone);
  decode_timeline_mark(p, kMarkSm);
}

// The kernel's shared memory is above the 48 KiB default: allowed once per device.
template <int D>
void allow_decode_mma_smem() {
  static std::atomic<uint64_t> configured_devices{0};
  allow_dynamic_smem(decode_attention_mma_kernel<D>, decode_mma_smem_bytes<D>(), configured_devices);
}

// Whether the tensor-core kernel serves this group size.
inline bool decode_mma_supports(int group) { return group >= 1 && group <= kMmaDecodeRows; }

// CTAs of the tensor-core kernel resident per SM (shared memory bounds it), for the split heuristic.
template <int D>
int decode_mma_resident_ctas_d() {
  allow_decode_mma_smem<D>();
  int n = 0;
  PAGODA_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, decode_attention_mma_kernel<D>, 128, decode_mma_smem_bytes<D>()));
  return n > 0 ? n : 1;
}
inline int decode_mma_resident_ctas(int head_dim) { return head_dim == 64 ? decode_mma_resident_ctas_d<64>() : decode_mma_resident_ctas_d<128>(); }

template <int D>
void launch_decode_attention_mma_d(const DecodeAttentionParams& p, cudaStream_t s) {
  allow_decode_mma_smem<D>();
  launch_overlapping(p.overlap_previous, decode_attention_mma_kernel<D>, dim3(p.Hkv, p.E, p.splits), dim3(128), decode_mma_smem_bytes<D>(), s, p);
  launch_decode_merge<D>(p, s);
}

// The tensor-core kernel and, with splits, the merge pass.
inline void launch_decode_attention_mma(const DecodeAttentionParams& p, int head_dim, cudaStream_t s) {
  if (p.E == 0) return;
  if (p.Hq % p.Hkv != 0 || !decode_mma_supports(p.Hq / p.Hkv))
    throw std::runtime_error("decode_attention_mma: needs 1 to 16 query heads per KV head, got " + std::to_string(p.Hq) + "/" +
                             std::to_string(p.Hkv));
  if (p.splits < 1 || p.splits > kDecodeMaxSplits) throw std::runtime_error("decode_attention_mma: splits out of range");
  switch (head_dim) {
    case 64:
      launch_decode_attention_mma_d<64>(p, s);
      break;
    case 128:
      launch_decode_attention_mma_d<128>(p, s);
      break;
    default:
      throw std::runtime_error("decode_attention_mma: unsupported head_dim: " + std::to_string(head_dim) + " (supported: 64, 128)");
  }
}

}  // namespace pagoda::kernels
