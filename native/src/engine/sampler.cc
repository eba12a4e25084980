#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_map>
#include <vector>

namespace pagoda {
namespace {

constexpr float kGreedyTemperature = 1e-5f;

uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Larger value first; equal values by lower index, so every ordering is total and deterministic.
struct ByValueDesc {
  const float* v;
  bool operator()(int32_t a, int32_t b) const { return v[a] > v[b] || (v[a] == v[b] && a < b); }
};

int32_t argmax(const float* x, int32_t n) {
  int32_t best = 0;
  for (int32_t i = 1; i < n; i++)
    if (x[i] > x[best]) best = i;
  return best;
}

void apply_penalties(const StepInput& in, int32_t r, std::vector<float>& x) {
  const SamplingInputs& s = in.sampling;
  float rp = s.repetition_penalty[r];
  if (rp != 1.0f) {
    // Each distinct token is penalised once, however often it appeared.
    std::vector<int32_t> seen(s.context_tokens.begin() + s.context_offsets[r],
                              s.context_tokens.begin() + s.context_offsets[r + 1]);
    std::sort(seen.begin(), seen.end());
    seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
    for (int32_t t : seen) x[t] = x[t] > 0 ? x[t] / rp : x[t] * rp;
  }
  float fp = s.frequency_penalty[r], pp = s.presence_penalty[r];
  if (fp != 0.0f || pp != 0.0f) {
    std::unordered_map<int32_t, int32_t> counts;
    for (int32_t i = s.output_offsets[r]; i < s.output_offsets[r + 1]; i++) counts[s.output_tokens[i]]++;
    for (auto [t, c] : counts) x[t] -= fp * static_cast<float>(c) + pp;
  }
  if (!s.bias_offsets.empty())
    for (int32_t i = s.bias_offsets[r]; i < s.bias_offsets[r + 1]; i++) x[s.bias_tokens[i]] += s.bias_values[i];
}

// Draws from softmax(x / temperature) restricted by top-k, top-p and min-p.
int32_t draw(const StepInput& in, int32_t r, std::vector<float>& x) {
  const SamplingInputs& s = in.sampling;
  const int32_t n = static_cast<int32_t>(x.size());
  const float inv_t = 1.0f / s.temperature[r];
  float mx = -INFINITY;
  for (float v : x) mx = std::max(mx, v);
  // probs (unnormalised) in double for a stable cumulative sum
  std::vector<double> p(n);
  double total = 0;
  for (int32_t i = 0; i < n; i++) {
    p[i] = std::exp(static_cast<double>((x[i] - mx) * inv_t));
    total += p[i];
  }
  int32_t top_k = s.top_k[r];
  float top_p = s.top_p[r], min_p = s.min_p[r];
  bool filter_rank = (top_k > 0 && top_k < n) || top_p < 1.0f;
  std::vector<int32_t> cand;
  if (filter_rank) {
    cand.resize(n);
    std::iota(cand.begin(), cand.end(), 0);
    ByValueDesc cmp{x.data()};
    if (top_k > 0 && top_k < n) {
      std::partial_sort(cand.begin(), cand.begin() + top_k, cand.end(), cmp);
      cand.resize(top_k);
    } else {
      std::sort(cand.begin(), cand.end(), cmp);
    }
    if (top_p < 1.0f) {
      double kept_total = 0;
      for (int32_t i : cand) kept_total += p[i];
      double cum = 0;
      size_t keep = 0;
      while (keep < cand.size()) {
        cum += p[cand[keep]];
        keep++;
        if (cum >= top_p * kept_total) break;
      }
      cand.resize(keep);
    }
  } else {
    cand.resize(n);
    std::iota(cand.begin(), cand.end(), 0);
  }
  if (min_p > 0.0f) {
    double pmax = 0;
    for (int32_t i : cand) pmax = std::max(pmax, p[i]);
    double floor = pmax * min_p;
    cand.erase(std::remove_if(cand.begin(), cand.end(), [&](int32_t i) { return p[i] < floor; }), cand.end());
  }
  double kept = 0;
  for (int32_t i : cand) kept += p[i];
  uint64_t seed = static_cast<uint64_t>(s.seed[2 * r]) | static_cast<uint64_t>(s.seed[2 * r + 1]) << 32;
  double target = uniform_from(seed, static_cast<uint64_t>(s.step[r])) * kept;
  double cum = 0;
  for (int32_t i : cand) {
    cum += p[i];
    if (target < cum) return i;
  }
  return cand.back();
}

}  // namespace

double uniform_from(uint64_t seed, uint64_t step) {
  uint64_t z = mix64(seed + 0x9e3779b97f4a7c15ULL * (step + 1));
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

void sample_rows(const float* logits, int32_t vocab, const StepInput& in, StepOutput& out) {
  const int32_t rows = in.num_rows();
  const int32_t k = in.num_top_logprobs;
  out.tokens.assign(rows, 0);
  out.logprobs.assign(rows, 0.0f);
  out.top_ids.assign(static_cast<size_t>(rows) * k, 0);
  out.top_logprobs.assign(static_cast<size_t>(rows) * k, 0.0f);
#pragma omp parallel for schedule(dynamic, 1)
  for (int32_t r = 0; r < rows; r++) {
    const float* raw = logits + static_cast<int64_t>(r) * vocab;
    float mx = raw[argmax(raw, vocab)];
    double sum = 0;
    for (int32_t i = 0; i < vocab; i++) sum += std::exp(static_cast<double>(raw[i] - mx));
    const float lse = mx + static_cast<float>(std::log(sum));

    std::vector<float> x(raw, raw + vocab);
    apply_penalties(in, r, x);
    int32_t token;
    if (in.sampling.temperature[r] < kGreedyTemperature || in.sampling.top_k[r] == 1) {
      token = argmax(x.data(), vocab);
    } else {
      token = draw(in, r, x);
    }
    out.tokens[r] = token;
    out.logprobs[r] = raw[token] - lse;
    if (k > 0) {
      std::vector<int32_t> idx(vocab);
      std::iota(idx.begin(), idx.end(), 0);
      std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), ByValueDesc{raw});
      for (int32_t j = 0; j < k; j++) {
        out.top_ids[static_cast<size_t>(r) * k + j] = idx[j];
        out.top_logprobs[static_cast<size_t>(r) * k + j] = raw[idx[j]] - lse;
      }
    }
  }
}

}  // namespace pagoda
