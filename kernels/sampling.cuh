// Token selection on the GPU; only the chosen ids (and log-probabilities) cross back to the host.
//
//   penalties: repetition (prompt + output tokens), frequency and presence (output tokens), applied to
//              a working copy of the logits from a host-deduplicated (row, token, count) list;
//   sample:    greedy (temperature 0 or top_k 1: argmax, lowest index on ties), else Gumbel-max over
//              softmax(x / T) restricted by min-p, top-k and top-p thresholds on the (unnormalised)
//              probability value, found by a 256-bucket search; noise from a counter-based hash of
//              (seed, step, token), so a seed reproduces its output whatever the batch holds. Rows
//              without thresholds take one pass over the logits, split over several CTAs when the
//              batch is too small to fill the GPU;
//   logprobs:  log-softmax of the raw logits for the chosen token and the K most likely (K <= 20).
#pragma once
#include "common.cuh"

namespace pagoda::kernels {

struct PenaltyEntry {
  int32_t row;
  int32_t token;
  int32_t output_count;  // occurrences among the generated tokens
  int32_t in_context;    // 1: appears in prompt or output (repetition penalty applies)
  float bias = 0.0f;     // added after the penalties (logit_bias; -inf bans the token)
};

// What a pass over (a slice of) a row gathers, per thread, then per CTA, then per row.
struct RowScan {
  float best = -INFINITY;      // largest working logit ...
  int best_i = 0x7fffffff;     // ... and its index (the greedy answer; lowest index on ties)
  float key = -INFINITY;       // largest Gumbel-max key among the kept tokens ...
  int key_i = 0x7fffffff;      // ... and its index (the sampled answer)
  float raw_max = -INFINITY;   // log-sum-exp of the raw logits, kept as max ...
  float raw_sum = 0.0f;        // ... and sum of exp(raw - max)
};

struct SamplingParams {
  const float* logits;        // [R, V] the distribution to sample from (penalised copy or raw)
  const float* raw_logits;    // [R, V] the model's logits (log-probabilities are of these)
  const float* temperature;   // [R]
  const float* top_p;         // [R]
  const int32_t* top_k;       // [R] <= 0: off
  const float* min_p;         // [R]
  const uint32_t* seed;       // [R * 2] low, high words
  const int32_t* step;        // [R] output index of the token being sampled
  int32_t* tokens;            // [R] out
  float* logprobs;            // [R] out: log-probability of the chosen token
  int R, V;
  RowScan* partials = nullptr;          // [R, splits] slices of split rows (launch_sample with splits > 1)
  int32_t* arrivals = nullptr;         // [R] zero between launches (the last CTA of a row re-arms it)
};

__device__ __forceinline__ uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The noise of one row's draw: a per-(seed, step) key, then one hash per token (exponential_noise).
__device__ __forceinline__ uint64_t noise_key(uint64_t seed, uint32_t step) {
  return mix64(seed + 0x9e3779b97f4a7c15ULL * (static_cast<uint64_t>(step) + 1));
}

// (value, index) argmax across the block; larger value wins, then lower index.
__device__ __forceinline__ void block_argmax(float& v, int& idx, float* sv, int* si) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float v2 = __shfl_xor_sync(0xffffffffu, v, o);
    const int i2 = __shfl_xor_sync(0xffffffffu, idx, o);
    if (v2 > v || (v2 == v && i2 < idx)) {
      v = v2;
      idx = i2;
    }
  }
  __syncthreads();
  if (lane == 0) {
    sv[warp] = v;
    si[warp] = idx;
  }
  __syncthreads();
  v = lane < warps ? sv[lane] : -INFINITY;
  idx = lane < warps ? si[lane] : 0x7fffffff;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float v2 = __shfl_xor_sync(0xffffffffu, v, o);
    const int i2 = __shfl_xor_sync(0xffffffffu, idx, o);
    if (v2 > v || (v2 == v && i2 < idx)) {
      v = v2;
      idx = i2;
    }
  }
}

// Grid: (entries / 256). Block: 256. Entries are unique per (row, token).
__global__ void apply_penalties_kernel(float* __restrict__ logits,             // [R, V]
                                       const PenaltyEntry* __restrict__ entries,  // [n]
                                       const float* __restrict__ repetition,   // [R]
                                       const float* __restrict__ frequency,    // [R]
                                       const float* __restrict__ presence,     // [R]
                                       int n, int V) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const PenaltyEntry e = entries[i];
  float& x = logits[static_cast<int64_t>(e.row) * V + e.token];
  const float rp = repetition[e.row];
  if (e.in_context && rp != 1.0f) x = x > 0.0f ? x / rp : x * rp;
  if (e.output_count > 0) x -= frequency[e.row] * static_cast<float>(e.output_count) + presence[e.row];
  x += e.bias;
}

// How the final pass treats a row.
struct ScanSettings {
  bool gumbel;     // draw a token (false: greedy)
  float inv_t;     // 1 / temperature
  float mx;        // subtracted before scaling: the row's max when filtered, else 0 (keys differ by a constant)
  float tau;       // keep tokens with exp((x - mx) / T) >= tau (filtered rows only)
  uint64_t noise;  // noise_key(seed, step)
};

// -log(u) of a token's uniform u: an Exp(1) variate, accurate also where u is near 1 (there -__logf(u)
// would lose every digit, and with it the largest Gumbel keys).
__device__ __forceinline__ float exponential_noise(uint64_t key, uint32_t index) {
  const uint32_t m = static_cast<uint32_t>(mix64(key ^ (0xd1b54a32d192ed03ULL * (static_cast<uint64_t>(index) + 1))) >> 40);
  const float v = (static_cast<float>(16777215u - m) + 0.5f) * (1.0f / 16777216.0f);  // 1 - u, exact
  return v < 0x1p-7f ? v * (1.0f + v * (0.5f + v * (1.0f / 3.0f))) : -__logf((static_cast<float>(m) + 0.5f) * (1.0f / 16777216.0f));
}

// The largest Gumbel noise -log(-log u) can be: u <= 1 - 2^-25 gives 17.33. A token whose scaled logit
// is further than this below a key already found cannot win, and its noise is not computed.
constexpr float kGumbelMax = 17.5f;

// Token i with working logit v and raw logit r. A thread visits its tokens in increasing index order,
// so a strict comparison keeps the lowest index among equal values.
template <bool kFiltered>
__device__ __forceinline__ void scan_token(RowScan& a, int i, float v, float r, const ScanSettings& c) {
  if (v > a.best) {
    a.best = v;
    a.best_i = i;
  }
  if (c.gumbel) {
    const float lp = (v - c.mx) * c.inv_t;  // log p_i, up to a constant
    if (lp + kGumbelMax >= a.key && (!kFiltered || __expf(lp) >= c.tau)) {
      const float k = lp - __logf(exponential_noise(c.noise, static_cast<uint32_t>(i)));
      if (k > a.key) {
        a.key = k;
        a.key_i = i;
      }
    }
  }
  if (r > a.raw_max) {
    a.raw_sum = a.raw_sum * __expf(a.raw_max - r) + 1.0f;
    a.raw_max = r;
  } else if (r > -INFINITY) {
    a.raw_sum += __expf(r - a.raw_max);
  }
}

// Tokens [begin, end) of a row's working logits x (and raw logits raw when they differ), 16 bytes per
// load where the row allows it (vec: begin and end multiples of 4, rows 16-byte aligned).
template <bool kFiltered>
__device__ __forceinline__ void scan_row(const float* x, const float* raw, int begin, int end, bool vec, const ScanSettings& c,
                                         RowScan& a) {
  const bool same = raw == x;
  if (vec) {
    const float4* x4 = reinterpret_cast<const float4*>(x);
    const float4* r4 = reinterpret_cast<const float4*>(raw);
    for (int j = begin / 4 + threadIdx.x; j < end / 4; j += blockDim.x) {
      const float4 v = x4[j];
      const float4 r = same ? v : r4[j];
      scan_token<kFiltered>(a, 4 * j, v.x, r.x, c);
      scan_token<kFiltered>(a, 4 * j + 1, v.y, r.y, c);
      scan_token<kFiltered>(a, 4 * j + 2, v.z, r.z, c);
      scan_token<kFiltered>(a, 4 * j + 3, v.w, r.w, c);
    }
  } else {
    for (int i = begin + threadIdx.x; i < end; i += blockDim.x) {
      const float v = x[i];
      scan_token<kFiltered>(a, i, v, same ? v : raw[i], c);
    }
  }
}

// Combining two scans: (value, index) maxima and (max, sum of exp(x - max)) pairs.
__device__ __forceinline__ void take_larger(float& v, int& i, float v2, int i2) {
  if (v2 > v || (v2 == v && i2 < i)) {
    v = v2;
    i = i2;
  }
}
__device__ __forceinline__ void merge_lse(float& m, float& s, float m2, float s2) {
  const float top = fmaxf(m, m2);
  if (top == -INFINITY) return;  // both empty
  s = s * __expf(m - top) + s2 * __expf(m2 - top);
  m = top;
}
__device__ __forceinline__ void merge_scan(RowScan& a, const RowScan& b) {
  take_larger(a.best, a.best_i, b.best, b.best_i);
  take_larger(a.key, a.key_i, b.key, b.key_i);
  merge_lse(a.raw_max, a.raw_sum, b.raw_max, b.raw_sum);
}
__device__ __forceinline__ void warp_merge_scan(RowScan& a) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    RowScan b;
    b.best = __shfl_xor_sync(0xffffffffu, a.best, o);
    b.best_i = __shfl_xor_sync(0xffffffffu, a.best_i, o);
    b.key = __shfl_xor_sync(0xffffffffu, a.key, o);
    b.key_i = __shfl_xor_sync(0xffffffffu, a.key_i, o);
    b.raw_max = __shfl_xor_sync(0xffffffffu, a.raw_max, o);
    b.raw_sum = __shfl_xor_sync(0xffffffffu, a.raw_sum, o);
    merge_scan(a, b);
  }
}
// Every thread gets the CTA's scan. `slots`: 32 RowScans of shared memory.
__device__ __forceinline__ void block_merge_scan(RowScan& a, RowScan* slots) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  warp_merge_scan(a);
  __syncthreads();
  if (lane == 0) slots[warp] = a;
  __syncthreads();
  a = lane < warps ? slots[lane] : RowScan{};
  warp_merge_scan(a);
}

// A slice's scan written by another CTA of this launch: read past this SM's L1 (ld.global.cg), which
// is not coherent with other SMs' writes.
__device__ __forceinline__ RowScan load_partial(const RowScan* s) {
  RowScan a;
  a.best = __ldcg(&s->best);
  a.best_i = __ldcg(&s->best_i);
  a.key = __ldcg(&s->key);
  a.key_i = __ldcg(&s->key_i);
  a.raw_max = __ldcg(&s->raw_max);
  a.raw_sum = __ldcg(&s->raw_sum);
  return a;
}

// Buckets per pass of the threshold search: 4 passes resolve tau to 2^-32 of its bracket.
constexpr int kThresholdBuckets = 256;

// The largest tau in [lo, 1] with measure(p >= tau) >= target, where p_i = exp((x_i - mx) * inv_t) and
// the measure counts tokens (top-k: target k) or sums p (top-p: target top_p times the measure of
// p >= lo). Each pass histograms the bracket [lo, hi) into 256 buckets and keeps the bucket where the
// measure from the top crosses the target; tokens at or above hi are summed apart.
template <bool kMass>
__device__ float find_threshold(const float* x, int V, float mx, float inv_t, float lo, float target, float* hist, float* scratch) {
  __shared__ float bracket[2];
  float hi = 1.0f;
  for (int pass = 0; pass < 4; pass++) {
    const float w = (hi - lo) / kThresholdBuckets;
    if (!(w > lo * 1.2e-7f) || w <= 0.0f) break;  // the bracket is down to float resolution
    for (int b = threadIdx.x; b < kThresholdBuckets; b += blockDim.x) hist[b] = 0.0f;
    __syncthreads();
    // measure of p >= hi, and of the lowest bucket: most tokens land there, kept in registers rather
    // than contending for one shared-memory word
    float above = 0.0f, first = 0.0f;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
      const float e = __expf((x[i] - mx) * inv_t);
      const float m = kMass ? e : 1.0f;
      if (e >= hi) {
        above += m;
      } else if (e >= lo) {
        int b = min(kThresholdBuckets - 1, static_cast<int>((e - lo) / w));
        if (b > 0 && e < lo + b * w) b--;  // the bucket by the same comparisons the next pass makes
        else if (b < kThresholdBuckets - 1 && e >= lo + (b + 1) * w) b++;
        if (b == 0) first += m;
        else atomicAdd(&hist[b], m);
      }
    }
    above = block_sum(above, scratch);
    first = block_sum(first, scratch);  // the barriers of both sums also complete the histogram
    if (threadIdx.x == 0) hist[0] += first;
    __syncthreads();
    if (pass == 0 && kMass) {
      float total = 0.0f;
      for (int b = threadIdx.x; b < kThresholdBuckets; b += blockDim.x) total += hist[b];
      target *= block_sum(total, scratch) + above;  // top_p times the mass of p >= lo
    }
    if (above >= target) return hi;  // the tokens at the top already reach it
    // The highest bucket b whose suffix (buckets b.. plus `above`) reaches the target: warp 0, 8 buckets
    // per lane, suffix sums by shuffles.
    if (threadIdx.x < 32) {
      const int lane = threadIdx.x;
      constexpr int per = kThresholdBuckets / 32;
      float own = 0.0f;
      for (int j = 0; j < per; j++) own += hist[lane * per + j];
      float suffix = own;  // sum over lanes >= lane
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const float t = __shfl_down_sync(0xffffffffu, suffix, o);
        if (lane + o < 32) suffix += t;
      }
      float run = above + suffix - own;  // measure of buckets above this lane's
      int found = -1;
      for (int j = per - 1; j >= 0 && found < 0; j--) {
        run += hist[lane * per + j];
        if (run >= target) found = lane * per + j;
      }
      // the highest lane that found one holds the answer; none: keep the bracket's bottom
      const unsigned have = __ballot_sync(0xffffffffu, found >= 0);
      const int src = have ? 31 - __clz(have) : 0;
      const int b = have ? __shfl_sync(0xffffffffu, found, src) : 0;
      if (lane == 0) {
        bracket[0] = lo + b * w;
        bracket[1] = b == kThresholdBuckets - 1 ? hi : lo + (b + 1) * w;
      }
    }
    __syncthreads();
    lo = bracket[0];
    hi = bracket[1];
    __syncthreads();  // every thread has read the bracket before the next pass rewrites it
  }
  return lo;
}

// CTAs per row for R rows on a GPU with `sms` SMs: one per row when the rows fill the GPU, else the
// rows are split so that about two CTAs per SM stream the logits (unfiltered rows only; see below).
constexpr int kSampleMaxSplits = 32;
inline int sample_splits(int R, int sms) { return std::max(1, std::min(kSampleMaxSplits, 2 * sms / std::max(R, 1))); }

// Grid: (R, splits). Block: 1024. Rows without top-k / top-p / min-p (greedy ones too) are read once:
// argmax, Gumbel-max draw and the raw log-sum-exp in the same pass, a row's slices in `splits` CTAs
// whose last merges them. Filtered rows run in their first CTA alone: the max, then their threshold tau
// (find_threshold), then the same final pass keeping only tokens with p >= tau.
__global__ void __launch_bounds__(1024, 2) sample_kernel(SamplingParams p) {
  __shared__ RowScan slots[32];
  __shared__ float scratch[32];
  __shared__ float hist[kThresholdBuckets];
  const int r = blockIdx.x, splits = gridDim.y;
  const float* x = p.logits + static_cast<int64_t>(r) * p.V;
  const float* raw = p.raw_logits + static_cast<int64_t>(r) * p.V;
  const float temp = p.temperature[r];
  const int top_k = p.top_k[r];
  const float top_p = p.top_p[r];
  const bool greedy = temp < 1e-5f || top_k == 1;
  const uint64_t seed = static_cast<uint64_t>(p.seed[2 * r]) | static_cast<uint64_t>(p.seed[2 * r + 1]) << 32;
  ScanSettings c{!greedy, greedy ? 0.0f : 1.0f / temp, 0.0f, p.min_p[r], noise_key(seed, static_cast<uint32_t>(p.step[r]))};
  const bool filtered = !greedy && (c.tau > 0.0f || (top_k > 0 && top_k < p.V) || top_p < 1.0f);
  const bool vec = (p.V & 3) == 0 && ((reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(raw)) & 15) == 0;
  RowScan a;
  if (!filtered) {
    const int chunk = ((p.V + splits - 1) / splits + 3) & ~3;  // a multiple of 4: slices keep 16-byte loads
    const int begin = min(p.V, static_cast<int>(blockIdx.y) * chunk), end = min(p.V, begin + chunk);
    scan_row<false>(x, raw, begin, end, vec, c, a);
  } else {
    if (blockIdx.y != 0) return;
    float mx = -INFINITY;
    for (int i = threadIdx.x; i < p.V; i += blockDim.x) mx = fmaxf(mx, x[i]);
    mx = block_max(mx, scratch);
    if (top_k > 0 && top_k < p.V)
      c.tau = fmaxf(c.tau, find_threshold<false>(x, p.V, mx, c.inv_t, 0.0f, static_cast<float>(top_k), hist, scratch));
    if (top_p < 1.0f) c.tau = fmaxf(c.tau, find_threshold<true>(x, p.V, mx, c.inv_t, c.tau, top_p, hist, scratch));
    c.mx = mx;
    scan_row<true>(x, raw, 0, p.V, vec, c, a);
  }
  block_merge_scan(a, slots);
  if (splits > 1 && !filtered) {
    if (threadIdx.x == 0) p.partials[static_cast<int64_t>(r) * splits + blockIdx.y] = a;
    if (!arrive_last_split(p.arrivals + r, splits)) return;
    a = threadIdx.x < splits ? load_partial(p.partials + static_cast<int64_t>(r) * splits + threadIdx.x) : RowScan{};
    if (threadIdx.x >= 32) return;
    warp_merge_scan(a);
  }
  // tau never exceeds the max's p = 1, so a sampled row keeps a token; the fallbacks are for rows whose
  // every working logit is -inf (all banned by logit_bias) or NaN
  const int token = !greedy && a.key_i < p.V ? a.key_i : a.best_i < p.V ? a.best_i : 0;
  if (threadIdx.x == 0) {
    p.tokens[r] = token;
    p.logprobs[r] = raw[token] - a.raw_max - __logf(a.raw_sum);
  }
}

// Grid: (R). Block: 256. The K (<= 20) most likely tokens of each raw row and their log-probabilities.
__global__ void __launch_bounds__(256) top_logprobs_kernel(const float* __restrict__ raw_logits,  // [R, V]
                                                           int32_t* __restrict__ top_ids,           // [R, K]
                                                           float* __restrict__ top_logprobs,        // [R, K]
                                                           int V, int K) {
  constexpr int MAXK = 20;
  __shared__ float cand_v[256 * MAXK];
  __shared__ int cand_i[256 * MAXK];
  __shared__ float sv[32];
  __shared__ int si[32];
  __shared__ float scratch[32];
  const int r = blockIdx.x;
  const float* x = raw_logits + static_cast<int64_t>(r) * V;
  // each thread's own top K over its strided slice, sorted descending
  float v[MAXK];
  int ix[MAXK];
  for (int j = 0; j < MAXK; j++) {
    v[j] = -INFINITY;
    ix[j] = 0x7fffffff;
  }
  float mx = -INFINITY;
  for (int i = threadIdx.x; i < V; i += blockDim.x) {
    const float a = x[i];
    mx = fmaxf(mx, a);
    if (a <= v[K - 1]) continue;
    int j = K - 1;
    while (j > 0 && a > v[j - 1]) {
      v[j] = v[j - 1];
      ix[j] = ix[j - 1];
      j--;
    }
    v[j] = a;
    ix[j] = i;
  }
  for (int j = 0; j < K; j++) {
    cand_v[threadIdx.x * MAXK + j] = v[j];
    cand_i[threadIdx.x * MAXK + j] = ix[j];
  }
  mx = block_max(mx, scratch);
  float se = 0.0f;
  for (int i = threadIdx.x; i < V; i += blockDim.x) se += __expf(x[i] - mx);
  const float lse = mx + __logf(block_sum(se, scratch));
  // K rounds: pick the best remaining candidate and retire it
  for (int k = 0; k < K; k++) {
    float bv = -INFINITY;
    int bi = 0x7fffffff, bslot = -1;
    for (int j = 0; j < K; j++) {
      const int slot = threadIdx.x * MAXK + j;
      const float cv = cand_v[slot];
      const int ci = cand_i[slot];
      if (cv > bv || (cv == bv && ci < bi)) {
        bv = cv;
        bi = ci;
        bslot = slot;
      }
    }
    const int mine = bi;
    block_argmax(bv, bi, sv, si);
    if (bi == mine && bslot >= 0) cand_v[bslot] = -INFINITY;  // the winner's owner retires it
    if (threadIdx.x == 0) {
      top_ids[static_cast<int64_t>(r) * K + k] = bi;
      top_logprobs[static_cast<int64_t>(r) * K + k] = bv - lse;
    }
    __syncthreads();
  }
}

inline void launch_apply_penalties(float* logits, const PenaltyEntry* entries, const float* repetition, const float* frequency,
                                   const float* presence, int n, int V, cudaStream_t s) {
  if (n == 0) return;
  apply_penalties_kernel<<<ceil_div(n, 256), 256, 0, s>>>(logits, entries, repetition, frequency, presence, n, V);
  PAGODA_LAUNCH_CHECK("apply_penalties_kernel");
}

// splits > 1 (sample_splits) needs p.partials [R * splits] and p.arrivals [R], zeroed once.
inline void launch_sample(const SamplingParams& p, int splits, cudaStream_t s) {
  if (p.R == 0) return;
  if (splits > 1 && (p.partials == nullptr || p.arrivals == nullptr))
    throw std::runtime_error("launch_sample: split rows need partials and arrival counters");
  sample_kernel<<<dim3(p.R, std::min(std::max(splits, 1), kSampleMaxSplits)), 1024, 0, s>>>(p);
  PAGODA_LAUNCH_CHECK("sample_kernel");
}

inline void launch_top_logprobs(const float* raw, int32_t* ids, float* lps, int R, int V, int K, cudaStream_t s) {
  if (R == 0 || K == 0) return;
  if (K > 20) throw std::runtime_error("top_logprobs: at most 20, got " + std::to_string(K));
  top_logprobs_kernel<<<R, 256, 0, s>>>(raw, ids, lps, V, K);
  PAGODA_LAUNCH_CHECK("top_logprobs_kernel");
}

}  // namespace pagoda::kernels
