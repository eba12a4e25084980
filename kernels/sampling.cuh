// Token selection on the GPU, one CTA per logit row; only the chosen ids (and log-probabilities)
// cross back to the host.
//
//   penalties: repetition (prompt + output tokens), frequency and presence (output tokens), applied to
//              a working copy of the logits from a host-deduplicated (row, token, count) list;
//   sample:    greedy (temperature 0 or top_k 1: argmax, lowest index on ties), else Gumbel-max over
//              softmax(x / T) restricted by min-p, top-k and top-p thresholds found by bisection on
//              the (unnormalised) probability value; noise from a counter-based hash of (seed, step,
//              token), so a seed reproduces its output whatever the batch holds;
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
};

__device__ __forceinline__ uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The noise of one row's draw: a per-(seed, step) key, then one hash per token. Uniform in (0, 1),
// never 0 or 1.
__device__ __forceinline__ uint64_t noise_key(uint64_t seed, uint32_t step) {
  return mix64(seed + 0x9e3779b97f4a7c15ULL * (static_cast<uint64_t>(step) + 1));
}
__device__ __forceinline__ float noise_uniform(uint64_t key, uint32_t index) {
  const uint64_t h = mix64(key ^ (0xd1b54a32d192ed03ULL * (static_cast<uint64_t>(index) + 1)));
  return (static_cast<float>(h >> 40) + 0.5f) * (1.0f / 16777216.0f);
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

// What the final pass over a row gathers, per thread and then per block.
struct RowScan {
  float best = -INFINITY;      // largest working logit ...
  int best_i = 0x7fffffff;     // ... and its index (the greedy answer; lowest index on ties)
  float key = -INFINITY;       // largest Gumbel-max key among the kept tokens ...
  int key_i = 0x7fffffff;      // ... and its index (the sampled answer)
  float raw_max = -INFINITY;   // log-sum-exp of the raw logits, kept as max ...
  float raw_sum = 0.0f;        // ... and sum of exp(raw - max)
};

// How the final pass treats a row.
struct ScanSettings {
  bool gumbel;     // draw a token (false: greedy)
  float inv_t;     // 1 / temperature
  float mx;        // subtracted before scaling: the row's max when filtered, else 0 (keys differ by a constant)
  float tau;       // keep tokens with exp((x - mx) / T) >= tau (filtered rows only)
  uint64_t noise;  // noise_key(seed, step)
};

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
    if (!kFiltered || __expf(lp) >= c.tau) {
      const float k = lp - __logf(-__logf(noise_uniform(c.noise, static_cast<uint32_t>(i))));
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

// One read of the row's working logits x[V] (and raw[V] when they differ), 16 bytes per load where
// the rows allow it.
template <bool kFiltered>
__device__ __forceinline__ void scan_row(const float* x, const float* raw, int V, const ScanSettings& c, RowScan& a) {
  const bool same = raw == x;
  const bool vec = (V & 3) == 0 && ((reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(raw)) & 15) == 0;
  if (vec) {
    const float4* x4 = reinterpret_cast<const float4*>(x);
    const float4* r4 = reinterpret_cast<const float4*>(raw);
    for (int j = threadIdx.x; j < V / 4; j += blockDim.x) {
      const float4 v = x4[j];
      const float4 r = same ? v : r4[j];
      scan_token<kFiltered>(a, 4 * j, v.x, r.x, c);
      scan_token<kFiltered>(a, 4 * j + 1, v.y, r.y, c);
      scan_token<kFiltered>(a, 4 * j + 2, v.z, r.z, c);
      scan_token<kFiltered>(a, 4 * j + 3, v.w, r.w, c);
    }
  } else {
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
      const float v = x[i];
      scan_token<kFiltered>(a, i, v, same ? v : raw[i], c);
    }
  }
}

// Combines (max, sum of exp(x - max)) pairs across the block; every thread gets the result.
__device__ __forceinline__ void merge_lse(float& m, float& s, float m2, float s2) {
  const float top = fmaxf(m, m2);
  if (top == -INFINITY) return;  // both empty
  s = s * __expf(m - top) + s2 * __expf(m2 - top);
  m = top;
}
__device__ __forceinline__ void block_lse(float& m, float& s, float* sm, float* ss) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) merge_lse(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
  __syncthreads();
  if (lane == 0) {
    sm[warp] = m;
    ss[warp] = s;
  }
  __syncthreads();
  m = lane < warps ? sm[lane] : -INFINITY;
  s = lane < warps ? ss[lane] : 0.0f;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) merge_lse(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
}

// Grid: (R). Block: 1024. Rows without top-k / top-p / min-p (greedy ones too) are read once: argmax,
// Gumbel-max draw and the raw log-sum-exp in the same pass. Filtered rows first find the max, then
// their threshold tau by bisection, then make the same final pass keeping only tokens with p >= tau.
__global__ void __launch_bounds__(1024) sample_kernel(SamplingParams p) {
  __shared__ float sv[32];
  __shared__ int si[32];
  __shared__ float scratch[32];
  const int r = blockIdx.x;
  const float* x = p.logits + static_cast<int64_t>(r) * p.V;
  const float* raw = p.raw_logits + static_cast<int64_t>(r) * p.V;
  const float temp = p.temperature[r];
  const int top_k = p.top_k[r];
  const float top_p = p.top_p[r];
  const bool greedy = temp < 1e-5f || top_k == 1;
  const uint64_t seed = static_cast<uint64_t>(p.seed[2 * r]) | static_cast<uint64_t>(p.seed[2 * r + 1]) << 32;
  ScanSettings c{!greedy, greedy ? 0.0f : 1.0f / temp, 0.0f, p.min_p[r], noise_key(seed, static_cast<uint32_t>(p.step[r]))};
  const bool filtered = !greedy && (c.tau > 0.0f || (top_k > 0 && top_k < p.V) || top_p < 1.0f);
  RowScan a;
  if (!filtered) {
    scan_row<false>(x, raw, p.V, c, a);
  } else {
    // p_i = exp((x_i - mx) / T) in (0, 1]; the largest is 1. min-p keeps p_i >= min_p.
    float mx = -INFINITY;
    for (int i = threadIdx.x; i < p.V; i += blockDim.x) mx = fmaxf(mx, x[i]);
    mx = block_max(mx, scratch);
    const float inv_t = c.inv_t;
    if (top_k > 0 && top_k < p.V) {
      float lo = 0.0f, hi = 1.0f;  // invariant: count(p >= lo) >= k
      for (int it = 0; it < 32; it++) {
        const float mid = 0.5f * (lo + hi);
        float n = 0.0f;
        for (int i = threadIdx.x; i < p.V; i += blockDim.x) n += __expf((x[i] - mx) * inv_t) >= mid ? 1.0f : 0.0f;
        if (block_sum(n, scratch) >= static_cast<float>(top_k)) lo = mid; else hi = mid;
      }
      c.tau = fmaxf(c.tau, lo);
    }
    if (top_p < 1.0f) {
      float z = 0.0f;
      for (int i = threadIdx.x; i < p.V; i += blockDim.x) {
        const float e = __expf((x[i] - mx) * inv_t);
        z += e >= c.tau ? e : 0.0f;
      }
      const float target = top_p * block_sum(z, scratch);
      float lo = c.tau, hi = 1.0f;  // invariant: mass(p >= lo) >= target
      for (int it = 0; it < 32; it++) {
        const float mid = 0.5f * (lo + hi);
        float mass = 0.0f;
        for (int i = threadIdx.x; i < p.V; i += blockDim.x) {
          const float e = __expf((x[i] - mx) * inv_t);
          mass += e >= mid ? e : 0.0f;
        }
        if (block_sum(mass, scratch) >= target) lo = mid; else hi = mid;
      }
      c.tau = fmaxf(c.tau, lo);
    }
    c.mx = mx;
    scan_row<true>(x, raw, p.V, c, a);
  }
  block_argmax(a.best, a.best_i, sv, si);
  if (!greedy) block_argmax(a.key, a.key_i, sv, si);  // greedy is the row's: the whole block takes one branch
  block_lse(a.raw_max, a.raw_sum, sv, scratch);
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

inline void launch_sample(const SamplingParams& p, cudaStream_t s) {
  if (p.R == 0) return;
  sample_kernel<<<p.R, 1024, 0, s>>>(p);
  PAGODA_LAUNCH_CHECK("sample_kernel");
}

inline void launch_top_logprobs(const float* raw, int32_t* ids, float* lps, int R, int V, int K, cudaStream_t s) {
  if (R == 0 || K == 0) return;
  if (K > 20) throw std::runtime_error("top_logprobs: at most 20, got " + std::to_string(K));
  top_logprobs_kernel<<<R, 256, 0, s>>>(raw, ids, lps, V, K);
  PAGODA_LAUNCH_CHECK("top_logprobs_kernel");
}

}  // namespace pagoda::kernels
