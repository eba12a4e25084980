// The one-shot all-reduce (all_reduce.cuh) on every visible GPU (at least 2), checked and timed
// against NCCL in the same run.
//   check:  float32 and bf16, sizes from 16 bytes to the capacity; 500 back-to-back calls with no host
//           sync between them, each call's inputs made on the device from its index and each result
//           checked there (exact: small integers, summed in float32 and rounded once to the element
//           type), so a call that overtakes or lags a peer shows.
//   fused:  the all-reduce fused with the residual add and RMSNorm against the plain bf16 all-reduce
//           followed by add_rmsnorm (norm.cuh): residual bit-identical, output within one bf16 rounding,
//           the same on every rank; 1 to 200 rows (several per block), hidden sizes 4096 and 5120.
//   --bench: then microseconds per all-reduce of float32 and bf16 tensors, 8 KiB .. 8 MiB: NCCL eager,
//           NCCL in a CUDA graph, one-shot in a CUDA graph (graphs of 20 back-to-back all-reduces,
//           median replay).
// Exit status 1 if any result is wrong.
#include <nccl.h>

#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#include "all_reduce.cuh"
#include "norm.cuh"

using namespace pagoda::kernels;

#define NCCL_CHECK(call)                                                                  \
  do {                                                                                    \
    ncclResult_t r_ = (call);                                                             \
    if (r_ != ncclSuccess) {                                                              \
      std::fprintf(stderr, "%s: %s\n", #call, ncclGetErrorString(r_));                    \
      std::exit(1);                                                                       \
    }                                                                                     \
  } while (0)

constexpr int64_t kCapacityBytes = 8LL << 20;  // per half of a staging buffer, as the engine

// Input of rank r for call c, element i: small integers (exact in bf16 too), so every float32 sum is exact.
__device__ __forceinline__ float input_value(int r, int c, int64_t i) { return static_cast<float>((r + 1) * (1 + (c % 13)) + (i % 7)); }

__device__ __forceinline__ float as_float(float x) { return x; }
__device__ __forceinline__ float as_float(bf16 x) { return __bfloat162float(x); }
template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ bf16 from_float<bf16>(float x) { return __float2bfloat16(x); }

template <typename T>
__global__ void fill(T* x, int64_t n, int r, const int* call) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += gridDim.x * static_cast<int64_t>(blockDim.x))
    x[i] = from_float<T>(input_value(r, *call, i));
}

// Compares with the exact sum rounded once to T, counts mismatches, and moves to the next call index.
template <typename T>
__global__ void verify(const T* x, int64_t n, int world, int* call, unsigned long long* errors) {
  const int c = *call;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += gridDim.x * static_cast<int64_t>(blockDim.x)) {
    float want = 0;
    for (int r = 0; r < world; r++) want += input_value(r, c, i);
    if (as_float(x[i]) != as_float(from_float<T>(want))) atomicAdd(errors, 1ULL);
  }
}

template <typename T>
constexpr const char* type_name() {
  return sizeof(T) == 4 ? "float32" : "bf16";
}
template <typename T>
constexpr ncclDataType_t nccl_type() {
  return sizeof(T) == 4 ? ncclFloat32 : ncclBfloat16;
}

__global__ void next_call(int* call) { *call += 1; }

struct Rank {
  int dev;
  cudaStream_t stream;
  ncclComm_t comm;
  void *data, *staging;
  uint64_t *flags, *epochs;
  int* call;
  unsigned long long* errors;
};

void on_all(std::vector<Rank>& ranks, const std::function<void(Rank&)>& job) {
  std::vector<std::thread> ts;
  for (auto& r : ranks)
    ts.emplace_back([&r, &job] {
      PAGODA_CUDA_CHECK(cudaSetDevice(r.dev));
      job(r);
    });
  for (auto& t : ts) t.join();
}

OneShotAllReduceParams params_for(const std::vector<Rank>& ranks, int rank, int64_t bytes) {
  void* staging[kAllReduceMaxRanks] = {};
  uint64_t* flags[kAllReduceMaxRanks] = {};
  for (size_t r = 0; r < ranks.size(); r++) {
    staging[r] = ranks[r].staging;
    flags[r] = ranks[r].flags;
  }
  return one_shot_params(ranks[rank].data, bytes, staging, flags, ranks[rank].epochs, kCapacityBytes, rank,
                         static_cast<int>(ranks.size()));
}

template <typename T>
bool check(std::vector<Rank>& ranks) {
  const int world = static_cast<int>(ranks.size());
  bool ok = true;
  constexpr int64_t per_vector = 16 / sizeof(T);
  const int64_t sizes[] = {per_vector, 1024, 4096, 4096 * 3, 5120 * 7, 4096 * 64, 5120 * 256, kCapacityBytes / static_cast<int64_t>(sizeof(T))};
  for (int64_t n : sizes) {
    const int calls = n >= (1 << 20) ? 50 : 500;
    on_all(ranks, [&](Rank& r) {
      PAGODA_CUDA_CHECK(cudaMemsetAsync(r.call, 0, sizeof(int), r.stream));
      PAGODA_CUDA_CHECK(cudaMemsetAsync(r.errors, 0, sizeof(unsigned long long), r.stream));
      const OneShotAllReduceParams p = params_for(ranks, r.dev, n * static_cast<int64_t>(sizeof(T)));
      T* data = static_cast<T*>(r.data);
      for (int c = 0; c < calls; c++) {
        fill<T><<<132, 256, 0, r.stream>>>(data, n, r.dev, r.call);
        launch_one_shot_all_reduce<T>(p, r.stream);
        verify<T><<<132, 256, 0, r.stream>>>(data, n, world, r.call, r.errors);
        next_call<<<1, 1, 0, r.stream>>>(r.call);
      }
      PAGODA_CUDA_CHECK(cudaStreamSynchronize(r.stream));
    });
    for (auto& r : ranks) {
      unsigned long long errors = 0;
      PAGODA_CUDA_CHECK(cudaMemcpy(&errors, r.errors, sizeof errors, cudaMemcpyDeviceToHost));
      const bool good = errors == 0;
      ok = ok && good;
      if (!good || r.dev == 0)
        std::printf("%s  one-shot all-reduce, %d GPUs, %9lld %-7s x %3d calls, rank %d: %llu wrong elements\n", good ? "ok  " : "FAIL",
                    world, static_cast<long long>(n), type_name<T>(), calls, r.dev, errors);
    }
  }
  return ok;
}

// Pseudo-random values in [-1, 1) from (seed, i).
__device__ __forceinline__ float hashed(uint64_t seed, int64_t i) {
  uint64_t z = (static_cast<uint64_t>(i) + 1) * 0x9e3779b97f4a7c15ULL ^ seed;
  z = (z ^ (z >> 31)) * 0xbf58476d1ce4e5b9ULL;
  return static_cast<float>(z >> 40) / 8388608.0f - 1.0f;
}

template <typename T>
__global__ void fill_hashed(T* x, int64_t n, uint64_t seed) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += gridDim.x * static_cast<int64_t>(blockDim.x))
    x[i] = from_float<T>(hashed(seed, i));
}

template <typename T>
std::vector<T> to_host(const T* d, int64_t n) {
  std::vector<T> h(n);
  PAGODA_CUDA_CHECK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}

bool check_add_norm(std::vector<Rank>& ranks) {
  const int world = static_cast<int>(ranks.size());
  bool ok = true;
  for (int H : {4096, 5120})
    for (int T : {1, 3, 64, 200}) {
      const int64_t n = static_cast<int64_t>(T) * H;
      std::vector<std::vector<float>> res(world), ref_res(world);
      std::vector<std::vector<bf16>> out(world), ref_out(world);
      on_all(ranks, [&](Rank& r) {
        bf16 *data, *ref_data, *weight, *o, *ref_o;
        float *residual, *ref_residual;
        PAGODA_CUDA_CHECK(cudaMalloc(&data, n * 2));
        PAGODA_CUDA_CHECK(cudaMalloc(&ref_data, n * 2));
        PAGODA_CUDA_CHECK(cudaMalloc(&weight, H * 2));
        PAGODA_CUDA_CHECK(cudaMalloc(&o, n * 2));
        PAGODA_CUDA_CHECK(cudaMalloc(&ref_o, n * 2));
        PAGODA_CUDA_CHECK(cudaMalloc(&residual, n * 4));
        PAGODA_CUDA_CHECK(cudaMalloc(&ref_residual, n * 4));
        fill_hashed<<<132, 256, 0, r.stream>>>(data, n, 1000 + r.dev);  // each rank's partial sums
        fill_hashed<<<132, 256, 0, r.stream>>>(residual, n, 7);          // the same residual on every rank
        fill_hashed<<<132, 256, 0, r.stream>>>(weight, H, 9);
        PAGODA_CUDA_CHECK(cudaMemcpyAsync(ref_data, data, n * 2, cudaMemcpyDeviceToDevice, r.stream));
        PAGODA_CUDA_CHECK(cudaMemcpyAsync(ref_residual, residual, n * 4, cudaMemcpyDeviceToDevice, r.stream));
        // reference: plain all-reduce, then the residual add + RMSNorm kernel
        OneShotAllReduceParams plain = params_for(ranks, r.dev, n * 2);
        plain.data = reinterpret_cast<uint4*>(ref_data);
        launch_one_shot_all_reduce<bf16>(plain, r.stream);
        launch_add_rmsnorm<bf16>(ref_residual, ref_data, weight, ref_o, nullptr, T, H, 1e-6f, r.stream);
        // fused
        OneShotAllReduceParams p = params_for(ranks, r.dev, n * 2);
        p.data = reinterpret_cast<uint4*>(data);
        launch_one_shot_all_reduce_add_norm(p, AddNormParams{residual, weight, o, T, H, 1e-6f}, r.stream);
        PAGODA_CUDA_CHECK(cudaStreamSynchronize(r.stream));
        res[r.dev] = to_host(residual, n);
        ref_res[r.dev] = to_host(ref_residual, n);
        out[r.dev] = to_host(o, n);
        ref_out[r.dev] = to_host(ref_o, n);
        for (void* q : {static_cast<void*>(data), static_cast<void*>(ref_data), static_cast<void*>(weight), static_cast<void*>(o),
                        static_cast<void*>(ref_o), static_cast<void*>(residual), static_cast<void*>(ref_residual)})
          cudaFree(q);
      });
      int64_t residual_diffs = 0, out_far = 0, across_ranks = 0;
      for (int r = 0; r < world; r++)
        for (int64_t i = 0; i < n; i++) {
          residual_diffs += res[r][i] != ref_res[r][i];
          const float a = __bfloat162float(out[r][i]), b = __bfloat162float(ref_out[r][i]);
          out_far += std::fabs(a - b) > std::fabs(b) / 128 + 1e-6f;  // more than one bf16 rounding
          across_ranks += a != __bfloat162float(out[0][i]);
        }
      const bool good = residual_diffs == 0 && out_far == 0 && across_ranks == 0;
      ok = ok && good;
      std::printf("%s  all-reduce + residual add + RMSNorm, %d GPUs, %3d rows x %d: residual %lld differ, output %lld beyond one "
                  "rounding, %lld differ across ranks\n",
                  good ? "ok  " : "FAIL", world, T, H, static_cast<long long>(residual_diffs), static_cast<long long>(out_far),
                  static_cast<long long>(across_ranks));
    }
  return ok;
}

// Median microseconds per all-reduce when a graph of `reps` all-reduces is replayed on every rank.
double graph_us(std::vector<Rank>& ranks, int reps, const std::function<void(Rank&)>& one) {
  std::vector<cudaGraphExec_t> execs(ranks.size());
  on_all(ranks, [&](Rank& r) {
    cudaGraph_t g;
    PAGODA_CUDA_CHECK(cudaStreamBeginCapture(r.stream, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < reps; i++) one(r);
    PAGODA_CUDA_CHECK(cudaStreamEndCapture(r.stream, &g));
    PAGODA_CUDA_CHECK(cudaGraphInstantiate(&execs[r.dev], g, 0));
    PAGODA_CUDA_CHECK(cudaGraphDestroy(g));
  });
  std::vector<float> times;
  on_all(ranks, [&](Rank& r) {
    cudaEvent_t a, b;
    PAGODA_CUDA_CHECK(cudaEventCreate(&a));
    PAGODA_CUDA_CHECK(cudaEventCreate(&b));
    for (int it = 0; it < 25; it++) {
      PAGODA_CUDA_CHECK(cudaEventRecord(a, r.stream));
      PAGODA_CUDA_CHECK(cudaGraphLaunch(execs[r.dev], r.stream));
      PAGODA_CUDA_CHECK(cudaEventRecord(b, r.stream));
      PAGODA_CUDA_CHECK(cudaEventSynchronize(b));
      float ms = 0;
      PAGODA_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
      if (r.dev == 0 && it >= 5) times.push_back(ms);
    }
    PAGODA_CUDA_CHECK(cudaGraphExecDestroy(execs[r.dev]));
  });
  std::sort(times.begin(), times.end());
  return times[times.size() / 2] * 1e3 / reps;
}

template <typename T>
double eager_us(std::vector<Rank>& ranks, int64_t n) {
  std::vector<double> us;
  on_all(ranks, [&](Rank& r) {
    for (int it = 0; it < 200; it++) {
      const auto t0 = std::chrono::steady_clock::now();
      NCCL_CHECK(ncclAllReduce(r.data, r.data, n, nccl_type<T>(), ncclSum, r.comm, r.stream));
      PAGODA_CUDA_CHECK(cudaStreamSynchronize(r.stream));
      const auto t1 = std::chrono::steady_clock::now();
      if (r.dev == 0 && it >= 20) us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    }
  });
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
}

template <typename T>
void bench(std::vector<Rank>& ranks) {
  std::printf("\n%s all-reduce on %zu GPUs, microseconds per all-reduce (graph: median replay of 20 back-to-back)\n",
              type_name<T>(), ranks.size());
  std::printf("%10s  %12s  %12s  %14s  %8s\n", "bytes", "NCCL eager", "NCCL graph", "one-shot graph", "speedup");
  for (int64_t bytes = 8 << 10; bytes <= (8 << 20); bytes *= 4) {
    const int64_t n = bytes / static_cast<int64_t>(sizeof(T));
    const double e = eager_us<T>(ranks, n);
    const double nccl = graph_us(ranks, 20, [&](Rank& r) {
      NCCL_CHECK(ncclAllReduce(r.data, r.data, n, nccl_type<T>(), ncclSum, r.comm, r.stream));
    });
    const double one = graph_us(ranks, 20, [&](Rank& r) { launch_one_shot_all_reduce<T>(params_for(ranks, r.dev, bytes), r.stream); });
    std::printf("%10lld  %12.1f  %12.1f  %14.1f  %7.2fx\n", static_cast<long long>(bytes), e, nccl, one, nccl / one);
  }
}

int main(int argc, char** argv) {
  int world = 0;
  PAGODA_CUDA_CHECK(cudaGetDeviceCount(&world));
  world = std::min(world, kAllReduceMaxRanks);
  if (world < 2) {
    std::printf("one-shot all-reduce: needs 2 GPUs, %d visible\n", world);
    return 1;
  }
  for (int a = 0; a < world; a++)
    for (int b = 0; b < world; b++) {
      int can = 0;
      PAGODA_CUDA_CHECK(cudaDeviceCanAccessPeer(&can, a, b));
      if (a != b && !can) {
        std::printf("one-shot all-reduce: GPU %d cannot reach GPU %d's memory (no peer access)\n", a, b);
        return 1;
      }
    }
  std::vector<Rank> ranks(world);
  std::vector<ncclComm_t> comms(world);
  std::vector<int> devs(world);
  for (int r = 0; r < world; r++) devs[r] = r;
  NCCL_CHECK(ncclCommInitAll(comms.data(), world, devs.data()));
  for (int r = 0; r < world; r++) {
    Rank& k = ranks[r];
    k.dev = r;
    k.comm = comms[r];
    PAGODA_CUDA_CHECK(cudaSetDevice(r));
    for (int p = 0; p < world; p++)
      if (p != r) PAGODA_CUDA_CHECK(cudaDeviceEnablePeerAccess(p, 0));
    PAGODA_CUDA_CHECK(cudaStreamCreateWithFlags(&k.stream, cudaStreamNonBlocking));
    PAGODA_CUDA_CHECK(cudaMalloc(&k.data, kCapacityBytes));
    PAGODA_CUDA_CHECK(cudaMalloc(&k.staging, 2 * kCapacityBytes));
    PAGODA_CUDA_CHECK(cudaMalloc(&k.flags, sizeof(uint64_t) * kAllReduceBlocks * world));
    PAGODA_CUDA_CHECK(cudaMalloc(&k.epochs, sizeof(uint64_t) * kAllReduceBlocks));
    PAGODA_CUDA_CHECK(cudaMalloc(&k.call, sizeof(int)));
    PAGODA_CUDA_CHECK(cudaMalloc(&k.errors, sizeof(unsigned long long)));
    PAGODA_CUDA_CHECK(cudaMemset(k.data, 0, kCapacityBytes));
    PAGODA_CUDA_CHECK(cudaMemset(k.flags, 0, sizeof(uint64_t) * kAllReduceBlocks * world));
    PAGODA_CUDA_CHECK(cudaMemset(k.epochs, 0, sizeof(uint64_t) * kAllReduceBlocks));
    PAGODA_CUDA_CHECK(cudaDeviceSynchronize());
  }
  const bool ok_f32 = check<float>(ranks);
  const bool ok_bf16 = check<bf16>(ranks);
  const bool ok = check_add_norm(ranks) && ok_bf16 && ok_f32;
  if (argc > 1 && std::strcmp(argv[1], "--bench") == 0) {
    bench<float>(ranks);
    bench<bf16>(ranks);
  }
  for (auto& c : comms) ncclCommDestroy(c);
  std::printf("one-shot all-reduce checks: %s\n", ok ? "all passed" : "FAILED");
  return ok ? 0 : 1;
}
