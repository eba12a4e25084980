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

// Uniform in (0, 1), never 0 or 1.
__device__ __forceinline__ float hash_uniform(uint64_t seed, uint32_t step, uint32_t index) {
  uint64_t h = mix64(seed + 0x9e3779b97f4a7c15ULL * (static_cast<uint64_t>(step) + 1));
  h = mix64(h ^ (0xd1b54a32d192ed03ULL * (static_cast<uint64_t>(index) + 1)));
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

// Grid: (R). Block: 1024.
__global__ void __launch_bounds__(1024) sample_kernel(SamplingParams p) {
  __shared__ float sv[32];
  __shared__ int si[32];
  __shared__ float scratch[32];
  const int r = blockIdx.x;
  const float* x = p.logits + static_cast<int64_t>(r) * p.V;
  const float* raw = p.raw_logits + static_cast<int64_t>(r) * p.V;
  const float temp = p.temperature[r];
  const int top_k = p.top_k[r];
  const bool greedy = temp < 1e-5f || top_k == 1;

  // max of the working logits (also the greedy answer)
  float best = -INFINITY;
  int best_i = 0x7fffffff;
  for (int i = threadIdx.x; i < p.V; i += blockDim.x) {
    const float v = x[i];
    if (v > best || (v == best && i < best_i)) {
      best = v;
      best_i = i;
    }
  }
  block_argmax(best, best_i, sv, si);
  int token = best_i;
  if (!greedy) {
    const float mx = best, inv_t = 1.0f / temp;
    // p_i = exp((x_i - mx) / T) in (0, 1]; the largest is 1.
    float tau = p.min_p[r];  // min-p: keep p_i >= min_p * max p
    if (top_k > 0 && top_k < p.V) {
      float lo = 0.0f, hi = 1.0f;  // invariant: count(p >= lo) >= k
      for (int it = 0; it < 32; it++) {
        const float mid = 0.5f * (lo + hi);
        float c = 0.0f;
        for (int i = threadIdx.x; i < p.V; i += blockDim.x) c += __expf((x[i] - mx) * inv_t) >= mid ? 1.0f : 0.0f;
        if (block_sum(c, scratch) >= static_cast<float>(top_k)) lo = mid; else hi = mid;
      }
      tau = fmaxf(tau, lo);
    }
    const float top_p = p.top_p[r];
    if (top_p < 1.0f) {
      float z = 0.0f;
      for (int i = threadIdx.x; i < p.V; i += blockDim.x) {
        const float e = __expf((x[i] - mx) * inv_t);
        z += e >= tau ? e : 0.0f;
      }
      const float target = top_p * block_sum(z, scratch);
      float lo = tau, hi = 1.0f;  // invariant: mass(p >= lo) >= target
      for (int it = 0; it < 32; it++) {
        const float mid = 0.5f * (lo + hi);
        float mass = 0.0f;
        for (int i = threadIdx.x; i < p.V; i += blockDim.x) {
          const float e = __expf((x[i] - mx) * inv_t);
          mass += e >= mid ? e : 0.0f;
        }
        if (block_sum(mass, scratch) >= target) lo = mid; else hi = mid;
      }
      tau = fmaxf(tau, lo);
    }
    const uint64_t seed = static_cast<uint64_t>(p.seed[2 * r]) | static_cast<uint64_t>(p.seed[2 * r + 1]) << 32;
    const uint32_t step = static_cast<uint32_t>(p.step[r]);
    float key = -INFINITY;
    int key_i = 0x7fffffff;
    for (int i = threadIdx.x; i < p.V; i += blockDim.x) {
      const float lp = (x[i] - mx) * inv_t;  // log p_i
      if (__expf(lp) < tau) continue;
      const float k = lp - __logf(-__logf(hash_uniform(seed, step, static_cast<uint32_t>(i))));
      if (k > key || (k == key && i < key_i)) {
        key = k;
        key_i = i;
      }
    }
    block_argmax(key, key_i, sv, si);
    token = key_i < p.V ? key_i : best_i;  // tau never exceeds the max's p = 1, so a token is kept
  }
  // log-probability of the chosen token under the raw distribution
  float rmx = -INFINITY;
  for (int i = threadIdx.x; i < p.V; i += blockDim.x) rmx = fmaxf(rmx, raw[i]);
  rmx = block_max(rmx, scratch);
  float se = 0.0f;
  for (int i = threadIdx.x; i < p.V; i += blockDim.x) se += __expf(raw[i] - rmx);
  se = block_sum(se, scratch);
  if (threadIdx.x == 0) {
    p.tokens[r] = token;
    p.logprobs[r] = raw[token] - rmx - __logf(se);
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
