// Kernel benchmarks, printed as a table (the anchors from PyTorch are printed beside them by
// test/gpu/run.ts in the same run):
//   decode attention: achieved HBM bandwidth = bytes of K, V, q read once + output written, over time;
//   prefill attention: TFLOP/s (causal: 4 * heads * D * sum of attended keys);
//   the linear layers of one decode step (Qwen3-0.6B; Qwen3-8B at TP=1 and 2), graph-replayed: cuBLAS and
//   Pagoda's skinny kernel for M <= 4.
//   token selection (--sampling): one sample_kernel call over R float32 logit rows.
// Timing: CUDA events, warm-up, median of repeated runs, inputs rotated across several buffers so
// repeated runs do not read from L2.
#include <cublas_v2.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "activation.cuh"
#include "decode_attention.cuh"
#include "decode_attention_mma.cuh"
#include "prefill_attention.cuh"
#include "sampling.cuh"
#include "skinny_gemm.cuh"

using namespace pagoda::kernels;

template <typename F>
float median_ms(F&& run, int iters = 30) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  for (int i = 0; i < 3; i++) run(i);
  std::vector<float> t;
  for (int i = 0; i < iters; i++) {
    cudaEventRecord(a);
    run(i);
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float ms;
    cudaEventElapsedTime(&ms, a, b);
    t.push_back(ms);
  }
  PAGODA_CUDA_CHECK(cudaGetLastError());
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Time per call with the calls back to back inside a CUDA graph, as the engine's decode graphs run
// them: `reps` calls (rotating inputs) captured once, the graph replayed, median replay / reps. Unlike
// median_ms, no host launch latency is inside the measured interval; each call still waits for the
// previous one to finish (stream order), so start-up and tail of every kernel are counted.
template <typename F>
float graph_ms(F&& run, int reps = 6, int iters = 15) {
  cudaStream_t s;
  PAGODA_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  for (int i = 0; i < reps; i++) run(i, s);  // first-use set-up (shared-memory opt-in) outside the capture
  PAGODA_CUDA_CHECK(cudaStreamSynchronize(s));
  cudaGraph_t g;
  cudaGraphExec_t ge;
  PAGODA_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < reps; i++) run(i, s);
  PAGODA_CUDA_CHECK(cudaStreamEndCapture(s, &g));
  PAGODA_CUDA_CHECK(cudaGraphInstantiate(&ge, g, 0));
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  std::vector<float> t;
  for (int i = 0; i < iters + 2; i++) {
    cudaEventRecord(a, s);
    cudaGraphLaunch(ge, s);
    cudaEventRecord(b, s);
    cudaEventSynchronize(b);
    float ms;
    cudaEventElapsedTime(&ms, a, b);
    if (i >= 2) t.push_back(ms / reps);
  }
  PAGODA_CUDA_CHECK(cudaGetLastError());
  cudaGraphExecDestroy(ge);
  cudaGraphDestroy(g);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  cudaStreamDestroy(s);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

__global__ void fill_random(bf16* p, size_t n, uint64_t seed) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    uint64_t z = (i + 1) * 0x9e3779b97f4a7c15ULL ^ seed;
    z = (z ^ (z >> 31)) * 0xbf58476d1ce4e5b9ULL;
    p[i] = __float2bfloat16((static_cast<float>(z >> 40) / 16777216.0f - 0.5f) * 2.0f);
  }
}

bf16* random_device(size_t n, uint64_t seed) {
  bf16* p;
  PAGODA_CUDA_CHECK(cudaMalloc(&p, n * sizeof(bf16)));
  fill_random<<<1024, 256>>>(p, n, seed);
  return p;
}

int num_sms() {
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  return prop.multiProcessorCount;
}

// A decode-attention kernel other than the dispatcher's choice: its launch on a given grid (the merge
// pass included when there are splits), its query heads per CTA, and its name in the table.
struct DecodeVariant {
  const char* name;
  int heads_per_cta;  // 0: the whole GQA group
  void (*launch)(const DecodeAttentionParams&, dim3, cudaStream_t);
  int (*resident_ctas)(int head_dim) = nullptr;  // CTAs per SM for the split heuristic; null: the CUDA-core kernel's
};

template <int GC, int UNROLL = decode_default_unroll<GC>(), int DPT = decode_dims_per_thread<GC>()>
void decode_main(const DecodeAttentionParams& p, dim3 grid, cudaStream_t s) {
  launch_decode_gc<128, GC, UNROLL, DPT>(p, grid, s);
  launch_decode_merge<128>(p, s);
}

// The tensor-core kernel (decode_attention_mma.cuh), a whole GQA group per CTA; it picks its own grid.
void decode_mma(const DecodeAttentionParams& p, dim3, cudaStream_t s) { launch_decode_attention_mma(p, 128, s); }

// How the split-K merge runs and whether a launch overlaps the kernel before it (DecodeAttentionParams);
// the engine's way first.
struct LaunchStyle {
  const char* name;
  bool fused_merge, overlap;
};
const LaunchStyle kEngineStyle{"", true, true};
const LaunchStyle kStyles[] = {{"merge kernel", false, false}, {"merge kernel, PDL", false, true}, {"fused merge", true, false}, {"fused merge, PDL", true, true}};

// Order statistics of a sample in microseconds: "min / median / max".
std::string spread_us(std::vector<double> v) {
  if (v.empty()) return "-";
  std::sort(v.begin(), v.end());
  char buf[64];
  std::snprintf(buf, sizeof buf, "%6.2f / %6.2f / %6.2f", v.front() / 1e3, v[v.size() / 2] / 1e3, v.back() / 1e3);
  return buf;
}

// Where one decode call's time goes, from the per-CTA marks of calls that ran back to back in a graph
// (DecodeMark, global-timer ns). Times are measured from the end of the call before (its last CTA done).
void print_decode_timeline(const std::vector<std::vector<uint64_t>>& calls, int ctas) {
  const auto mark = [&](size_t c, int cta, int m) { return calls[c][static_cast<size_t>(cta) * kDecodeMarks + m]; };
  std::set<uint64_t> stamps;  // the timer's step: the smallest gap between distinct stamps
  for (int i = 0; i < ctas; i++) stamps.insert(mark(1, i, kMarkDone));
  uint64_t step = UINT64_MAX;
  for (auto it = std::next(stamps.begin()); it != stamps.end(); ++it) step = std::min(step, *it - *std::prev(it));
  std::printf("  timeline (us after the previous call's last CTA; min / median / max over CTAs; timer step %llu ns)\n",
              static_cast<unsigned long long>(step));
  for (size_t c = 1; c < calls.size(); c++) {
    uint64_t prev_end = 0, end = 0;
    for (int i = 0; i < ctas; i++) {
      prev_end = std::max(prev_end, mark(c - 1, i, kMarkDone));
      end = std::max(end, mark(c, i, kMarkDone));
    }
    const auto since = [&](uint64_t t) { return static_cast<double>(t) - static_cast<double>(prev_end); };
    std::vector<double> start, waited, loop, written, merge_at, merge_len;
    std::map<uint32_t, int> per_sm;
    double last_loop_start = 0, first_loop_end = 1e30;
    for (int i = 0; i < ctas; i++) {
      start.push_back(since(mark(c, i, kMarkStart)));
      waited.push_back(since(mark(c, i, kMarkWaited)));
      loop.push_back(static_cast<double>(mark(c, i, kMarkLoopDone) - mark(c, i, kMarkWaited)));
      written.push_back(since(mark(c, i, kMarkWritten)));
      last_loop_start = std::max(last_loop_start, waited.back());
      first_loop_end = std::min(first_loop_end, since(mark(c, i, kMarkLoopDone)));
      if (mark(c, i, kMarkMerge) != 0) {
        merge_at.push_back(since(mark(c, i, kMarkMerge)));
        merge_len.push_back(static_cast<double>(mark(c, i, kMarkDone) - mark(c, i, kMarkMerge)));
      }
      per_sm[static_cast<uint32_t>(mark(c, i, kMarkSm))]++;
    }
    int lo = ctas, hi = 0;
    for (auto [sm, n] : per_sm) lo = std::min(lo, n), hi = std::max(hi, n);
    std::printf("  call %zu: %.2f us | start %s | waited %s | loop %s | written %s | merge at %s, takes %s | all CTAs streaming %.2f us | CTAs per SM %d-%d on %zu SMs\n",
                c, since(end) / 1e3, spread_us(start).c_str(), spread_us(waited).c_str(), spread_us(loop).c_str(), spread_us(written).c_str(),
                spread_us(merge_at).c_str(), spread_us(merge_len).c_str(), std::max(0.0, first_loop_end - last_loop_start) / 1e3, lo, hi,
                per_sm.size());
  }
}

// Hq / Hkv: query and KV heads (16 / 8 as Qwen3-0.6B; 32 / 8 as Qwen3-8B, 16 / 4 its share at TP=2).
// forced_splits 0: the engine's split heuristic. variant: null for the dispatching launcher. timeline: also
// print where the time of a call goes (print_decode_timeline), from calls run back to back in a graph.
void bench_decode(int B, int ctx, int bs, int forced_splits = 0, int Hq = 16, int Hkv = 8, const DecodeVariant* variant = nullptr,
                  const LaunchStyle& style = kEngineStyle, bool timeline = false) {
  const int D = 128, sets = 3;
  const int blocks_per_seq = ceil_div(ctx, bs);
  const size_t blocks = static_cast<size_t>(B) * blocks_per_seq;
  std::vector<int32_t> table(blocks);
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), std::mt19937(1));  // scattered blocks, as a real cache
  int32_t *dt, *dc;
  PAGODA_CUDA_CHECK(cudaMalloc(&dt, blocks * 4));
  PAGODA_CUDA_CHECK(cudaMalloc(&dc, B * 4));
  cudaMemcpy(dt, table.data(), blocks * 4, cudaMemcpyHostToDevice);
  std::vector<int32_t> ctxs(B, ctx);
  cudaMemcpy(dc, ctxs.data(), B * 4, cudaMemcpyHostToDevice);
  const size_t kv = blocks * Hkv * bs * D;
  std::vector<bf16*> k(sets), v(sets), q(sets);
  for (int s = 0; s < sets; s++) {
    k[s] = random_device(kv, 3 * s + 1);
    v[s] = random_device(kv, 3 * s + 2);
    q[s] = random_device(static_cast<size_t>(B) * Hq * D, 3 * s + 3);
  }
  bf16 *out, *pacc;
  float* pml;
  PAGODA_CUDA_CHECK(cudaMalloc(&out, static_cast<size_t>(B) * Hq * D * 2));
  const size_t max_splits = std::max(64, forced_splits);
  PAGODA_CUDA_CHECK(cudaMalloc(&pacc, static_cast<size_t>(B) * Hq * max_splits * D * 2));
  PAGODA_CUDA_CHECK(cudaMalloc(&pml, static_cast<size_t>(B) * Hq * max_splits * 2 * 4));
  int32_t* done;
  PAGODA_CUDA_CHECK(cudaMalloc(&done, decode_split_counters(B, Hq) * 4));
  PAGODA_CUDA_CHECK(cudaMemset(done, 0, decode_split_counters(B, Hq) * 4));
  const int gc = variant ? (variant->heads_per_cta > 0 ? variant->heads_per_cta : Hq / Hkv) : decode_heads_per_cta(Hq / Hkv);
  const int resident = variant && variant->resident_ctas ? variant->resident_ctas(D) : decode_resident_ctas(D, Hq / Hkv);
  const int splits = forced_splits > 0 ? forced_splits : decode_splits(B, Hq, gc, ctx, num_sms(), resident, 64);
  const auto marked_call = [&](int i, cudaStream_t s, uint64_t* marks) {
    DecodeAttentionParams p{q[i % sets], k[i % sets], v[i % sets], dt, dc, nullptr, nullptr, out, pacc, pml, B, Hq, Hkv, bs,
                            blocks_per_seq, splits, Hq * D, Hq * D, 0.088f, style.fused_merge ? done : nullptr, style.overlap};
    p.timeline = marks;
    if (variant) {
      variant->launch(p, dim3(Hq / gc, B, splits), s);
    } else {
      launch_decode_attention(p, D, s);
    }
  };
  const auto call = [&](int i, cudaStream_t s) { marked_call(i, s, nullptr); };
  const float ms = median_ms([&](int i) { call(i, nullptr); });
  const float in_graph = graph_ms(call);
  const double bytes = 2.0 * kv * 2 + 2.0 * B * Hq * D * 2;
  std::string name = variant ? variant->name : "";
  if (*style.name) name += (name.empty() ? "" : ", ") + std::string(style.name);
  std::printf("decode attention  B=%-4d ctx=%-6d bs=%-3d splits=%-3d heads %2d/%d per CTA %d %-30s %9.1f us  %5.2f TB/s | in graph %7.1f us  %5.2f TB/s\n",
              B, ctx, bs, splits, Hq, Hkv, gc, name.c_str(), ms * 1e3, bytes / (ms * 1e-3) / 1e12, in_graph * 1e3,
              bytes / (in_graph * 1e-3) / 1e12);
  if (timeline) {
    // Every CTA of the grid the launcher picks: (Hq / heads per CTA, B, splits) for both kernels.
    const int ctas = Hq / gc * B * splits, reps = 4;
    const size_t words = static_cast<size_t>(ctas) * kDecodeMarks;
    uint64_t* marks;
    PAGODA_CUDA_CHECK(cudaMalloc(&marks, reps * words * 8));
    PAGODA_CUDA_CHECK(cudaMemset(marks, 0, reps * words * 8));
    graph_ms([&](int i, cudaStream_t s) { marked_call(i, s, marks + (i % reps) * words); }, reps, 3);
    std::vector<std::vector<uint64_t>> calls(reps, std::vector<uint64_t>(words));
    for (int c = 0; c < reps; c++) cudaMemcpy(calls[c].data(), marks + c * words, words * 8, cudaMemcpyDeviceToHost);
    print_decode_timeline(calls, ctas);
    cudaFree(marks);
  }
  for (int s = 0; s < sets; s++) {
    cudaFree(k[s]);
    cudaFree(v[s]);
    cudaFree(q[s]);
  }
  cudaFree(out);
  cudaFree(pacc);
  cudaFree(pml);
  cudaFree(dt);
  cudaFree(dc);
  cudaFree(done);
}

// Variants for a group of 2 (the alternative register / softmax-batching trade-off) and for GQA group 4:
// heads per CTA (fewer: a KV row is read once per CTA of its group, the repeats mostly from L2), token
// groups per softmax update, dims per thread — arithmetic per byte against registers (occupancy) and
// bytes in flight.
const DecodeVariant kUnroll4{"unroll4", 2, decode_main<2, 4>};
const DecodeVariant kTensorCores{"tensor-cores", 0, decode_mma, decode_mma_resident_ctas};
const DecodeVariant kGqa4Variants[] = {
    {"gc4-u2-dpt16", 4, decode_main<4, 2, 16>}, {"gc4-u4-dpt8", 4, decode_main<4, 4, 8>}, {"gc4-u2-dpt8", 4, decode_main<4, 2, 8>},
    {"gc4-u1-dpt16", 4, decode_main<4, 1, 16>}, {"gc2-u2-dpt16", 2, decode_main<2, 2, 16>}, {"gc2-u4-dpt8", 2, decode_main<2, 4, 8>},
    {"gc1", 1, decode_main<1>},          kTensorCores,
};

void bench_prefill(int S, int len) {
  const int Hq = 16, Hkv = 8, D = 128, bs = 16;
  const int bps = ceil_div(len, bs);
  const size_t blocks = static_cast<size_t>(S) * bps;
  std::vector<int32_t> table(blocks), ctx(S, len), qs(S + 1), ts, tr;
  std::iota(table.begin(), table.end(), 0);
  for (int s = 0; s <= S; s++) qs[s] = s * len;
  for (int s = 0; s < S; s++)
    for (int r = 0; r < len; r += kPrefillRows) {
      ts.push_back(s);
      tr.push_back(r);
    }
  auto up = [](const std::vector<int32_t>& h) {
    int32_t* d;
    PAGODA_CUDA_CHECK(cudaMalloc(&d, h.size() * 4));
    cudaMemcpy(d, h.data(), h.size() * 4, cudaMemcpyHostToDevice);
    return d;
  };
  int32_t *dt = up(table), *dc = up(ctx), *dqs = up(qs), *dts = up(ts), *dtr = up(tr);
  const size_t T = static_cast<size_t>(S) * len;
  bf16* q = random_device(T * Hq * D, 7);
  bf16* k = random_device(blocks * Hkv * bs * D, 8);
  bf16* v = random_device(blocks * Hkv * bs * D, 9);
  bf16* out;
  PAGODA_CUDA_CHECK(cudaMalloc(&out, T * Hq * D * 2));
  const float ms = median_ms([&](int) {
    PrefillAttentionParams p{q, k, v, dt, dc, dqs, dts, dtr, out, static_cast<int>(ts.size()), Hq, Hkv, bs, bps, Hq * D, Hq * D, 0.088f};
    launch_prefill_attention(p, D, nullptr);
  }, 10);
  const double keys = static_cast<double>(S) * len * (len + 1) / 2.0;
  const double flops = 4.0 * Hq * D * keys;
  std::printf("prefill attention %3d x %-5d causal             %9.1f us  %6.1f TFLOP/s  %8.0f tokens/s\n", S, len, ms * 1e3,
              flops / (ms * 1e-3) / 1e12, T / (ms * 1e-3));
  for (void* p : {static_cast<void*>(q), static_cast<void*>(k), static_cast<void*>(v), static_cast<void*>(out), static_cast<void*>(dt),
                  static_cast<void*>(dc), static_cast<void*>(dqs), static_cast<void*>(dts), static_cast<void*>(dtr)})
    cudaFree(p);
}

// Linear-layer shapes of one decode step: hidden, q, kv, MLP and vocabulary widths (this GPU's share
// under tensor parallelism), layer count.
struct StepShapes {
  const char* name;
  int H, Q, KV, I, V, L;
};

// The linear layers of one decode step (L layers + LM head), graph-replayed, with M rows: cuBLAS with
// float32 or bf16 o/down outputs, and Pagoda's dispatch (skinny kernel for M <= 4, else cuBLAS; bf16 o/down).
// For M <= 4 also the MLP's activation between gate/up and down, as the engine runs it (every GEMM
// launched to overlap the kernel before it): a SiLU-and-mul kernel of its own, or fused into the gate/up
// GEMM's epilogue.
void bench_linear_step(const StepShapes& m, const std::vector<int>& rows) {
  const int H = m.H, V = m.V, L = m.L, I = m.I;
  const int shapes[4][2] = {{m.Q + 2 * m.KV, H}, {H, m.Q}, {2 * I, H}, {H, I}};  // (N, K)
  cublasHandle_t h;
  cublasCreate(&h);
  void* ws;
  cudaMalloc(&ws, 32 << 20);
  cublasSetWorkspace(h, ws, 32 << 20);
  cudaStream_t s;
  cudaStreamCreate(&s);
  cublasSetStream(h, s);
  std::vector<bf16*> w;
  size_t wbytes = 0;
  for (int l = 0; l < L; l++)
    for (auto& sh : shapes) {
      w.push_back(random_device(static_cast<size_t>(sh[0]) * sh[1], l * 7 + sh[0]));
      wbytes += static_cast<size_t>(sh[0]) * sh[1] * 2;
    }
  bf16* lm = random_device(static_cast<size_t>(V) * H, 99);
  wbytes += static_cast<size_t>(V) * H * 2;
  const int max_rows = *std::max_element(rows.begin(), rows.end());
  bf16* x = random_device(static_cast<size_t>(max_rows) * std::max({H, m.Q, I}), 5);
  void* y;
  cudaMalloc(&y, static_cast<size_t>(max_rows) * std::max(V, 2 * I) * 4);
  bf16* act;  // [M, I] the MLP's activation, read by the down projection
  cudaMalloc(&act, static_cast<size_t>(max_rows) * I * 2);
  cudaDeviceSynchronize();
  const char* variants[] = {"cuBLAS, o/down out f32 ", "cuBLAS, o/down out bf16", "Pagoda (skinny if M<=4)",
                            "Pagoda + SiLU kernel    ", "Pagoda, SiLU in gate/up "};
  for (int variant = 0; variant < 5; variant++)
    for (int M : rows) {
      if (variant >= 2 && M > kSkinnyMaxRows) continue;  // the same cuBLAS calls as the bf16 row
      const bool overlap = variant >= 3;                 // as the engine launches them
      auto gemm = [&](const bf16* wt, const bf16* in, int N, int K, bool f32) {
        if (variant >= 2) {
          if (f32) launch_skinny_gemm(wt, in, static_cast<float*>(y), M, N, K, s, 0, overlap);
          else launch_skinny_gemm(wt, in, static_cast<bf16*>(y), M, N, K, s, 0, overlap);
          return;
        }
        const float one = 1.0f, zero = 0.0f;
        cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, wt, CUDA_R_16BF, K, in, CUDA_R_16BF, K, &zero, y,
                     f32 ? CUDA_R_32F : CUDA_R_16BF, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
      };
      auto step = [&]() {
        for (int l = 0; l < L; l++) {
          const bf16* const* lw = &w[l * 4];
          for (int j = 0; j < 2; j++) gemm(lw[j], x, shapes[j][0], shapes[j][1], variant == 0 && j == 1);
          if (variant == 4) {
            launch_skinny_gemm_silu_mul(lw[2], x, act, M, I, H, s, overlap);
          } else {
            gemm(lw[2], x, 2 * I, H, false);
            if (variant == 3) launch_silu_and_mul(static_cast<bf16*>(y), act, M, I, s);
          }
          gemm(lw[3], variant >= 3 ? act : x, H, I, variant == 0);
        }
        gemm(lm, x, V, H, true);  // logits are float32
      };
      step();
      cudaStreamSynchronize(s);
      cudaGraph_t g;
      cudaGraphExec_t ge;
      cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
      step();
      cudaStreamEndCapture(s, &g);
      cudaGraphInstantiate(&ge, g, 0);
      cudaEvent_t a, b;
      cudaEventCreate(&a);
      cudaEventCreate(&b);
      std::vector<float> t;
      for (int i = 0; i < 33; i++) {
        cudaEventRecord(a, s);
        cudaGraphLaunch(ge, s);
        cudaEventRecord(b, s);
        cudaEventSynchronize(b);
        float ms;
        cudaEventElapsedTime(&ms, a, b);
        if (i >= 3) t.push_back(ms);
      }
      std::sort(t.begin(), t.end());
      const float ms = t[t.size() / 2];
      std::printf("decode-step GEMMs %-15s M=%-4d %s %9.1f us  weights %.2f GB -> %.2f TB/s\n", m.name, M, variants[variant],
                  ms * 1e3, wbytes / 1e9, wbytes / (ms * 1e-3) / 1e12);
      cudaGraphExecDestroy(ge);
      cudaGraphDestroy(g);
    }
  PAGODA_CUDA_CHECK(cudaGetLastError());
  for (bf16* p : w) cudaFree(p);
  for (void* p : {static_cast<void*>(lm), static_cast<void*>(x), y, static_cast<void*>(act), ws}) cudaFree(p);
  cublasDestroy(h);
  cudaStreamDestroy(s);
}

// The read ceiling for a given byte count: every 16-byte word read once (4 loads in flight per thread),
// folded into a value that is stored only if it matches a sentinel (so no load is dead code).
__global__ void read_all(const uint4* p, size_t n, unsigned* sink) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  unsigned acc = 0;
  for (; i + 3 * stride < n; i += 4 * stride) {
    const uint4 a = p[i], b = p[i + stride], c = p[i + 2 * stride], d = p[i + 3 * stride];
    acc ^= a.x ^ a.y ^ a.z ^ a.w ^ b.x ^ b.y ^ b.z ^ b.w ^ c.x ^ c.y ^ c.z ^ c.w ^ d.x ^ d.y ^ d.z ^ d.w;
  }
  for (; i < n; i += stride) acc ^= p[i].x ^ p[i].y ^ p[i].z ^ p[i].w;
  if (acc == 0x9e3779b9u) *sink = acc;
}

// Reading `bytes` once with the whole GPU (8 CTAs of 256 threads per SM), both timings as bench_decode.
void bench_read_ceiling(size_t bytes) {
  const int sets = 3;
  const size_t words = bytes / 16;
  std::vector<bf16*> buf(sets);
  for (int s = 0; s < sets; s++) buf[s] = random_device(words * 8, 11 + s);
  unsigned* sink;
  PAGODA_CUDA_CHECK(cudaMalloc(&sink, 4));
  const auto call = [&](int i, cudaStream_t s) {
    read_all<<<num_sms() * 8, 256, 0, s>>>(reinterpret_cast<const uint4*>(buf[i % sets]), words, sink);
  };
  const float ms = median_ms([&](int i) { call(i, nullptr); });
  const float in_graph = graph_ms(call);
  std::printf("read ceiling      %7.1f MB %69s %9.1f us  %5.2f TB/s | in graph %7.1f us  %5.2f TB/s\n", bytes / 1e6, "", ms * 1e3,
              bytes / (ms * 1e-3) / 1e12, in_graph * 1e3, bytes / (in_graph * 1e-3) / 1e12);
  for (bf16* b : buf) cudaFree(b);
  cudaFree(sink);
}

// Token selection for R rows of a V-token vocabulary (float32 logits, as the LM head writes them):
// plain temperature rows (the nano-vllm workload: T 0.6), greedy rows, and top-p 0.95 rows, with the
// engine's split of small batches. Bytes: the logits read once; the figure shows how far a call is
// from one pass at full bandwidth.
__global__ void fill_logits(float* p, size_t n, uint64_t seed) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    uint64_t z = (i + 1) * 0x9e3779b97f4a7c15ULL ^ seed;
    z = (z ^ (z >> 31)) * 0xbf58476d1ce4e5b9ULL;
    p[i] = (static_cast<float>(z >> 40) / 16777216.0f - 0.5f) * 16.0f;
  }
}

void bench_sampling(int R, int V, const char* kind, float temperature, float top_p) {
  const int sets = 3;
  const size_t n = static_cast<size_t>(R) * V;
  std::vector<float*> logits(sets);
  for (int s = 0; s < sets; s++) {
    PAGODA_CUDA_CHECK(cudaMalloc(&logits[s], n * 4));
    fill_logits<<<1024, 256>>>(logits[s], n, 17 + s);
  }
  const std::vector<float> t(R, temperature), tp(R, top_p), mp(R, 0.0f);
  const std::vector<int32_t> k(R, 0), step(R, 3);
  std::vector<uint32_t> seed(2 * R, 12345);
  float *dt, *dtp, *dmp, *dlp;
  int32_t *dk, *ds, *dtok;
  uint32_t* dseed;
  for (float** f : {&dt, &dtp, &dmp, &dlp}) PAGODA_CUDA_CHECK(cudaMalloc(f, R * 4));
  for (int32_t** i : {&dk, &ds, &dtok}) PAGODA_CUDA_CHECK(cudaMalloc(i, R * 4));
  PAGODA_CUDA_CHECK(cudaMalloc(&dseed, R * 8));
  RowScan* partials;
  int32_t* arrivals;
  PAGODA_CUDA_CHECK(cudaMalloc(&partials, sizeof(RowScan) * R * kSampleMaxSplits));
  PAGODA_CUDA_CHECK(cudaMalloc(&arrivals, R * 4));
  PAGODA_CUDA_CHECK(cudaMemset(arrivals, 0, R * 4));
  const int splits = sample_splits(R, num_sms());
  cudaMemcpy(dt, t.data(), R * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(dtp, tp.data(), R * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(dmp, mp.data(), R * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(dk, k.data(), R * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(ds, step.data(), R * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(dseed, seed.data(), R * 8, cudaMemcpyHostToDevice);
  const auto call = [&](int i, cudaStream_t s) {
    const float* x = logits[i % sets];
    launch_sample(SamplingParams{x, x, dt, dtp, dk, dmp, dseed, ds, dtok, dlp, R, V, partials, arrivals}, splits, s);
  };
  const float ms = median_ms([&](int i) { call(i, nullptr); });
  const float in_graph = graph_ms(call);
  const double bytes = static_cast<double>(n) * 4;
  std::printf("sample %-13s R=%-4d V=%-7d CTAs per row %-2d %9.1f us  %5.2f TB/s | in graph %7.1f us  %5.2f TB/s\n", kind, R, V,
              top_p < 1.0f ? 1 : splits, ms * 1e3,
              bytes / (ms * 1e-3) / 1e12, in_graph * 1e3, bytes / (in_graph * 1e-3) / 1e12);
  for (float* p : logits) cudaFree(p);
  for (void* p : {static_cast<void*>(dt), static_cast<void*>(dtp), static_cast<void*>(dmp), static_cast<void*>(dlp),
                  static_cast<void*>(dk), static_cast<void*>(ds), static_cast<void*>(dtok), static_cast<void*>(dseed),
                  static_cast<void*>(partials), static_cast<void*>(arrivals)})
    cudaFree(p);
}

// --attention: the decode-attention rows only.
int main(int argc, char** argv) {
  const bool attention_only = argc > 1 && std::string(argv[1]) == "--attention";
  if (argc > 1 && std::string(argv[1]) == "--split-sweep") {
    // 1 x 32k, 16 / 8 heads: how the split count trades CTAs in flight against per-CTA start-up and merging
    for (int splits : {16, 24, 32, 33, 40, 48, 49, 64, 66, 96, 128}) {
      bench_decode(1, 32768, 16, splits);
      bench_decode(1, 32768, 16, splits, 16, 8, &kTensorCores);
    }
    return 0;
  }
  if (argc > 1 && std::string(argv[1]) == "--fixed-cost") {
    // What a call costs beyond streaming K/V: the merge as its own kernel or fused into the main
    // kernel's last CTAs, with and without overlapping the kernel before (1 x 32k and 1 x 4k, 16 / 8 heads)
    for (int ctx : {32768, 4096})
      for (const LaunchStyle& st : kStyles) {
        bench_decode(1, ctx, 16, 0, 16, 8, nullptr, st);
        bench_decode(1, ctx, 16, 0, 16, 8, &kTensorCores, st);
      }
    return 0;
  }
  if (argc > 1 && std::string(argv[1]) == "--timeline") {
    // Where a call's time goes beyond streaming K/V (per-CTA marks): 1 x 32k and 1 x 4k, 16 / 8 heads,
    // both kernels as the engine launches them.
    for (int ctx : {32768, 4096}) {
      bench_decode(1, ctx, 16, 0, 16, 8, nullptr, kEngineStyle, true);
      bench_decode(1, ctx, 16, 0, 16, 8, &kTensorCores, kEngineStyle, true);
    }
    return 0;
  }
  if (argc > 1 && std::string(argv[1]) == "--long-context") {
    // One sequence, 16 / 8 heads, context 4k to 128k: time against bytes separates the fixed cost of a
    // call (launch, pipeline fill, merge) from the streaming rate; the read ceiling of the same bytes beside it.
    for (int ctx : {4096, 8192, 16384, 32768, 65536, 131072}) {
      bench_read_ceiling(static_cast<size_t>(ctx) * 8 * 128 * 2 * 2);
      bench_decode(1, ctx, 16);
      bench_decode(1, ctx, 16, 0, 16, 8, &kTensorCores);
    }
    return 0;
  }
  if (argc > 1 && std::string(argv[1]) == "--sampling") {
    // Token selection over Qwen3's vocabulary: one row (batch-1 decode) to a full batch
    for (int R : {1, 8, 64, 128, 256}) {
      bench_sampling(R, 151936, "T 0.6", 0.6f, 1.0f);
      bench_sampling(R, 151936, "greedy", 0.0f, 1.0f);
      bench_sampling(R, 151936, "T 0.6 top-p", 0.6f, 0.95f);
    }
    return 0;
  }
  if (argc > 1 && std::string(argv[1]) == "--linear") {
    // Only the decode-step linear layers (the rows of the full run below) at the few-row sizes.
    bench_linear_step({"Qwen3-0.6B", 1024, 2048, 1024, 3072, 151936, 28}, {1, 2});
    bench_linear_step({"Qwen3-8B TP=1", 4096, 4096, 1024, 12288, 151936, 36}, {1});
    bench_linear_step({"Qwen3-8B TP=2", 4096, 2048, 512, 6144, 151936, 36}, {1});
    return 0;
  }
  std::printf("== Pagoda kernels (16 query / 8 KV heads, head_dim 128; paged KV, bf16)\n");
  bench_decode(64, 4096, 16);
  bench_decode(64, 4096, 16, 0, 16, 8, &kUnroll4);
  bench_decode(256, 1024, 16, 0, 16, 8, &kUnroll4);
  bench_decode(1, 32768, 16, 0, 16, 8, &kUnroll4);
  bench_decode(1, 32768, 16);
  bench_decode(1, 32768, 16, 1);
  bench_decode(256, 1024, 16);
  bench_decode(8, 32768, 16);
  bench_decode(64, 4096, 32);
  bench_decode(64, 4096, 64);
  // the tensor-core kernel on the same shapes (16 / 8 heads: a group of 2 padded to 16 mma rows)
  for (auto [B, ctx] : {std::array<int, 2>{64, 4096}, std::array<int, 2>{256, 1024}, std::array<int, 2>{8, 32768}, std::array<int, 2>{1, 32768}})
    bench_decode(B, ctx, 16, 0, 16, 8, &kTensorCores);
  // 1 x 32k with Qwen3-8B's heads: CUDA cores and tensor cores, the split heuristic's choice
  bench_decode(1, 32768, 16, 0, 32, 8);
  bench_decode(1, 32768, 16, 0, 32, 8, &kTensorCores);
  // GQA group 4 (Qwen3-8B and its TP=2 share): the dispatcher's kernel, then every variant
  for (auto [B, ctx, Hq, Hkv] : {std::array<int, 4>{64, 4096, 32, 8}, std::array<int, 4>{128, 1024, 16, 4}}) {
    bench_decode(B, ctx, 16, 0, Hq, Hkv);
    for (const DecodeVariant& v : kGqa4Variants) bench_decode(B, ctx, 16, 0, Hq, Hkv, &v);
  }
  if (attention_only) return 0;
  bench_prefill(1, 8192);
  bench_prefill(64, 512);
  bench_linear_step({"Qwen3-0.6B", 1024, 2048, 1024, 3072, 151936, 28}, {1, 2, 4, 8, 64, 256});
  // Qwen3-8B: one GPU's share at TP=1 and TP=2 (the LM head whole on rank 0, as the engine runs it)
  bench_linear_step({"Qwen3-8B TP=1", 4096, 4096, 1024, 12288, 151936, 36}, {1, 2, 4});
  bench_linear_step({"Qwen3-8B TP=2", 4096, 2048, 512, 6144, 151936, 36}, {1, 2, 4});
  return 0;
}
