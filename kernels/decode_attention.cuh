// Paged decode attention: one new query token per sequence attends to its whole cached context.
//
// GQA-aware: a CTA serves GC query heads that share one KV head, so each cached K/V row is read once
// for all of them. Split-K: long contexts are cut into `splits` ranges processed by separate CTAs; a
// reduction pass merges their (max, sum, output) triples: max and sum in float32, the split's normalised
// output in bf16 as the final output is (what the merge reads, halved).
//
// Thread layout (D = head dim): TPT = D / DPT threads share one token, DPT dims each (16 when a CTA
// serves at most 4 query heads, else 8 to bound registers); a warp covers 32 / TPT tokens at a time;
// 4 warps. UNROLL token groups are loaded before any arithmetic, and the online softmax is updated
// once per group (one max and one rescale for UNROLL tokens), which keeps the instruction count per
// byte low enough for the loop to run at memory speed. The block-table entries of the CTA's range are
// staged in shared memory, so computing a K/V address needs no dependent global load.
#pragma once
#include <algorithm>
#include <cstdlib>
#include <string>

#include "common.cuh"

namespace pagoda::kernels {

struct DecodeAttentionParams {
  const bf16* q;                // [*, Hq, D] query rows, row stride q_stride elements
  const bf16* k_cache;          // [num_blocks, Hkv, block_size, D]
  const bf16* v_cache;          // [num_blocks, Hkv, block_size, D]
  const int32_t* block_tables;  // [num_seqs, max_blocks]
  const int32_t* context_lens;  // [num_seqs] tokens in the cache, the new one included; 0 = padding entry
  const int32_t* entry_seq;     // [E] sequence of each decode entry (null: entry e is sequence e)
  const int32_t* entry_row;     // [E] token row of q and out for each entry (null: row e)
  bf16* out;                    // [*, Hq, D] row stride out_stride elements
  bf16* partial_acc;            // [E, Hq, splits, D] (splits > 1): each split's normalised output
  float* partial_ml;            // [E, Hq, splits, 2] (splits > 1): running max (log2 domain) and sum
  int E, Hq, Hkv, block_size, max_blocks, splits, q_stride, out_stride;
  float scale;
  // [E, CTA groups (Hq / query heads per CTA)] arrival counters of the fused split-K merge
  // (decode_split_counters() ints for up to E entries), zero before the first launch; the last CTA of
  // each group re-arms its counter. null: a separate merge kernel.
  int32_t* split_done = nullptr;
  // Launched to overlap the kernel before it (programmatic dependent launch, common.cuh): the block-table
  // window is staged while that kernel finishes; q and K/V, which it writes, are read only after the wait.
  bool overlap_previous = false;
  // Optional per-CTA timeline for bench_kernels --timeline: [CTAs of the grid][kDecodeMarks], the
  // DecodeMark times in global-timer nanoseconds (kMarkSm: the SM). null: nothing recorded.
  uint64_t* timeline = nullptr;
};

// The points of a CTA's life that the timeline records (thread 0's view); kMarkMerge stays 0 in CTAs that
// do not merge the split-K partials.
enum DecodeMark { kMarkStart, kMarkWaited, kMarkLoopDone, kMarkWritten, kMarkMerge, kMarkDone, kMarkSm, kDecodeMarks };

__device__ __forceinline__ void decode_timeline_mark(const DecodeAttentionParams& p, DecodeMark mark) {
  if (p.timeline == nullptr || threadIdx.x != 0) return;
  const int64_t cta = (static_cast<int64_t>(blockIdx.z) * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
  p.timeline[cta * kDecodeMarks + mark] = mark == kMarkSm ? sm_id() : global_timer_ns();
  if (mark == kMarkStart) p.timeline[cta * kDecodeMarks + kMarkMerge] = 0;  // set again only by a merging CTA
}

constexpr int kDecodeMaxSplits = 256;  // the most splits of one launch

namespace detail {

constexpr int kDecodeWarps = 4;
constexpr int kDecodeWindow = 512;  // block-table entries staged in shared memory at a time

template <int N>
__device__ __forceinline__ void merge_state(float& m, float& l, float (&acc)[N], float m2, float l2, const float (&acc2)[N]) {
  const float mx = fmaxf(m, m2);
  const float a = (m == -INFINITY) ? 0.0f : exp2f(m - mx);
  const float b = (m2 == -INFINITY) ? 0.0f : exp2f(m2 - mx);
  l = l * a + l2 * b;
#pragma unroll
  for (int i = 0; i < N; i++) acc[i] = acc[i] * a + acc2[i] * b;
  m = mx;
}

}  // namespace detail

// Split-K merge of query heads [h0, h0 + heads) of decode entry e into out: each split's output rescaled
// to the common max and weighted by its sum. Every thread of the CTA calls (blockDim.x a multiple of 32;
// `scratch`: decode_merge_scratch_floats() of shared memory). A thread owns 8 dims of one head (one
// 16-byte bf16 load per split) and a slice of its splits, so every thread loads (2 heads of 128 dims: 4
// slices of the splits on 128 threads, 16 splits each at 64 splits).
// The loads are what it waits for: the first batch of its splits' outputs is issued before anything else
// and is in flight while the splits' (max, sum) pairs become weights in shared memory; later batches
// follow, one L2 round trip per kMergeBatch splits of a slice. Partials are read through L2
// (ld.global.cg): in the fused merge other CTAs of the running kernel wrote them, and this SM's L1 is not
// coherent.
constexpr int kMergeBatch = 16;

template <int D>
__device__ void merge_split_partials(const DecodeAttentionParams& p, int e, int row, int h0, int heads, float* scratch) {
  constexpr int Q8 = D / 8;  // threads per head row, 8 dims each
  const int S = p.splits, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, nthreads = blockDim.x;
  const int items = heads * Q8;                                 // (head, dim octet) pairs
  const int slices = items >= nthreads ? 1 : nthreads / items;  // threads per pair, each a share of the splits
  float* weight = scratch;                                      // [heads][S]: the splits' maxima, then weights
  float* sums = scratch + heads * S;                            // [heads][S]
  float* head_max = sums + heads * S;                           // [heads]
  const int64_t base = (static_cast<int64_t>(e) * p.Hq + h0) * S;  // slot of (e, h0, split 0); head h0 + i at + i * S
  const int item0 = tid % items, slice = tid / items;              // slice >= slices: no pair (idle)
  const int s_begin = slice * S / slices, s_end = (slice + 1) * S / slices;

  uint4 a[kMergeBatch];  // outputs of splits [s0, s0 + kMergeBatch) of one pair, 8 bf16 each; 0 past s1
  const auto load_batch = [&](int item, int s0, int s1) {
    const bf16* acc = p.partial_acc + (base + static_cast<int64_t>(item / Q8) * S) * D + (item % Q8) * 8;
#pragma unroll
    for (int j = 0; j < kMergeBatch; j++)
      a[j] = s0 + j < s1 ? __ldcg(reinterpret_cast<const uint4*>(acc + static_cast<int64_t>(s0 + j) * D))
                         : make_uint4(0, 0, 0, 0);  // an empty split's acc is written as 0
  };
  if (slice < slices) load_batch(item0, s_begin, s_end);

  for (int i = tid; i < heads * S; i += nthreads) {
    const float2 ms = __ldcg(reinterpret_cast<const float2*>(p.partial_ml) + base + i);
    weight[i] = ms.x;
    sums[i] = ms.y;
  }
  __syncthreads();
  for (int h = warp; h < heads; h += nthreads / 32) {
    float mx = -INFINITY;
    for (int s = lane; s < S; s += 32) mx = fmaxf(mx, weight[h * S + s]);
    mx = warp_max(mx);
    if (lane == 0) head_max[h] = mx;
  }
  __syncthreads();
  for (int i = tid; i < heads * S; i += nthreads) {
    const float ms = weight[i];
    weight[i] = ms == -INFINITY ? 0.0f : sums[i] * exp2f(ms - head_max[i / S]);  // empty split: 0
  }
  __syncthreads();

  // Weighted sum of one pair's splits [s0, s1), the first batch already loaded when `loaded`.
  float num[8], den;
  const auto accumulate = [&](int item, int s0, int s1, bool loaded) {
#pragma unroll
    for (int i = 0; i < 8; i++) num[i] = 0.0f;
    den = 0.0f;
    const float* w = weight + (item / Q8) * S;
    for (int sb = s0; sb < s1; sb += kMergeBatch) {
      if (sb != s0 || !loaded) load_batch(item, sb, s1);
#pragma unroll
      for (int j = 0; j < kMergeBatch; j++) {
        const float wj = sb + j < s1 ? w[sb + j] : 0.0f;
        float v[8];
        unpack8(*reinterpret_cast<const Bf16x8*>(&a[j]), v);
#pragma unroll
        for (int i = 0; i < 8; i++) num[i] = fmaf(wj, v[i], num[i]);
        den += wj;
      }
    }
  };
  const auto store = [&](int item) {
    const float inv = den > 0.0f ? 1.0f / den : 0.0f;
#pragma unroll
    for (int i = 0; i < 8; i++) num[i] *= inv;
    *reinterpret_cast<Bf16x8*>(p.out + static_cast<int64_t>(row) * p.out_stride + h0 * D + item * 8) = pack8(num);
  };
  if (slices == 1) {  // every pair whole in one thread (more pairs than threads: several each)
    if (slice == 0)
      for (int item = item0; item < items; item += nthreads) {
        accumulate(item, 0, S, item == item0);
        store(item);
      }
    return;
  }
  if (slice < slices) accumulate(item0, s_begin, s_end, true);
  __syncthreads();  // every thread is done with the weights: the slices' sums go where they were
  constexpr int kSum = 9;            // num 8, den
  float* mine = scratch + tid * kSum;  // [slice][pair][kSum]
  if (slice < slices) {
#pragma unroll
    for (int i = 0; i < 8; i++) mine[i] = num[i];
    mine[8] = den;
  }
  __syncthreads();
  if (tid < items) {
#pragma unroll
    for (int i = 0; i < 8; i++) num[i] = 0.0f;
    den = 0.0f;
    for (int sl = 0; sl < slices; sl++) {
      const float* t = scratch + (sl * items + tid) * kSum;
#pragma unroll
      for (int i = 0; i < 8; i++) num[i] += t[i];
      den += t[8];
    }
    store(tid);
  }
}

// Shared memory (floats) merge_split_partials needs for `heads` heads with `threads` threads.
__host__ __device__ constexpr int decode_merge_scratch_floats(int heads, int threads) {
  return 2 * heads * kDecodeMaxSplits + heads > 9 * threads ? 2 * heads * kDecodeMaxSplits + heads : 9 * threads;
}

// Ints of the fused split-K merge's arrival counters for up to `max_entries` decode entries: one per
// (entry, CTA group), at most one CTA group per query head.
inline size_t decode_split_counters(int max_entries, int q_heads) { return static_cast<size_t>(max_entries) * q_heads; }

// The arrival counter of (entry e, CTA group g) in a grid of `groups` CTA groups per entry.
__device__ __forceinline__ int32_t* decode_group_counter(const DecodeAttentionParams& p, int e, int g, int groups) {
  return p.split_done + static_cast<int64_t>(e) * groups + g;
}

template <int GC>
__host__ __device__ constexpr int decode_dims_per_thread() {
  return GC <= 4 ? 16 : 8;
}

/** Token groups loaded per softmax update: fewer when each thread holds 16 dims (registers). */
template <int GC>
__host__ __device__ constexpr int decode_default_unroll() {
  return decode_dims_per_thread<GC>() == 16 ? 2 : 4;
}

/** Light instances (GC x DPT <= 32 and GC x DPT x UNROLL <= 64: a group of 1 or 2 heads) are compiled for
 *  4 CTAs per SM (at most 128 registers a thread; 5 CTAs and 96 registers for one head): what they reach
 *  without the prefetch across the wait, which would otherwise take registers and so a CTA per SM. */
template <int GC, int UNROLL, int DPT>
__host__ __device__ constexpr bool decode_light() {
  return GC * DPT <= 32 && GC * DPT * UNROLL <= 64;
}

// Grid: (Hq / GC, E, splits). Block: 128. DPT: dims per thread (8 or 16); UNROLL: token groups per
// softmax update — defaults by GC, other values for measuring the trade-offs (bench_kernels).
// Split-K: CTA `split` reads tokens [split * chunk, (split + 1) * chunk) of its sequence, its block-table
// entries staged in shared memory a window at a time.
template <int D, int GC, int UNROLL = decode_default_unroll<GC>(), int DPT = decode_dims_per_thread<GC>()>
__global__ void __launch_bounds__(128, decode_light<GC, UNROLL, DPT>() ? (GC == 1 ? 5 : 4) : 0) decode_attention_kernel(DecodeAttentionParams p) {
  decode_timeline_mark(p, kMarkStart);
  allow_next_kernel_to_start();  // the next GEMM may start loading its weights
  using namespace detail;
  static_assert(DPT == 8 || DPT == 16, "8 or 16 dims per thread");
  constexpr int VEC = DPT / 8;             // 16-byte loads per row per thread
  constexpr int TPT = D / DPT;             // threads per token
  constexpr int TOK_PER_WARP = 32 / TPT;
  constexpr int TOK_PER_ITER = kDecodeWarps * TOK_PER_WARP;
  constexpr int TOK_PER_GROUP = TOK_PER_ITER * UNROLL;
  __shared__ int32_t tbl[kDecodeWindow];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int lane_tok = lane / TPT, dim0 = (lane % TPT) * DPT;
  const int h0 = blockIdx.x * GC;                 // first query head of this CTA
  const int kvh = h0 / (p.Hq / p.Hkv);            // its KV head
  const int e = blockIdx.y, split = blockIdx.z;
  const int seq = p.entry_seq ? p.entry_seq[e] : e;
  const int row = p.entry_row ? p.entry_row[e] : e;
  const int ctx = p.context_lens[seq];
  const int32_t* table = p.block_tables + static_cast<int64_t>(seq) * p.max_blocks;
  const int bs = p.block_size;
  constexpr float LOG2E = 1.4426950408889634f;

  const int chunk = (ctx + p.splits - 1) / p.splits;
  const int start = split * chunk, end = min(ctx, start + chunk);
  const int first_block = start / bs;
  const int end_block = end > start ? (end - 1) / bs + 1 : first_block;
  // This lane's K/V rows of the token group at `base` of a block-table window staged in `tbl` (first
  // token of the window: base_off) → registers; tokens at or past w_end: zeros, marked invalid.
  uint4 kr[UNROLL][VEC], vr[UNROLL][VEC];
  bool valid[UNROLL];
  const auto load_group = [&](int base, int w_end, int base_off) {
#pragma unroll
    for (int u = 0; u < UNROLL; u++) {
      const int tok = base + u * TOK_PER_ITER + warp * TOK_PER_WARP + lane_tok;
      valid[u] = tok < w_end;
      const int rel = valid[u] ? tok - base_off : 0;
      const int64_t off = ((static_cast<int64_t>(tbl[rel / bs]) * p.Hkv + kvh) * bs + rel % bs) * D + dim0;
#pragma unroll
      for (int v = 0; v < VEC; v++) {
        kr[u][v] = valid[u] ? *reinterpret_cast<const uint4*>(p.k_cache + off + 8 * v) : make_uint4(0, 0, 0, 0);
        vr[u][v] = valid[u] ? *reinterpret_cast<const uint4*>(p.v_cache + off + 8 * v) : make_uint4(0, 0, 0, 0);
      }
    }
  };
  // Before waiting for the previous kernel: block-table entries (written by the host), and the first
  // K/V rows when they are older than the newest token — the previous kernel writes only q and the
  // newest token's K/V row. Those loads are then in flight across the wait.
  for (int i = threadIdx.x; i < min(kDecodeWindow, end_block - first_block); i += blockDim.x) tbl[i] = table[first_block + i];
  __syncthreads();
  const int first_w_end = min(end, (first_block + kDecodeWindow) * bs);
  bool prefetched = start < end && min(start + TOK_PER_GROUP, first_w_end) <= ctx - 1;
  if (prefetched) load_group(start, first_w_end, first_block * bs);
  wait_for_previous_kernel();
  decode_timeline_mark(p, kMarkWaited);

  float q[GC][DPT];
#pragma unroll
  for (int g = 0; g < GC; g++) {
#pragma unroll
    for (int v = 0; v < VEC; v++) {
      float tmp[8];
      unpack8(*reinterpret_cast<const Bf16x8*>(p.q + static_cast<int64_t>(row) * p.q_stride + (h0 + g) * D + dim0 + 8 * v), tmp);
#pragma unroll
      for (int i = 0; i < 8; i++) q[g][8 * v + i] = tmp[i] * (p.scale * LOG2E);  // scores in the log2 domain
    }
  }
  float m[GC], l[GC], acc[GC][DPT];
#pragma unroll
  for (int g = 0; g < GC; g++) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int i = 0; i < DPT; i++) acc[g][i] = 0.0f;
  }

  for (int wb = first_block; wb < end_block; wb += kDecodeWindow) {
    const int nb = min(kDecodeWindow, end_block - wb);
    if (wb != first_block) {
      __syncthreads();  // every warp is done with the previous window
      for (int i = threadIdx.x; i < nb; i += blockDim.x) tbl[i] = table[wb + i];
      __syncthreads();
    }
    const int w_start = max(start, wb * bs), w_end = min(end, (wb + nb) * bs), base_off = wb * bs;
    for (int base = w_start; base < w_end; base += TOK_PER_GROUP) {
      if (!prefetched) load_group(base, w_end, base_off);
      prefetched = false;
      // scores of the group's tokens for every head
      float s[UNROLL][GC];
#pragma unroll
      for (int u = 0; u < UNROLL; u++) {
#pragma unroll
        for (int g = 0; g < GC; g++) s[u][g] = 0.0f;
#pragma unroll
        for (int v = 0; v < VEC; v++) {
          float k[8];
          unpack8(*reinterpret_cast<const Bf16x8*>(&kr[u][v]), k);
#pragma unroll
          for (int g = 0; g < GC; g++)
#pragma unroll
            for (int i = 0; i < 8; i++) s[u][g] = fmaf(q[g][8 * v + i], k[i], s[u][g]);
        }
#pragma unroll
        for (int g = 0; g < GC; g++) {
#pragma unroll
          for (int o = TPT / 2; o > 0; o >>= 1) s[u][g] += __shfl_xor_sync(0xffffffffu, s[u][g], o);
          if (!valid[u]) s[u][g] = -INFINITY;
        }
      }
      // one softmax update for the group
#pragma unroll
      for (int g = 0; g < GC; g++) {
        float mx = m[g];
#pragma unroll
        for (int u = 0; u < UNROLL; u++) mx = fmaxf(mx, s[u][g]);
        if (mx == -INFINITY) continue;  // nothing valid yet in this lane's tokens
        const float corr = exp2f(m[g] - mx);  // m = -inf first: exp2(-inf) = 0
        l[g] *= corr;
#pragma unroll
        for (int i = 0; i < DPT; i++) acc[g][i] *= corr;
        m[g] = mx;
      }
#pragma unroll
      for (int u = 0; u < UNROLL; u++) {
#pragma unroll
        for (int v = 0; v < VEC; v++) {
          float val[8];
          unpack8(*reinterpret_cast<const Bf16x8*>(&vr[u][v]), val);
#pragma unroll
          for (int g = 0; g < GC; g++) {
            const float w = s[u][g] == -INFINITY ? 0.0f : exp2f(s[u][g] - m[g]);
            if (v == 0) l[g] += w;
#pragma unroll
            for (int i = 0; i < 8; i++) acc[g][8 * v + i] = fmaf(w, val[i], acc[g][8 * v + i]);
          }
        }
      }
    }
  }

  decode_timeline_mark(p, kMarkLoopDone);
  // Merge the token lanes of a warp (lanes that differ by multiples of TPT hold the same dims).
#pragma unroll
  for (int o = TPT; o < 32; o <<= 1) {
#pragma unroll
    for (int g = 0; g < GC; g++) {
      float m2 = __shfl_xor_sync(0xffffffffu, m[g], o), l2 = __shfl_xor_sync(0xffffffffu, l[g], o), a2[DPT];
#pragma unroll
      for (int i = 0; i < DPT; i++) a2[i] = __shfl_xor_sync(0xffffffffu, acc[g][i], o);
      merge_state(m[g], l[g], acc[g], m2, l2, a2);
    }
  }
  // Then the warps, through shared memory: [warp][g][TPT lanes][2 + DPT] (2 + DPT even: float2 loads of
  // acc stay aligned); afterwards the fused merge's scratch.
  constexpr int STATE = kDecodeWarps * GC * TPT * (2 + DPT), MERGE = decode_merge_scratch_floats(GC, kDecodeWarps * 32);
  __shared__ __align__(16) float smem[STATE > MERGE ? STATE : MERGE];
  const auto state = reinterpret_cast<float (*)[GC][TPT][2 + DPT]>(smem);
  if (lane < TPT) {
#pragma unroll
    for (int g = 0; g < GC; g++) {
      state[warp][g][lane][0] = m[g];
      state[warp][g][lane][1] = l[g];
#pragma unroll
      for (int i = 0; i < DPT; i++) state[warp][g][lane][2 + i] = acc[g][i];
    }
  }
  __syncthreads();
  // Every thread combines the warps for a pair of adjacent dims of one head (lane tl of each warp holds
  // dims [tl * DPT, (tl + 1) * DPT) of every head) and writes it: unsplit, to the output row; split, to
  // this split's partial output, its (max, sum) beside it.
  for (int i = threadIdx.x; i < GC * D / 2; i += blockDim.x) {
    const int g = i / (D / 2), d = i % (D / 2) * 2, tl = d / DPT, j = d % DPT;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < kDecodeWarps; w++) mx = fmaxf(mx, state[w][g][tl][0]);
    float sum = 0.0f;
    float2 o = make_float2(0.0f, 0.0f);
#pragma unroll
    for (int w = 0; w < kDecodeWarps; w++) {
      const float mw = state[w][g][tl][0];
      const float f = mw == -INFINITY ? 0.0f : exp2f(mw - mx);  // a warp that saw no token adds nothing
      const float2 a = *reinterpret_cast<const float2*>(&state[w][g][tl][2 + j]);
      sum += state[w][g][tl][1] * f;
      o.x += a.x * f;
      o.y += a.y * f;
    }
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    const int h = h0 + g;
    const int64_t slot = (static_cast<int64_t>(e) * p.Hq + h) * p.splits + split;
    bf16* dst = (p.splits == 1 ? p.out + static_cast<int64_t>(row) * p.out_stride + h * D : p.partial_acc + slot * D) + d;
    *reinterpret_cast<__nv_bfloat162*>(dst) = __floats2bfloat162_rn(o.x * inv, o.y * inv);
    if (p.splits > 1 && d == 0) {
      p.partial_ml[slot * 2] = mx;
      p.partial_ml[slot * 2 + 1] = sum;
    }
  }
  decode_timeline_mark(p, kMarkWritten);
  if (p.splits > 1 && p.split_done != nullptr &&
      arrive_last_split(decode_group_counter(p, e, blockIdx.x, gridDim.x), p.splits)) {
    decode_timeline_mark(p, kMarkMerge);
    merge_split_partials<D>(p, e, row, h0, GC, smem);
  }
  decode_timeline_mark(p, kMarkDone);
  decode_timeline_mark(p, kMarkSm);
}

// Grid: (E, Hq). Block: D. The separate merge pass (when p.split_done is null): one (entry, head) per CTA.
template <int D>
__global__ void decode_attention_reduce_kernel(DecodeAttentionParams p) {
  allow_next_kernel_to_start();  // the next GEMM may start loading its weights
  wait_for_previous_kernel();    // the main kernel's partials are complete only now
  __shared__ float scratch[decode_merge_scratch_floats(1, D)];
  const int e = blockIdx.x;
  merge_split_partials<D>(p, e, p.entry_row ? p.entry_row[e] : e, blockIdx.y, 1, scratch);
}

// The merge pass after a split main kernel (nothing to do without splits). Grid: (E, Hq). Block: D.
template <int D>
void launch_decode_merge(const DecodeAttentionParams& p, cudaStream_t s) {
  if (p.splits <= 1 || p.split_done != nullptr) return;  // unsplit, or merged by the main kernel's last CTAs
  launch_overlapping(p.overlap_previous, decode_attention_reduce_kernel<D>, dim3(p.E, p.Hq), dim3(D), 0, s, p);
}

/** Largest divisor of the group size that is at most 8: query heads per CTA. */
inline int decode_heads_per_cta(int group) {
  for (int gc = 8; gc >= 1; gc--)
    if (group % gc == 0) return gc;
  return 1;
}

template <int D, int GC, int UNROLL = decode_default_unroll<GC>(), int DPT = decode_dims_per_thread<GC>()>
void launch_decode_gc(const DecodeAttentionParams& p, dim3 grid, cudaStream_t s) {
  launch_overlapping(p.overlap_previous, decode_attention_kernel<D, GC, UNROLL, DPT>, grid, dim3(128), 0, s, p);
}

// PAGODA_DECODE_GQA4 (for comparisons): the kernel variant for groups of 4 query heads per KV head —
// u2dpt16 (default), u4dpt8, u2dpt8 or u1dpt16 (token groups per softmax update, dims per thread).
inline int decode_gqa4_variant() {
  static const int variant = [] {
    const char* env = std::getenv("PAGODA_DECODE_GQA4");
    const std::string v = env != nullptr && *env != '\0' ? env : "u2dpt16";
    const char* names[] = {"u2dpt16", "u4dpt8", "u2dpt8", "u1dpt16"};
    for (int i = 0; i < 4; i++)
      if (v == names[i]) return i;
    throw std::runtime_error("PAGODA_DECODE_GQA4=" + v + " is not a variant: use u2dpt16, u4dpt8, u2dpt8 or u1dpt16");
  }();
  return variant;
}

template <int D>
void launch_decode_attention_d(const DecodeAttentionParams& p, cudaStream_t s) {
  const int gc = decode_heads_per_cta(p.Hq / p.Hkv);
  dim3 grid(p.Hq / gc, p.E, p.splits);
  switch (gc) {
    case 1: launch_decode_gc<D, 1>(p, grid, s); break;
    case 2: launch_decode_gc<D, 2>(p, grid, s); break;
    case 3: launch_decode_gc<D, 3>(p, grid, s); break;
    case 4:
      switch (decode_gqa4_variant()) {
        case 1: launch_decode_gc<D, 4, 4, 8>(p, grid, s); break;
        case 2: launch_decode_gc<D, 4, 2, 8>(p, grid, s); break;
        case 3: launch_decode_gc<D, 4, 1, 16>(p, grid, s); break;
        default: launch_decode_gc<D, 4>(p, grid, s); break;
      }
      break;
    case 5: launch_decode_gc<D, 5>(p, grid, s); break;
    case 6: launch_decode_gc<D, 6>(p, grid, s); break;
    case 7: launch_decode_gc<D, 7>(p, grid, s); break;
    default: launch_decode_gc<D, 8>(p, grid, s); break;
  }
  PAGODA_LAUNCH_CHECK("decode_attention_kernel");
  launch_decode_merge<D>(p, s);
}

inline void launch_decode_attention(const DecodeAttentionParams& p, int head_dim, cudaStream_t s) {
  if (p.E == 0) return;
  if (p.Hq % p.Hkv != 0) throw std::runtime_error("decode_attention: query heads must be a multiple of KV heads");
  if (p.splits < 1 || p.splits > kDecodeMaxSplits)
    throw std::runtime_error("decode_attention: splits must be in 1.." + std::to_string(kDecodeMaxSplits) + ", got " +
                             std::to_string(p.splits));
  switch (head_dim) {
    case 64: launch_decode_attention_d<64>(p, s); break;
    case 128: launch_decode_attention_d<128>(p, s); break;
    default: throw std::runtime_error("decode_attention: unsupported head_dim: " + std::to_string(head_dim) + " (supported: 64, 128)");
  }
}

/** CTAs of the decode kernel that fit on one SM at once (for the split heuristic). */
inline int decode_resident_ctas(int head_dim, int group) {
  const int gc = decode_heads_per_cta(group);
  int n = 0;
  auto occ = [&](auto kernel) { PAGODA_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, 128, 0)); };
#define PAGODA_OCC(DD)                                        \
  switch (gc) {                                               \
    case 1: occ(decode_attention_kernel<DD, 1>); break;       \
    case 2: occ(decode_attention_kernel<DD, 2>); break;       \
    case 3: occ(decode_attention_kernel<DD, 3>); break;       \
    case 4: occ(decode_attention_kernel<DD, 4>); break;       \
    case 5: occ(decode_attention_kernel<DD, 5>); break;       \
    case 6: occ(decode_attention_kernel<DD, 6>); break;       \
    case 7: occ(decode_attention_kernel<DD, 7>); break;       \
    default: occ(decode_attention_kernel<DD, 8>); break;      \
  }
  if (head_dim == 64) {
    PAGODA_OCC(64)
  } else {
    PAGODA_OCC(128)
  }
#undef PAGODA_OCC
  return n > 0 ? n : 1;
}

/** Splits for a batch: as few as keep every SM busy to the end (whole waves of CTAs), with each split
 *  at least `min_tokens` long. `max_context` 0 = unknown (graph capture): assume long contexts. */
inline int decode_splits(int entries, int q_heads, int heads_per_cta, int max_context, int num_sms, int resident_per_sm,
                         int max_splits, int min_tokens = 256) {
  const int ctas = entries * (q_heads / heads_per_cta);
  if (ctas == 0) return 1;
  const int capacity = num_sms * resident_per_sm;
  const int by_len = max_context > 0 ? std::max(1, max_context / min_tokens) : max_splits;
  int best = 1;
  double best_eff = 0;
  for (int s = 1; s <= std::min(max_splits, by_len); s++) {
    const int64_t work = static_cast<int64_t>(ctas) * s;
    const int64_t waves = (work + capacity - 1) / capacity;
    // useful share of the slot-time, mildly favouring fewer splits (each adds a merge)
    const double eff = static_cast<double>(work) / static_cast<double>(waves * capacity) / (1.0 + 0.01 * s);
    if (eff > best_eff + 1e-9) {
      best_eff = eff;
      best = s;
    }
  }
  return best;
}

}  // namespace pagoda::kernels
