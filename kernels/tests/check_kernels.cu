// Every kernel against its CPU reference over a grid of shapes, with fresh random inputs per case and
// outputs poisoned (NaN) before each run, so an element the kernel failed to write fails the check.
// Tolerance: relative error ||gpu - ref|| / ||ref|| <= 1e-2 (bf16). Also rejection cases.
//   nvcc -std=c++17 -O2 -gencode arch=compute_90a,code=sm_90a -Xcompiler -fopenmp -I kernels \
//        kernels/tests/check_kernels.cu -o check_kernels && ./check_kernels
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "activation.cuh"
#include "decode_attention.cuh"
#include "decode_attention_mma.cuh"
#include "norm.cuh"
#include "prefill_attention.cuh"
#include "qkv_rope.cuh"
#include "reference.h"
#include "sampling.cuh"
#include "skinny_gemm.cuh"

using namespace pagoda;
using namespace pagoda::kernels;
using reference::bf16_to_f;
using reference::f_to_bf16;

static std::mt19937_64 rng(std::random_device{}());
static int failures = 0, checks = 0;

template <typename T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(size_t count) : n(count) { PAGODA_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(1, n) * sizeof(T))); }
  ~Dev() { cudaFree(p); }
  void put(const std::vector<T>& h) { PAGODA_CUDA_CHECK(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice)); }
  std::vector<T> get() const {
    std::vector<T> h(n);
    PAGODA_CUDA_CHECK(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
  void poison() { PAGODA_CUDA_CHECK(cudaMemset(p, 0xff, n * sizeof(T))); }  // bf16/f32 0xff.. = NaN
};

std::vector<uint16_t> random_bf16(size_t n, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = f_to_bf16(d(rng));
  return v;
}

inline float to_host_float(float x) { return x; }
inline float to_host_float(bf16 x) { return __bfloat162float(x); }

void report(const std::string& name, double err, bool all_written, double tol = 1e-2) {
  checks++;
  const bool ok = all_written && err <= tol;
  if (!ok) failures++;
  std::printf("%-4s %-78s rel err %.2e%s\n", ok ? "ok" : "FAIL", name.c_str(), err, all_written ? "" : "  (unwritten output)");
}

template <typename G, typename R>
double rel_err(const G& gpu, const R& ref, size_t n, bool& all_written) {
  double num = 0, den = 0;
  all_written = true;
  for (size_t i = 0; i < n; i++) {
    const double g = gpu(i), r = ref(i);
    if (!std::isfinite(g)) all_written = false;
    num += (g - r) * (g - r);
    den += r * r;
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

// ---- attention -------------------------------------------------------------------------------

struct PagedSeqs {
  int bs, Hkv, D, num_blocks;
  std::vector<int> ctx;        // per sequence
  std::vector<int32_t> tables; // [S, max_blocks]
  int max_blocks;
  std::vector<uint16_t> k, v;  // [num_blocks, Hkv, bs, D]
};

PagedSeqs make_cache(const std::vector<int>& ctx, int bs, int Hkv, int D) {
  PagedSeqs c{bs, Hkv, D, 0, ctx, {}, 0, {}, {}};
  for (int n : ctx) c.max_blocks = std::max(c.max_blocks, ceil_div(std::max(n, 1), bs));
  int total = 0;
  for (int n : ctx) total += ceil_div(std::max(n, 1), bs);
  c.num_blocks = total + 3;
  std::vector<int32_t> ids(c.num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);  // physical order unrelated to logical order
  c.tables.assign(ctx.size() * c.max_blocks, 0);
  int next = 0;
  for (size_t s = 0; s < ctx.size(); s++)
    for (int b = 0; b < ceil_div(std::max(ctx[s], 1), bs); b++) c.tables[s * c.max_blocks + b] = ids[next++];
  const size_t n = static_cast<size_t>(c.num_blocks) * Hkv * bs * D;
  c.k = random_bf16(n);
  c.v = random_bf16(n);
  return c;
}

// Rows a kernel writes late: row i of src (len elements) → dst + offsets[i] (offsets null: rows back to back).
struct LateRows {
  const bf16* src;
  bf16* dst;
  const int64_t* offsets;
  int rows, len;
};

// A kernel that lets the next one start at once, idles ~100 us, then writes its rows.
__global__ void slow_write_kernel(LateRows a, LateRows b, LateRows c) {
  allow_next_kernel_to_start();
  const long long start = clock64();
  while (clock64() - start < 200000) {
  }
  const LateRows all[3] = {a, b, c};
  for (const LateRows& r : all)
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < r.rows * r.len; i += gridDim.x * blockDim.x)
      r.dst[(r.offsets ? r.offsets[i / r.len] : static_cast<int64_t>(i / r.len) * r.len) + i % r.len] = r.src[i];
}

// dst = src, written ~100 us late by a kernel that lets the next one start at once.
void slow_copy(const bf16* src, bf16* dst, int n) {
  slow_write_kernel<<<4, 256>>>({src, dst, nullptr, 1, n}, {}, {});
}

// How a decode launch is checked: the engine's way (split-K merged by the main kernel's last CTAs,
// launched to overlap the kernel that writes q and the newest token's K/V rows — here a kernel that
// writes them ~100 us late, poisoned until then) or with the separate merge kernel, not overlapped.
enum class DecodeStyle { kEngine, kSeparateMerge };

// `launch`/`variant`: a kernel variant to check instead of the dispatching launcher (D 128). Each case
// runs twice with fresh poison: the second run finds the fused merge's counters re-armed by the first,
// and they must be back at zero after it.
void check_decode(int B, int ctx_len, int Hq, int Hkv, int D, int bs, int splits, bool varied,
                  const std::function<void(const DecodeAttentionParams&)>& launch = {}, const char* variant = "",
                  DecodeStyle style = DecodeStyle::kEngine) {
  std::vector<int> ctx(B);
  std::uniform_int_distribution<int> len(1, ctx_len);
  for (int i = 0; i < B; i++) ctx[i] = varied ? len(rng) : ctx_len;
  PagedSeqs c = make_cache(ctx, bs, Hkv, D);
  auto q = random_bf16(static_cast<size_t>(B) * Hq * D);
  Dev<bf16> dq(q.size()), dk(c.k.size()), dv(c.v.size()), dout(q.size());
  Dev<int32_t> dt(c.tables.size()), dc(B);
  Dev<bf16> pacc(static_cast<size_t>(B) * Hq * splits * D);
  Dev<float> pml(static_cast<size_t>(B) * Hq * splits * 2);
  Dev<bf16> dq_src(q.size());
  Dev<int32_t> done(decode_split_counters(B, Hq));
  PAGODA_CUDA_CHECK(cudaMemset(done.p, 0, done.n * sizeof(int32_t)));
  dq_src.put(*reinterpret_cast<std::vector<bf16>*>(&q));
  // The newest token's K/V row of every (sequence, KV head): where it lives in the cache, and its values.
  std::vector<int64_t> newest;
  std::vector<uint16_t> newest_k, newest_v;
  for (int s = 0; s < B; s++)
    for (int h = 0; h < Hkv; h++) {
      const int64_t off = reference::kv_row_offset(&c.tables[static_cast<size_t>(s) * c.max_blocks], ctx[s] - 1, h, Hkv, bs, D);
      newest.push_back(off);
      newest_k.insert(newest_k.end(), c.k.begin() + off, c.k.begin() + off + D);
      newest_v.insert(newest_v.end(), c.v.begin() + off, c.v.begin() + off + D);
    }
  Dev<int64_t> d_newest(newest.size());
  Dev<bf16> d_newest_k(newest_k.size()), d_newest_v(newest_v.size());
  d_newest.put(newest);
  d_newest_k.put(*reinterpret_cast<std::vector<bf16>*>(&newest_k));
  d_newest_v.put(*reinterpret_cast<std::vector<bf16>*>(&newest_v));
  dq.put(*reinterpret_cast<std::vector<bf16>*>(&q));
  dk.put(*reinterpret_cast<std::vector<bf16>*>(&c.k));
  dv.put(*reinterpret_cast<std::vector<bf16>*>(&c.v));
  dt.put(c.tables);
  dc.put(std::vector<int32_t>(ctx.begin(), ctx.end()));
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const bool engine = style == DecodeStyle::kEngine;
  DecodeAttentionParams p{dq.p, dk.p, dv.p, dt.p, dc.p, nullptr, nullptr, dout.p, pacc.p, pml.p, B, Hq, Hkv, bs, c.max_blocks, splits,
                          Hq * D, Hq * D, scale, engine ? done.p : nullptr, engine};
  for (int round = 0; round < 2; round++) {
    dout.poison();
    pacc.poison();
    pml.poison();
    if (engine) {
      dq.poison();
      for (int64_t off : newest) {
        PAGODA_CUDA_CHECK(cudaMemset(dk.p + off, 0xff, D * sizeof(bf16)));
        PAGODA_CUDA_CHECK(cudaMemset(dv.p + off, 0xff, D * sizeof(bf16)));
      }
      const int rows = static_cast<int>(newest.size());
      slow_write_kernel<<<4, 256>>>({dq_src.p, dq.p, nullptr, 1, static_cast<int>(q.size())}, {d_newest_k.p, dk.p, d_newest.p, rows, D},
                                    {d_newest_v.p, dv.p, d_newest.p, rows, D});
    }
    if (launch) launch(p);
    else launch_decode_attention(p, D, nullptr);
  }
  PAGODA_CUDA_CHECK(cudaDeviceSynchronize());
  bool rearmed = true;
  for (int32_t x : done.get()) rearmed = rearmed && x == 0;
  auto got = dout.get();
  // Reference for up to 48 (sequence, head) pairs: full references at 256 x 32k would take minutes.
  std::vector<std::pair<int, int>> pairs;
  for (int s = 0; s < B; s++)
    for (int h = 0; h < Hq; h++) pairs.push_back({s, h});
  std::shuffle(pairs.begin(), pairs.end(), rng);
  pairs.resize(std::min<size_t>(pairs.size(), 48));
  std::vector<float> ref(pairs.size() * D), gpu(pairs.size() * D);
#pragma omp parallel for schedule(dynamic)
  for (size_t i = 0; i < pairs.size(); i++) {
    auto [s, h] = pairs[i];
    reference::attention_row(q.data() + (static_cast<size_t>(s) * Hq + h) * D, c.k.data(), c.v.data(),
                             c.tables.data() + static_cast<size_t>(s) * c.max_blocks, ctx[s] - 1, h / (Hq / Hkv), Hkv, bs, D, scale,
                             ref.data() + i * D);
    for (int d = 0; d < D; d++) gpu[i * D + d] = bf16_to_f(reinterpret_cast<uint16_t*>(got.data())[(static_cast<size_t>(s) * Hq + h) * D + d]);
  }
  bool written;
  // every output element written, not only the sampled ones
  for (auto x : got)
    if (!std::isfinite(__bfloat162float(x))) written = false;
  double err = rel_err([&](size_t i) { return gpu[i]; }, [&](size_t i) { return ref[i]; }, ref.size(), written);
  for (auto x : got)
    if (!std::isfinite(__bfloat162float(x))) written = false;
  char name[200];
  std::snprintf(name, sizeof name, "decode  B=%-3d ctx%s%-6d Hq=%-2d Hkv=%d D=%-3d bs=%-2d splits=%d%s%s", B, varied ? "<=" : "=", ctx_len,
                Hq, Hkv, D, bs, splits, variant, engine ? "" : " merge kernel");
  report(name, rearmed ? err : 1.0, written);
}

// Sequences with a cached prefix (`cached` tokens) and a chunk of `qlen` new query rows.
void check_prefill(const std::vector<std::pair<int, int>>& seqs, int Hq, int Hkv, int D, int bs) {
  std::vector<int> ctx;
  std::vector<int32_t> qstart{0};
  for (auto [cached, qlen] : seqs) {
    ctx.push_back(cached + qlen);
    qstart.push_back(qstart.back() + qlen);
  }
  const int S = static_cast<int>(seqs.size()), T = qstart.back();
  PagedSeqs c = make_cache(ctx, bs, Hkv, D);
  auto q = random_bf16(static_cast<size_t>(T) * Hq * D);
  std::vector<int32_t> tile_seq, tile_row0;
  for (int s = 0; s < S; s++)
    for (int r = 0; r < seqs[s].second; r += kPrefillRows) {
      tile_seq.push_back(s);
      tile_row0.push_back(r);
    }
  Dev<bf16> dq(q.size()), dk(c.k.size()), dv(c.v.size()), dout(q.size());
  Dev<int32_t> dt(c.tables.size()), dc(S), dqs(S + 1), dts(tile_seq.size()), dtr(tile_row0.size());
  dq.put(*reinterpret_cast<std::vector<bf16>*>(&q));
  dk.put(*reinterpret_cast<std::vector<bf16>*>(&c.k));
  dv.put(*reinterpret_cast<std::vector<bf16>*>(&c.v));
  dt.put(c.tables);
  dc.put(std::vector<int32_t>(ctx.begin(), ctx.end()));
  dqs.put(qstart);
  dts.put(tile_seq);
  dtr.put(tile_row0);
  dout.poison();
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  PrefillAttentionParams p{dq.p, dk.p, dv.p, dt.p, dc.p, dqs.p, dts.p, dtr.p, dout.p, static_cast<int>(tile_seq.size()), Hq, Hkv, bs,
                           c.max_blocks, Hq * D, Hq * D, scale};
  launch_prefill_attention(p, D, nullptr);
  PAGODA_CUDA_CHECK(cudaDeviceSynchronize());
  auto got = dout.get();
  // reference on up to 96 (row, head) pairs
  std::vector<std::pair<int, int>> rows;
  for (int t = 0; t < T; t++)
    for (int h = 0; h < Hq; h++) rows.push_back({t, h});
  std::shuffle(rows.begin(), rows.end(), rng);
  rows.resize(std::min<size_t>(rows.size(), 96));
  std::vector<float> ref(rows.size() * D), gpu(rows.size() * D);
#pragma omp parallel for schedule(dynamic)
  for (size_t i = 0; i < rows.size(); i++) {
    auto [t, h] = rows[i];
    int s = 0;
    while (qstart[s + 1] <= t) s++;
    const int pos = seqs[s].first + (t - qstart[s]);
    reference::attention_row(q.data() + (static_cast<size_t>(t) * Hq + h) * D, c.k.data(), c.v.data(),
                             c.tables.data() + static_cast<size_t>(s) * c.max_blocks, pos, h / (Hq / Hkv), Hkv, bs, D, scale,
                             ref.data() + i * D);
    for (int d = 0; d < D; d++) gpu[i * D + d] = bf16_to_f(reinterpret_cast<uint16_t*>(got.data())[(static_cast<size_t>(t) * Hq + h) * D + d]);
  }
  bool written;
  double err = rel_err([&](size_t i) { return gpu[i]; }, [&](size_t i) { return ref[i]; }, ref.size(), written);
  for (auto x : got)
    if (!std::isfinite(__bfloat162float(x))) written = false;
  std::string desc;
  for (size_t i = 0; i < seqs.size() && i < 3; i++) desc += std::to_string(seqs[i].first) + "+" + std::to_string(seqs[i].second) + " ";
  if (seqs.size() > 3) desc += "... (" + std::to_string(seqs.size()) + " seqs)";
  char name[200];
  std::snprintf(name, sizeof name, "prefill Hq=%-2d Hkv=%d D=%-3d bs=%-2d cached+new: %s", Hq, Hkv, D, bs, desc.c_str());
  report(name, err, written);
}

// ---- norm, rope, activation --------------------------------------------------------------------

// overlapped: a bf16 delta (the engine's projection output) written late by a kernel before it, the norm
// launched to overlap that kernel — a norm that read the delta early would produce NaNs.
void check_norm(int T, int H, bool overlapped = false) {
  std::normal_distribution<float> d(0, 1);
  std::vector<float> res(static_cast<size_t>(T) * H), delta(res.size());
  for (auto& x : res) x = d(rng);
  for (auto& x : delta) x = overlapped ? bf16_to_f(f_to_bf16(d(rng))) : d(rng);
  auto w = random_bf16(H);
  Dev<float> dr(res.size()), dd(delta.size());
  Dev<bf16> dw(H), dout(res.size()), dd16(delta.size()), dsrc(delta.size());
  dr.put(res);
  dd.put(delta);
  dw.put(*reinterpret_cast<std::vector<bf16>*>(&w));
  dout.poison();
  if (overlapped) {
    std::vector<uint16_t> bits(delta.size());
    for (size_t i = 0; i < bits.size(); i++) bits[i] = f_to_bf16(delta[i]);
    dsrc.put(*reinterpret_cast<std::vector<bf16>*>(&bits));
    dd16.poison();
    slow_copy(dsrc.p, dd16.p, T * H);
    launch_add_rmsnorm(dr.p, dd16.p, dw.p, dout.p, nullptr, T, H, 1e-6f, nullptr, /*overlap=*/true);
  } else {
    launch_add_rmsnorm(dr.p, dd.p, dw.p, dout.p, nullptr, T, H, 1e-6f, nullptr);
  }
  PAGODA_CUDA_CHECK(cudaDeviceSynchronize());
  auto got = dout.get();
  auto got_res = dr.get();
  std::vector<float> ref(res.size());
  double res_err = 0;
  for (int t = 0; t < T; t++) {
    double ss = 0;
    for (int i = 0; i < H; i++) {
      const float x = res[t * H + i] + delta[t * H + i];
      res_err = std::max(res_err, static_cast<double>(std::fabs(x - got_res[t * H + i])));
      ss += static_cast<double>(x) * x;
    }
    const double inv = 1.0 / std::sqrt(ss / H + 1e-6);
    for (int i = 0; i < H; i++) ref[t * H + i] = static_cast<float>(bf16_to_f(w[i]) * (res[t * H + i] + delta[t * H + i]) * inv);
  }
  bool written;
  double err = rel_err([&](size_t i) { return __bfloat162float(got[i]); }, [&](size_t i) { return ref[i]; }, ref.size(), written);
  report("add_rmsnorm T=" + std::to_string(T) + " H=" + std::to_string(H) + (overlapped ? " bf16 delta written late, overlapped" : ""),
         std::max(err, res_err), written);
}

// overlapped: the projection written late by a kernel before it (poisoned until then), qkv_rope launched
// to overlap that kernel.
void check_qkv_rope(int T, int Hq, int Hkv, int D, bool qk_norm, bool bias, bool overlapped = false) {
  const int W = (Hq + 2 * Hkv) * D, bs = 16, blocks = ceil_div(T, bs) + 2;
  auto qkv = random_bf16(static_cast<size_t>(T) * W);
  auto b = random_bf16(W, 0.1f), qn = random_bf16(D, 0.5f), kn = random_bf16(D, 0.5f);
  std::vector<float> inv(D / 2);
  for (int i = 0; i < D / 2; i++) inv[i] = 1.0f / std::pow(1e6f, 2.0f * i / D);
  std::vector<int32_t> pos(T), slot(T);
  std::vector<int32_t> perm(blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  for (int t = 0; t < T; t++) {
    pos[t] = 1000 + 3 * t;
    slot[t] = t % 5 == 4 ? -1 : perm[t / bs] * bs + t % bs;  // some padding rows
  }
  Dev<bf16> dqkv(qkv.size()), db(W), dqn(D), dkn(D), dq(static_cast<size_t>(T) * Hq * D);
  Dev<bf16> dkc(static_cast<size_t>(blocks) * Hkv * bs * D), dvc(static_cast<size_t>(blocks) * Hkv * bs * D);
  Dev<float> dinv(D / 2);
  Dev<int32_t> dpos(T), dslot(T);
  dqkv.put(*reinterpret_cast<std::vector<bf16>*>(&qkv));
  db.put(*reinterpret_cast<std::vector<bf16>*>(&b));
  dqn.put(*reinterpret_cast<std::vector<bf16>*>(&qn));
  dkn.put(*reinterpret_cast<std::vector<bf16>*>(&kn));
  dinv.put(inv);
  dpos.put(pos);
  dslot.put(slot);
  dq.poison();
  dkc.poison();
  dvc.poison();
  Dev<bf16> dlate(overlapped ? qkv.size() : 0);
  if (overlapped) {
    dlate.poison();
    slow_copy(dqkv.p, dlate.p, T * W);
  }
  QkvRopeParams p{overlapped ? dlate.p : dqkv.p, bias ? db.p : nullptr, qk_norm ? dqn.p : nullptr, qk_norm ? dkn.p : nullptr, dinv.p,
                  dpos.p, dslot.p, dq.p, dkc.p, dvc.p, T, Hq, Hkv, bs, W, 1e-6f};
  launch_qkv_rope(p, D, nullptr, overlapped);
  PAGODA_CUDA_CHECK(cudaDeviceSynchronize());
  auto gq = dq.get(), gk = dkc.get(), gv = dvc.get();
  std::vector<float> ref, gpu;
  bool written = true;
  for (int t = 0; t < T; t++) {
    for (int h = 0; h < Hq + 2 * Hkv; h++) {
      std::vector<float> x(D);
      for (int i = 0; i < D; i++) x[i] = bf16_to_f(qkv[static_cast<size_t>(t) * W + h * D + i]) + (bias ? bf16_to_f(b[h * D + i]) : 0.0f);
      const bool is_v = h >= Hq + Hkv;
      if (!is_v) {
        if (qk_norm) {
          double ss = 0;
          for (float v : x) ss += static_cast<double>(v) * v;
          const float invn = static_cast<float>(1.0 / std::sqrt(ss / D + 1e-6));
          const auto& nw = h < Hq ? qn : kn;
          for (int i = 0; i < D; i++) x[i] = bf16_to_f(nw[i]) * x[i] * invn;
        }
        for (int i = 0; i < D / 2; i++) {
          const double a = x[i], c = x[i + D / 2], ang = static_cast<double>(pos[t]) * inv[i];
          x[i] = static_cast<float>(a * std::cos(ang) - c * std::sin(ang));
          x[i + D / 2] = static_cast<float>(c * std::cos(ang) + a * std::sin(ang));
        }
      }
      for (int i = 0; i < D; i++) {
        float g;
        if (h < Hq) {
          g = __bfloat162float(gq[(static_cast<size_t>(t) * Hq + h) * D + i]);
        } else {
          if (slot[t] < 0) continue;
          const int kvh = is_v ? h - Hq - Hkv : h - Hq;
          const size_t at = ((static_cast<size_t>(slot[t] / bs) * Hkv + kvh) * bs + slot[t] % bs) * D + i;
          g = __bfloat162float(is_v ? gv[at] : gk[at]);
        }
        if (!std::isfinite(g)) written = false;
        ref.push_back(x[i]);
        gpu.push_back(g);
      }
    }
  }
  bool w2;
  double err = rel_err([&](size_t i) { return gpu[i]; }, [&](size_t i) { return ref[i]; }, ref.size(), w2);
  char name[200];
  std::snprintf(name, sizeof name, "qkv_rope T=%d Hq=%d Hkv=%d D=%d qk_norm=%d bias=%d%s", T, Hq, Hkv, D, qk_norm, bias,
                overlapped ? " written late, overlapped" : "");
  report(name, err, written && w2, 1e-2);
}

void check_silu(int T, int I) {
  auto gu = random_bf16(static_cast<size_t>(T) * 2 * I);
  Dev<bf16> dgu(gu.size()), dout(static_cast<size_t>(T) * I);
  dgu.put(*reinterpret_cast<std::vector<bf16>*>(&gu));
  dout.poison();
  launch_silu_and_mul(dgu.p, dout.p, T, I, nullptr);
  PAGODA_CUDA_CHECK(cudaDeviceSynchronize());
  auto got = dout.get();
  bool written;
  double err = rel_err([&](size_t i) { return __bfloat162float(got[i]); },
                       [&](size_t i) {
                         const size_t t = i / I, j = i % I;
                         const float g = bf16_to_f(gu[t * 2 * I + j]), u = bf16_to_f(gu[t * 2 * I + I + j]);
                         return g / (1.0f + std::exp(-g)) * u;
                       },
                       got.size(), written);
  report("silu_and_mul T=" + std::to_string(T) + " I=" + std::to_string(I), err, written);
}

// ---- skinny GEMM (decode-step linear layers, M <= 4) ---------------------------------------------

// ldy > N: Y is a slice of a wider output (a vocabulary-parallel LM head); the columns past N stay untouched.
template <typename OutT>
void check_skinny_gemm(int M, int N, int K, int ldy = 0) {
  if (ldy == 0) ldy = N;
  auto w = random_bf16(static_cast<size_t>(N) * K), x = random_bf16(static_cast<size_t>(M) * K);
  Dev<bf16> dw(w.size()), dx(x.size());
  Dev<OutT> dy(static_cast<size_t>(M) * ldy);
  dw.put(*reinterpret_cast<std::vector<bf16>*>(&w));
  dx.put(*reinterpret_cast<std::vector<bf16>*>(&x));
  dy.poison();
  launch_skinny_gemm(dw.p, dx.p, dy.p, M, N, K, nullptr, ldy);
  PAGODA_CUDA_CHECK(cudaDeviceSynchronize());
  auto got = dy.get();
  std::vector<double> ref(static_cast<size_t>(M) * N);
#pragma omp parallel for
  for (int n = 0; n < N; n++)
    for (int m = 0; m < M; m++) {
      double acc = 0;
      for (int k = 0; k < K; k++) acc += double(bf16_to_f(w[static_cast<size_t>(n) * K + k])) * bf16_to_f(x[static_cast<size_t>(m) * K + k]);
      ref[static_cast<size_t>(m) * N + n] = acc;
    }
  bool written;
  const auto at = [&](size_t i) { return got[(i / N) * ldy + i % N]; };
  double err = rel_err([&](size_t i) { return static_cast<double>(to_host_float(at(i))); }, [&](size_t i) { return ref[i]; }, ref.size(),
                       written);
  bool outside_untouched = true;
  for (int m = 0; m < M; m++)
    for (int n = N; n < ldy; n++) outside_untouched = outside_untouched && std::isnan(to_host_float(got[static_cast<size_t>(m) * ldy + n]));
  char name[200];
  std::snprintf(name, sizeof name, "skinny_gemm M=%d N=%d K=%d ldy=%d out=%s", M, N, K, ldy, sizeof(OutT) == 4 ? "f32" : "bf16");
  report(name, outside_untouched ? err : 1.0, written, sizeof(OutT) == 4 ? 1e-4 : 1e-2);
}

// Programmatic dependent launch: a skinny GEMM launched to overlap the kernel that writes its X (X
// poisoned until then) must wait for it — a GEMM that read X early would produce NaNs.
void check_skinny_gemm_overlapped(int N, int K) {
  auto w = random_bf16(static_cast<size_t>(N) * K), x = random_bf16(K);
  Dev<bf16> dw(w.size()), dsrc(x.size()), dx(x.size());
  Dev<float> dy(N);
  dw.put(*reinterpret_cast<std::vector<bf16>*>(&w));
  dsrc.put(*reinterpret_cast<std::vector<bf16>*>(&x));
  dx.poison();
  dy.poison();
  slow_copy(dsrc.p, dx.p, K);
  launch_skinny_gemm(dw.p, dx.p, dy.p, 1, N, K, nullptr, 0, /*overlap=*/true);
  PAGODA_CUDA_CHECK(cudaDeviceSynchronize());
  auto got = dy.get();
  std::vector<double> ref(N);
  for (int n = 0; n < N; n++) {
    double acc = 0;
    for (int k = 0; k < K; k++) acc += double(bf16_to_f(w[static_cast<size_t>(n) * K + k])) * bf16_to_f(x[k]);
    ref[n] = acc;
  }
  bool written;
  const double err = rel_err([&](size_t i) { return static_cast<double>(got[i]); }, [&](size_t i) { return ref[i]; }, ref.size(), written);
  char name[200];
  std::snprintf(name, sizeof name, "skinny_gemm N=%d K=%d launched to overlap the kernel writing X", N, K);
  report(name, err, written, 1e-4);
}

// The gate/up projection with the activation in its epilogue: out[m, n] = silu(g) * u for g, u the
// products of X row m with weight rows n and I + n. `overlapped`: launched to overlap a slow kernel that
// writes X (poisoned until then), as the engine launches it after the MLP's norm.
void check_skinny_gemm_silu_mul(int M, int I, int K, bool overlapped = false) {
  auto w = random_bf16(static_cast<size_t>(2) * I * K), x = random_bf16(static_cast<size_t>(M) * K);
  Dev<bf16> dw(w.size()), dsrc(x.size()), dx(x.size()), dy(static_cast<size_t>(M) * I);
  dw.put(*reinterpret_cast<std::vector<bf16>*>(&w));
  dsrc.put(*reinterpret_cast<std::vector<bf16>*>(&x));
  dx.poison();
  dy.poison();
  if (overlapped) slow_copy(dsrc.p, dx.p, M * K);
  else PAGODA_CUDA_CHECK(cudaMemcpy(dx.p, dsrc.p, x.size() * sizeof(bf16), cudaMemcpyDeviceToDevice));
  launch_skinny_gemm_silu_mul(dw.p, dx.p, dy.p, M, I, K, nullptr, overlapped);
  PAGODA_CUDA_CHECK(cudaDeviceSynchronize());
  auto got = dy.get();
  std::vector<double> ref(static_cast<size_t>(M) * I);
  const auto dot = [&](int row, int m) {
    double acc = 0;
    for (int k = 0; k < K; k++) acc += double(bf16_to_f(w[static_cast<size_t>(row) * K + k])) * bf16_to_f(x[static_cast<size_t>(m) * K + k]);
    return acc;
  };
#pragma omp parallel for
  for (int n = 0; n < I; n++)
    for (int m = 0; m < M; m++) {
      const double g = dot(n, m), u = dot(I + n, m);
      ref[static_cast<size_t>(m) * I + n] = g / (1.0 + std::exp(-g)) * u;
    }
  bool written;
  const double err = rel_err([&](size_t i) { return static_cast<double>(__bfloat162float(got[i])); }, [&](size_t i) { return ref[i]; },
                             ref.size(), written);
  char name[200];
  std::snprintf(name, sizeof name, "skinny_gemm_silu_mul M=%d I=%d K=%d%s", M, I, K, overlapped ? " launched to overlap the kernel writing X" : "");
  report(name, err, written, 1e-2);
}

// ---- sampling ------------------------------------------------------------------------------------

// Scratch for token selection split over several CTAs per row (launch_sample with splits > 1).
struct SampleSplitScratch {
  Dev<RowScan> partials;
  Dev<int32_t> arrivals;
  explicit SampleSplitScratch(int R) : partials(static_cast<size_t>(R) * kSampleMaxSplits), arrivals(R) {
    PAGODA_CUDA_CHECK(cudaMemset(arrivals.p, 0, R * sizeof(int32_t)));
  }
  void attach(SamplingParams& p) {
    p.partials = partials.p;
    p.arrivals = arrivals.p;
  }
};

// One launch_sample call's per-row settings on the device, and its outputs (tokens, logprobs).
struct SamplingRows {
  Dev<float> temperature, top_p, min_p, logprobs;
  Dev<int32_t> top_k, step, tokens;
  Dev<uint32_t> seed;  // [R * 2] low, high words
  SamplingRows(const std::vector<float>& t, const std::vector<float>& tp, const std::vector<float>& mp, const std::vector<int32_t>& k,
               const std::vector<int32_t>& st, const std::vector<uint32_t>& sd)
      : temperature(t.size()), top_p(t.size()), min_p(t.size()), logprobs(t.size()), top_k(t.size()), step(t.size()),
        tokens(t.size()), seed(sd.size()) {
    temperature.put(t);
    top_p.put(tp);
    min_p.put(mp);
    top_k.put(k);
    step.put(st);
    seed.put(sd);
  }
  SamplingParams params(const float* logits, const float* raw, int V) const {
    return {logits, raw, temperature.p, top_p.p, top_k.p, min_p.p, seed.p, step.p, tokens.p, logprobs.p, static_cast<int>(tokens.n), V};
  }
};

int gpu_sms() {
  cudaDeviceProp prop{};
  PAGODA_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  return prop.multiProcessorCount;
}

// Filtered rows (top-k, top-p, min-p, combined) and greedy ones: each token inside its filter, the
// same tokens with and without split rows; then the empirical distribution of 4096 seeded draws from
// one small row against softmax(x / T) renormalised over the filter's set.
void check_sampling(int R, int V) {
  std::normal_distribution<float> d(0, 3);
  std::vector<float> logits(static_cast<size_t>(R) * V);
  for (auto& x : logits) x = d(rng);
  // row r % 8: greedy; top-k 3; top-p 0.05; min-p 0.5; top-k 50; top-p 0.9; top-k 20 and top-p 0.95; plain
  const int kinds = 8;
  std::vector<float> temp(R), top_p(R, 1.0f), min_p(R, 0.0f);
  std::vector<int32_t> top_k(R, 0), step(R, 5);
  std::vector<uint32_t> seed(2 * R);
  for (int r = 0; r < R; r++) {
    temp[r] = r % kinds == 0 ? 0.0f : 0.8f;
    if (r % kinds == 1) top_k[r] = 3;
    if (r % kinds == 2) top_p[r] = 0.05f;
    if (r % kinds == 3) min_p[r] = 0.5f;
    if (r % kinds == 4) top_k[r] = 50;
    if (r % kinds == 5) top_p[r] = 0.9f;
    if (r % kinds == 6) {
      top_k[r] = 20;
      top_p[r] = 0.95f;
    }
    seed[2 * r] = static_cast<uint32_t>(rng());
  }
  Dev<float> dl(logits.size());
  dl.put(logits);
  SamplingRows rows(temp, top_p, min_p, top_k, step, seed);
  SamplingParams p = rows.params(dl.p, dl.p, V);
  SampleSplitScratch split(R);
  split.attach(p);
  launch_sample(p, kSampleMaxSplits, nullptr);  // greedy and plain rows split, filtered rows in their first CTA
  PAGODA_CUDA_CHECK(cudaDeviceSynchronize());
  auto tok = rows.tokens.get();
  auto lp = rows.logprobs.get();
  launch_sample(p, 1, nullptr);  // same seeds, same steps, one CTA per row: same tokens
  auto tok2 = rows.tokens.get();
  int bad = 0;
  double lp_err = 0;
  for (int r = 0; r < R; r++) {
    const float* x = logits.data() + static_cast<size_t>(r) * V;
    std::vector<int> order(V);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int a, int b) { return x[a] > x[b] || (x[a] == x[b] && a < b); });
    const int t = tok[r];
    if (t < 0 || t >= V || tok2[r] != t) {
      bad++;
      continue;
    }
    const int rank = static_cast<int>(std::find(order.begin(), order.end(), t) - order.begin());
    const float T = temp[r];
    // the smallest set of the most likely tokens whose probability reaches `frac` of the first `within`
    const auto nucleus = [&](double frac, int within) {
      double z = 0, cum = 0;
      for (int i = 0; i < within; i++) z += std::exp((x[order[i]] - x[order[0]]) / T);
      int keep = 0;
      while (cum < frac * z) cum += std::exp((x[order[keep++]] - x[order[0]]) / T);
      return keep;
    };
    const int kind = r % kinds;
    if (kind == 0 && rank != 0) bad++;
    if ((kind == 1 && rank >= 3) || (kind == 4 && rank >= 50)) bad++;
    // +1: a token on the boundary of the probability threshold (float32 on the GPU)
    if (kind == 2 && rank >= nucleus(0.05, V) + 1) bad++;
    if (kind == 5 && rank >= nucleus(0.9, V) + 1) bad++;
    if (kind == 6 && rank >= std::min(20, nucleus(0.95, 20) + 1)) bad++;
    if (kind == 3 && std::exp((x[t] - x[order[0]]) / T) < 0.5f * 0.999f) bad++;
    double mx = x[order[0]], se = 0;
    for (int i = 0; i < V; i++) se += std::exp(x[i] - mx);
    lp_err = std::max(lp_err, std::fabs(lp[r] - (x[t] - mx - std::log(se))));
  }
  checks++;
  const bool ok = bad == 0 && lp_err < 1e-3;
  if (!ok) failures++;
  std::printf("%-4s %-78s %d bad rows, logprob err %.1e\n", ok ? "ok" : "FAIL",
              ("sample R=" + std::to_string(R) + " V=" + std::to_string(V) + " greedy/top-k/top-p/min-p, reproducible").c_str(), bad, lp_err);

  // Empirical distributions over 4096 seeds of one small row: plain temperature, top-k 3, top-p 0.9.
  const int V2 = 8, N = 4096;
  const float base[V2] = {2.0f, 1.0f, 0.5f, 0.0f, -0.5f, -1.0f, 1.5f, 0.2f};
  std::vector<float> small(static_cast<size_t>(N) * V2);
  for (int r = 0; r < N; r++)
    for (int i = 0; i < V2; i++) small[static_cast<size_t>(r) * V2 + i] = base[i];
  struct Filter {
    const char* name;
    int top_k;
    float top_p;
    int kept;  // the most likely tokens the filter keeps: 2.0, 1.5, 1.0, 0.5, ...
  };
  // at T 0.7 the top three hold 86 % of the mass, the top four 91 %: top-p 0.9 keeps four
  for (const Filter& f : {Filter{"temperature 0.7", 0, 1.0f, V2}, Filter{"temperature 0.7, top-k 3", 3, 1.0f, 3},
                          Filter{"temperature 0.7, top-p 0.9", 0, 0.9f, 4}}) {
    std::vector<float> t2(N, 0.7f), p2(N, f.top_p), m2(N, 0.0f);
    std::vector<int32_t> k2(N, f.top_k), s2(N);
    std::vector<uint32_t> seed2(2 * N);
    for (int r = 0; r < N; r++) {
      s2[r] = r;
      seed2[2 * r] = 12345;
    }
    Dev<float> dl2(small.size());
    dl2.put(small);
    SamplingRows rows2(t2, p2, m2, k2, s2, seed2);
    const SamplingParams p2s = rows2.params(dl2.p, dl2.p, V2);
    launch_sample(p2s, 1, nullptr);
    PAGODA_CUDA_CHECK(cudaDeviceSynchronize());
    auto t2out = rows2.tokens.get();
    std::vector<int> by_prob(V2);
    std::iota(by_prob.begin(), by_prob.end(), 0);
    std::sort(by_prob.begin(), by_prob.end(), [&](int a, int b) { return base[a] > base[b]; });
    std::vector<double> freq(V2, 0), want(V2, 0);
    double z = 0;
    for (int j = 0; j < f.kept; j++) z += std::exp(base[by_prob[j]] / 0.7);
    for (int j = 0; j < f.kept; j++) want[by_prob[j]] = std::exp(base[by_prob[j]] / 0.7) / z;
    for (int t : t2out) freq[t] += 1.0 / N;
    double worst = 0;
    for (int i = 0; i < V2; i++) worst = std::max(worst, std::fabs(freq[i] - want[i]));
    checks++;
    const bool ok2 = worst < 0.03;
    if (!ok2) failures++;
    std::printf("%-4s %-78s max |freq - p| %.3f\n", ok2 ? "ok" : "FAIL",
                (std::string("sample: ") + f.name + ", frequencies over 4096 draws match softmax").c_str(), worst);
  }
}

// The host's copy of the GPU's noise (noise_key / exponential_noise in sampling.cuh), in double precision.
uint64_t host_mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
// -log(u) for the token's uniform u = (m + 0.5) / 2^24, as exponential_noise computes it.
double host_exponential_noise(uint64_t seed, uint32_t step, uint32_t index) {
  const uint64_t key = host_mix64(seed + 0x9e3779b97f4a7c15ULL * (static_cast<uint64_t>(step) + 1));
  const uint64_t m = host_mix64(key ^ (0xd1b54a32d192ed03ULL * (static_cast<uint64_t>(index) + 1))) >> 40;
  return -std::log1p(-(16777215.0 - static_cast<double>(m) + 0.5) / 16777216.0);
}

// Unfiltered rows (the one-pass path): the drawn token is exactly the host's Gumbel-max argmax of
// x / T - log(-log u) over the same noise, or a near-tie of it (fast-math logs on the GPU); greedy rows
// give the argmax; log-probabilities are of the raw logits even when a penalised copy is sampled.
void check_sampling_exact(int R, int V, bool penalised) {
  std::normal_distribution<float> d(0, 3);
  std::vector<float> raw(static_cast<size_t>(R) * V), work(raw.size());
  for (auto& x : raw) x = d(rng);
  std::uniform_real_distribution<float> shift(-2.0f, 2.0f);
  for (size_t i = 0; i < raw.size(); i++) work[i] = penalised && i % 7 == 0 ? raw[i] + shift(rng) : raw[i];
  std::vector<float> temp(R), top_p(R, 1.0f), min_p(R, 0.0f);
  std::vector<int32_t> top_k(R, 0), step(R);
  std::vector<uint32_t> seed(2 * R);
  for (int r = 0; r < R; r++) {
    temp[r] = r % 5 == 0 ? 0.0f : 0.3f + 0.1f * static_cast<float>(r % 9);
    if (r % 10 == 3) top_k[r] = V;  // covers the whole vocabulary: no filter
    step[r] = static_cast<int32_t>(rng() % 1000);
    seed[2 * r] = static_cast<uint32_t>(rng());
    seed[2 * r + 1] = static_cast<uint32_t>(rng());
  }
  Dev<float> dw(work.size()), draw(raw.size());
  dw.put(work);
  draw.put(raw);
  SamplingRows rows(temp, top_p, min_p, top_k, step, seed);
  SamplingParams p = rows.params(dw.p, penalised ? draw.p : dw.p, V);
  SampleSplitScratch scratch(R);
  scratch.attach(p);
  rows.tokens.poison();
  launch_sample(p, 1, nullptr);
  const auto whole = rows.tokens.get();
  const int splits = sample_splits(R, gpu_sms());
  rows.tokens.poison();
  rows.logprobs.poison();
  for (int rep = 0; rep < 2; rep++) launch_sample(p, splits, nullptr);  // twice: the counters re-arm
  PAGODA_CUDA_CHECK(cudaDeviceSynchronize());
  const auto tok = rows.tokens.get();
  const auto lp = rows.logprobs.get();
  int bad = 0, near_ties = 0;
  for (int r = 0; r < R; r++) bad += tok[r] != whole[r];  // slices merged: the same draw as one CTA
  double lp_err = 0;
  for (int r = 0; r < R; r++) {
    const float* x = work.data() + static_cast<size_t>(r) * V;
    const float* xr = raw.data() + static_cast<size_t>(r) * V;
    const uint64_t s = static_cast<uint64_t>(seed[2 * r]) | static_cast<uint64_t>(seed[2 * r + 1]) << 32;
    std::vector<double> key(V);
    int want = 0;
    for (int i = 0; i < V; i++) {
      key[i] = temp[r] == 0.0f ? x[i] : x[i] / static_cast<double>(temp[r]) -
                                            std::log(host_exponential_noise(s, static_cast<uint32_t>(step[r]), static_cast<uint32_t>(i)));
      if (key[i] > key[want]) want = i;
    }
    const int t = tok[r];
    if (t < 0 || t >= V) {
      bad++;
      continue;
    }
    if (t != want) {
      if (key[want] - key[t] < 1e-4 * (1.0 + std::fabs(key[want]))) near_ties++;
      else bad++;
    }
    double mx = xr[0], se = 0;
    for (int i = 0; i < V; i++) mx = std::max(mx, static_cast<double>(xr[i]));
    for (int i = 0; i < V; i++) se += std::exp(xr[i] - mx);
    lp_err = std::max(lp_err, std::fabs(lp[r] - (xr[t] - mx - std::log(se))));
  }
  checks++;
  const bool ok = bad == 0 && near_ties <= R / 16 && lp_err < 1e-3;
  if (!ok) failures++;
  char name[200];
  std::snprintf(name, sizeof name, "sample R=%d V=%d unfiltered rows%s, %d CTAs per row: the host's Gumbel-max draw", R, V,
                penalised ? ", penalised copy" : "", splits);
  std::printf("%-4s %-78s %d bad rows, %d near-ties, logprob err %.1e\n", ok ? "ok" : "FAIL", name, bad, near_ties, lp_err);
}

// Repetition / frequency / presence penalties applied to a working copy of the logits.
void check_penalties(int R, int V) {
  std::normal_distribution<float> d(0, 2);
  std::vector<float> logits(static_cast<size_t>(R) * V);
  for (auto& x : logits) x = d(rng);
  std::vector<float> rep(R), freq(R), pres(R);
  std::vector<PenaltyEntry> entries;
  std::uniform_int_distribution<int> tok(0, V - 1), cnt(0, 3);
  for (int r = 0; r < R; r++) {
    rep[r] = r % 3 == 0 ? 1.0f : 1.3f;
    freq[r] = r % 2 == 0 ? 0.5f : 0.0f;
    pres[r] = r % 5 == 0 ? 0.0f : 0.7f;
    std::vector<int> used;
    for (int k = 0; k < 40; k++) {
      const int t = tok(rng);
      if (std::find(used.begin(), used.end(), t) != used.end()) continue;  // entries are unique per (row, token)
      used.push_back(t);
      entries.push_back({r, t, cnt(rng), k % 2, k % 7 == 0 ? -100.0f : (k % 3 == 0 ? 2.5f : 0.0f)});
    }
  }
  std::vector<float> ref = logits;
  for (const auto& e : entries) {
    float& x = ref[static_cast<size_t>(e.row) * V + e.token];
    if (e.in_context && rep[e.row] != 1.0f) x = x > 0 ? x / rep[e.row] : x * rep[e.row];
    if (e.output_count > 0) x -= freq[e.row] * e.output_count + pres[e.row];
    x += e.bias;
  }
  Dev<float> dl(logits.size()), dr(R), df(R), dp(R);
  Dev<PenaltyEntry> de(entries.size());
  dl.put(logits);
  dr.put(rep);
  df.put(freq);
  dp.put(pres);
  de.put(entries);
  launch_apply_penalties(dl.p, de.p, dr.p, df.p, dp.p, static_cast<int>(entries.size()), V, nullptr);
  PAGODA_CUDA_CHECK(cudaDeviceSynchronize());
  auto got = dl.get();
  bool written;
  double err = rel_err([&](size_t i) { return got[i]; }, [&](size_t i) { return ref[i]; }, ref.size(), written);
  report("penalties R=" + std::to_string(R) + " V=" + std::to_string(V) + " (repetition, frequency, presence, bias)", err, written, 1e-6);
}

// Decode entries that are a subset of the batch's sequences at arbitrary rows (mixed batches).
void check_decode_indirect() {
  const int S = 6, Hq = 16, Hkv = 8, D = 128, bs = 16;
  std::vector<int> ctx = {40, 300, 17, 1, 999, 64};
  PagedSeqs c = make_cache(ctx, bs, Hkv, D);
  const std::vector<int32_t> entry_seq = {4, 1, 3}, entry_row = {9, 2, 5};
  const int rows = 12;
  auto q = random_bf16(static_cast<size_t>(rows) * Hq * D);
  Dev<bf16> dq(q.size()), dk(c.k.size()), dv(c.v.size()), dout(q.size());
  Dev<int32_t> dt(c.tables.size()), dc(S), des(3), der(3);
  Dev<bf16> pacc(3 * Hq * 4 * D);
  Dev<float> pml(3 * Hq * 4 * 2);
  dq.put(*reinterpret_cast<std::vector<bf16>*>(&q));
  dk.put(*reinterpret_cast<std::vector<bf16>*>(&c.k));
  dv.put(*reinterpret_cast<std::vector<bf16>*>(&c.v));
  dt.put(c.tables);
  dc.put(std::vector<int32_t>(ctx.begin(), ctx.end()));
  des.put(entry_seq);
  der.put(entry_row);
  dout.poison();
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  DecodeAttentionParams p{dq.p, dk.p, dv.p, dt.p, dc.p, des.p, der.p, dout.p, pacc.p, pml.p, 3, Hq, Hkv, bs, c.max_blocks, 4, Hq * D, Hq * D, scale};
  launch_decode_attention(p, D, nullptr);
  PAGODA_CUDA_CHECK(cudaDeviceSynchronize());
  auto got = dout.get();
  std::vector<float> ref, gpu;
  bool written = true;
  for (int e = 0; e < 3; e++)
    for (int h = 0; h < Hq; h++) {
      std::vector<float> o(D);
      const int s = entry_seq[e], r = entry_row[e];
      reference::attention_row(q.data() + (static_cast<size_t>(r) * Hq + h) * D, c.k.data(), c.v.data(),
                               c.tables.data() + static_cast<size_t>(s) * c.max_blocks, ctx[s] - 1, h / (Hq / Hkv), Hkv, bs, D, scale, o.data());
      for (int i = 0; i < D; i++) {
        const float g = __bfloat162float(got[(static_cast<size_t>(r) * Hq + h) * D + i]);
        if (!std::isfinite(g)) written = false;
        ref.push_back(o[i]);
        gpu.push_back(g);
      }
    }
  bool w2;
  double err = rel_err([&](size_t i) { return gpu[i]; }, [&](size_t i) { return ref[i]; }, ref.size(), w2);
  report("decode  entries mapped to (sequence, row) pairs of a mixed batch, splits=4", err, written && w2);
}

void check_rejections() {
  checks++;
  bool rejected = false;
  try {
    DecodeAttentionParams p{};
    p.E = 1;
    p.Hq = 8;
    p.Hkv = 8;
    p.splits = 1;
    launch_decode_attention(p, 96, nullptr);
  } catch (const std::exception& e) {
    rejected = std::string(e.what()).find("unsupported head_dim: 96") != std::string::npos;
  }
  bool rejected2 = false;
  try {
    PrefillAttentionParams p{};
    p.num_tiles = 1;
    p.Hq = 8;
    p.Hkv = 8;
    launch_prefill_attention(p, 256, nullptr);
  } catch (const std::exception& e) {
    rejected2 = std::string(e.what()).find("unsupported head_dim: 256") != std::string::npos;
  }
  if (!(rejected && rejected2)) failures++;
  std::printf("%-4s %-78s\n", rejected && rejected2 ? "ok" : "FAIL", "unsupported head_dim (96 decode, 256 prefill) rejected with a clear error");
  checks++;
  bool rejected3 = false;
  try {
    launch_skinny_gemm<float>(nullptr, nullptr, nullptr, 1, 8, 12, nullptr);
  } catch (const std::exception& e) {
    rejected3 = std::string(e.what()).find("K a multiple of 8") != std::string::npos;
  }
  if (!rejected3) failures++;
  std::printf("%-4s %-78s\n", rejected3 ? "ok" : "FAIL", "skinny_gemm with K not a multiple of 8 rejected with a clear error");
}

int main() {
  omp_set_num_threads(std::max(1, omp_get_num_procs()));
  // decode: head_dim 64/128, GQA 1/2/4/8, block sizes, contexts 1..32k, batch 1..256, split-K
  for (int D : {64, 128})
    for (int g : {1, 2, 4, 8}) check_decode(8, 300, 8 * g / (g == 8 ? 2 : 1), 8 / (g == 8 ? 2 : 1), D, 16, 1, true);
  check_decode(1, 1, 16, 8, 128, 16, 1, false);
  check_decode(3, 17, 9, 3, 64, 16, 1, false);  // SmolLM2-135M shapes (GQA 3)
  check_decode(1, 32768, 16, 8, 128, 16, 32, false);
  check_decode(1, 32768, 16, 8, 128, 16, 1, false);
  check_decode(64, 4096, 16, 8, 128, 16, 2, false);
  check_decode(256, 1024, 16, 8, 128, 16, 1, true);
  check_decode(32, 2000, 32, 8, 128, 32, 4, true);
  check_decode(16, 777, 14, 2, 64, 1, 3, true);  // GQA 7, block size 1
  check_decode(4, 5000, 64, 8, 128, 64, 8, true);
  // the tensor-core kernel for groups of 4 to 16: head dims, block sizes, splits, contexts from 1
  const auto mma = [](int D) {
    return [D](const DecodeAttentionParams& p) { launch_decode_attention_mma(p, D, nullptr); };
  };
  for (int D : {64, 128}) {
    check_decode(8, 300, 32, 8, D, 16, 1, true, mma(D), " mma");
    check_decode(8, 300, 64, 8, D, 16, 3, true, mma(D), " mma");
  }
  check_decode(1, 1, 32, 8, 128, 16, 1, false, mma(128), " mma");
  check_decode(3, 17, 16, 1, 64, 7, 2, true, mma(64), " mma");  // group 16, odd block size
  check_decode(16, 777, 16, 4, 128, 1, 4, true, mma(128), " mma");
  check_decode(1, 32768, 32, 8, 128, 16, 32, false, mma(128), " mma");
  check_decode(32, 5000, 32, 8, 128, 32, 1, true, mma(128), " mma");  // several block-table windows
  check_decode(8, 1000, 16, 8, 128, 16, 1, true, mma(128), " mma");   // groups of 2, 1 and 3
  check_decode(1, 32768, 16, 8, 128, 16, 49, false, mma(128), " mma");
  check_decode(8, 300, 8, 8, 64, 16, 3, true, mma(64), " mma");
  check_decode(4, 999, 12, 4, 128, 32, 2, true, mma(128), " mma");
  // the separate merge kernel (PAGODA_DECODE_MERGE=kernel), not overlapped
  check_decode(1, 32768, 16, 8, 128, 16, 64, false, {}, "", DecodeStyle::kSeparateMerge);
  check_decode(4, 5000, 64, 8, 128, 64, 8, true, {}, "", DecodeStyle::kSeparateMerge);
  check_decode(1, 32768, 32, 8, 128, 16, 32, false, mma(128), " mma", DecodeStyle::kSeparateMerge);
  check_decode(3, 17, 16, 1, 64, 7, 2, true, mma(64), " mma", DecodeStyle::kSeparateMerge);
  // the most splits the merge takes (with one head per CTA: the merge's largest share of splits per
  // thread), and splits longer than the context (empty ranges)
  check_decode(1, 40000, 16, 8, 128, 16, kDecodeMaxSplits, false);
  check_decode(2, 30000, 8, 8, 64, 16, kDecodeMaxSplits, false);
  check_decode(5, 100, 16, 8, 128, 16, 200, true);
  check_decode(7, 300, 8, 8, 64, 7, 64, true);  // head_dim 64, odd block size
  check_decode(5, 100, 32, 8, 128, 16, 200, true, mma(128), " mma");
  // every kernel variant measured for GQA group 4 (bench_kernels), split and unsplit
  for (int splits : {1, 3}) {
    const auto variant = [&](auto launch_main, int gc, const char* name) {
      check_decode(16, 700, 32, 8, 128, 16, splits, true, [&](const DecodeAttentionParams& p) {
        launch_main(p, dim3(p.Hq / gc, p.E, p.splits));
        launch_decode_merge<128>(p, nullptr);
      }, name);
    };
    variant([](const DecodeAttentionParams& p, dim3 g) { launch_decode_gc<128, 4, 4, 8>(p, g, nullptr); }, 4, " gc4 u4 dpt8");
    variant([](const DecodeAttentionParams& p, dim3 g) { launch_decode_gc<128, 4, 2, 8>(p, g, nullptr); }, 4, " gc4 u2 dpt8");
    variant([](const DecodeAttentionParams& p, dim3 g) { launch_decode_gc<128, 4, 1, 16>(p, g, nullptr); }, 4, " gc4 u1 dpt16");
    variant([](const DecodeAttentionParams& p, dim3 g) { launch_decode_gc<128, 2, 4, 8>(p, g, nullptr); }, 2, " gc2 u4 dpt8");
  }
  // prefill: fresh prompts, chunks after cached context (chunked prefill, prefix-cache hits), mixed batch
  for (int D : {64, 128}) {
    check_prefill({{0, 100}}, 8, 8, D, 16);
    check_prefill({{0, 64}, {0, 1}, {0, 65}}, 16, 4, D, 16);
    check_prefill({{128, 70}, {1000, 3}, {16, 200}}, 16, 8, D, 16);
  }
  check_prefill({{0, 8192}}, 16, 8, 128, 16);
  check_prefill({{4096, 512}, {0, 512}, {300, 512}}, 16, 8, 128, 32);
  check_prefill({{31, 33}, {7, 129}}, 9, 3, 64, 7);  // odd block size, GQA 3
  check_norm(7, 576);
  check_norm(64, 1024);
  check_norm(3, 4096);
  check_norm(1, 1024, true);
  for (int D : {64, 128}) {
    check_qkv_rope(37, 16, 8, D, true, false);
    check_qkv_rope(5, 14, 2, D, false, true);
    check_qkv_rope(1, 16, 8, D, true, false, true);
  }
  // skinny GEMM: every M it serves, K with and without a partial round (K / 8 not a multiple of 128),
  // Qwen3-0.6B / 8B-TP=2 shapes, both output types
  for (int M = 1; M <= 4; M++) check_skinny_gemm<float>(M, 1000, 1024);
  check_skinny_gemm<bf16>(1, 4096, 1024);
  check_skinny_gemm<bf16>(3, 517, 200);
  check_skinny_gemm<float>(2, 4096, 6144);
  check_skinny_gemm<bf16>(4, 3072, 4096);
  check_skinny_gemm<float>(1, 151936, 1024);
  check_skinny_gemm<float>(3, 75968, 4096, 151936);  // half of Qwen3-8B's LM head into the full logits
  check_skinny_gemm_overlapped(4096, 4096);
  check_skinny_gemm_overlapped(100, 520);  // no full round: every load after the wait
  // the gate/up projection with SiLU-and-mul fused: Qwen3-0.6B's and Qwen3-8B's TP=2 shapes, every M,
  // a partial round (K / 8 not a multiple of 128), and launched to overlap the kernel writing X
  check_skinny_gemm_silu_mul(1, 3072, 1024);
  check_skinny_gemm_silu_mul(1, 6144, 4096, true);
  for (int M = 2; M <= 4; M++) check_skinny_gemm_silu_mul(M, 1000, 520);
  check_skinny_gemm_silu_mul(1, 100, 200, true);  // no full round: every load after the wait
  check_silu(9, 3072);
  check_silu(64, 1536);
  check_decode_indirect();
  check_sampling(64, 151936);
  check_sampling_exact(64, 151936, false);
  check_sampling_exact(32, 151936, true);
  check_sampling_exact(32, 1001, false);
  check_sampling_exact(1, 151936, false);
  check_sampling_exact(3, 151936, true);
  check_sampling_exact(2, 1001, true);
  check_penalties(16, 151936);
  check_rejections();
  std::printf("\nkernel checks: %d passed, %d failed\n", checks - failures, failures);
  return failures == 0 ? 0 : 1;
}
