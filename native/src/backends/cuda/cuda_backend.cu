#include "backends/cuda/cuda_backend.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "backends/cuda/cuda_rank.h"
#include "backends/cuda/device_memory.h"
#include "backends/cuda/env_choice.h"
#include "backends/cuda/nccl_group.h"
#include "backends/cuda/peer_all_reduce.h"
#include "backends/cuda/rank_threads.h"
#include "backends/cuda/shard.h"
#include "engine/errors.h"

namespace pagoda::cuda {
namespace {

double env_seconds(const char* name, double fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  const double s = std::atof(v);
  return s > 0 ? s : fallback;
}

// PAGODA_TP_FAULT=hang@K (tests only): at step K the last rank stops taking part, as a GPU that fell
// off the bus would, so the collective never completes and the watchdog must end the process.
int64_t injected_hang_step() {
  const char* v = std::getenv("PAGODA_TP_FAULT");
  if (v == nullptr || std::string(v).rfind("hang@", 0) != 0) return -1;
  return std::atoll(v + 5);
}

// PAGODA_TP_LM_HEAD=rank0 keeps the whole LM head on rank 0 under tensor parallelism (for comparisons);
// the default, vocab, splits it by vocabulary rows when the GPUs reach each other's memory.
bool vocab_parallel_lm_head_wanted() { return env_choice("PAGODA_TP_LM_HEAD", {"vocab", "rank0"}) == "vocab"; }

// The model on N GPUs (N = 1: one rank on the caller's thread, no NCCL). Each step runs on every rank at
// once; a step that cannot fit is refused before any rank starts, so the KV cache stays untouched.
class CudaBackend final : public Backend {
 public:
  CudaBackend(const ModelConfig& cfg, const WeightStore& w, const EngineOptions& opt) : cfg_(cfg) {
    cfg_.validate();
    if (cfg.head_dim != 64 && cfg.head_dim != 128)
      throw EngineError("CUDA backend: unsupported head_dim " + std::to_string(cfg.head_dim) + " (supported: 64, 128)");
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) throw EngineError("--device cuda: no CUDA GPU is visible");
    const int world = std::max(1, opt.tensor_parallel_size);
    validate_tensor_parallel(cfg, world, count);  // before anything is loaded
    if (world > 1) {
      nccl_ = std::make_unique<NcclGroup>(world);
      watchdog_ = std::make_unique<CollectiveWatchdog>(nccl_->comms(), env_seconds("PAGODA_TP_TIMEOUT_S", 120));
      hang_at_ = injected_hang_step();
    }
    threads_ = std::make_unique<RankThreads>(world);
    ranks_.resize(world);
    try {
      load(cfg_, w, opt, world);
    } catch (...) {
      teardown();  // a constructor that throws runs no destructor
      throw;
    }
  }

  ~CudaBackend() override { teardown(); }

  BackendInfo info() const override {
    const CudaRank& r0 = *ranks_[0];
    BackendInfo i;
    const int world = static_cast<int>(ranks_.size());
    i.device = "cuda (" + (world > 1 ? std::to_string(world) + " x " : std::string()) + r0.device_name() + ", " +
               std::to_string(r0.num_graphs()) + " decode graphs" + (world > 1 ? ", tensor parallel, " + all_reduce_ : "") + ")";
    i.num_blocks = r0.num_blocks();
    i.block_size = r0.block_size();
    for (const auto& r : ranks_) {
      i.kv_cache_bytes += r->kv_cache_bytes();
      i.weight_bytes += r->weight_bytes();
    }
    i.weight_dtype = "bf16";
    return i;
  }

  void step(const StepInput& in, StepOutput& out) override {
    const CudaRank& r0 = *ranks_[0];
    validate_step(in, cfg_.vocab_size, r0.num_blocks(), r0.block_size());
    r0.check_fits(in);
    plan_.build(in);
    const int last = static_cast<int>(ranks_.size()) - 1;
    const bool hang = hang_at_ >= 0 && steps_ == hang_at_;
    if (hang) std::fprintf(stderr, "pagoda: PAGODA_TP_FAULT: rank %d stops taking part at step %lld\n", last, static_cast<long long>(steps_));
    steps_++;
    if (watchdog_) watchdog_->arm("a tensor-parallel step");
    // The step was checked before any rank started.
    collectively([&](int r) {
      if (hang && r == last) return;
      ranks_[r]->run(in, plan_, r == 0 ? &out : nullptr);
    });
    if (watchdog_) watchdog_->disarm();
  }

 private:
  void load(const ModelConfig& cfg, const WeightStore& w, const EngineOptions& opt, int world) {
    // Every rank loads its shard on its own thread, all at once.
    // Peer-to-peer access brings the one-shot all-reduce and the vocabulary-parallel LM head.
    const bool peers = nccl_ && one_shot_all_reduce_available(world);
    const bool vocab_parallel = peers && vocab_parallel_lm_head_wanted();
    threads_->run([&](int r) {
      check(cudaSetDevice(r), "cudaSetDevice");
      ranks_[r] =
          std::make_unique<CudaRank>(cfg, w, opt, shard_for(cfg, world, r, vocab_parallel), nccl_ ? nccl_->comm(r) : nullptr);
    });
    if (peers) {
      std::vector<PeerAllReduce*> peer_sides(world);
      threads_->run([&](int r) {
        enable_peer_access(r, world);
        peer_sides[r] = &ranks_[r]->start_peer_all_reduce();
      });
      std::vector<void*> staging;
      std::vector<uint64_t*> flags;
      for (PeerAllReduce* p : peer_sides) {
        staging.push_back(p->staging());
        flags.push_back(p->flags());
      }
      for (PeerAllReduce* p : peer_sides) p->join(staging, flags);
      for (auto& rank : ranks_) rank->set_logits_target(ranks_[0]->logits());
      all_reduce_ = "one-shot all-reduce up to " + std::to_string(one_shot_max_bytes(world) >> 10) + " KiB, NCCL above" +
                    (vocab_parallel ? "; vocabulary-parallel LM head" : "");
    } else if (nccl_) {
      all_reduce_ = "NCCL all-reduce";
    }
    if (nccl_) {
      // NCCL allocates its buffers at the first collective: make that happen before free memory is
      // measured for the KV cache.
      watchdog_->arm("connecting the GPUs");
      collectively([&](int r) { ranks_[r]->connect(); });
      watchdog_->disarm();
    }
    // One block count for all: each rank holds its share of every block.
    int64_t blocks = opt.num_blocks;
    if (blocks <= 0) {
      std::vector<int64_t> fit(world);
      threads_->run([&](int r) { fit[r] = ranks_[r]->kv_blocks_that_fit(); });
      blocks = *std::min_element(fit.begin(), fit.end());
    }
    const int num_blocks = static_cast<int>(std::min<int64_t>(blocks, 1 << 30));
    threads_->run([&](int r) { ranks_[r]->allocate_kv_cache(num_blocks); });
    if (opt.enable_cuda_graphs) {
      // Warm-up passes inside capture_graphs run real collectives: allow for cuBLAS's first calls.
      if (watchdog_) watchdog_->arm("CUDA graph capture", std::max(300.0, watchdog_->timeout_s()));
      collectively([&](int r) { ranks_[r]->capture_graphs(); });
      if (watchdog_) watchdog_->disarm();
    }
  }

  // Runs a job that takes part in collectives on every rank. With several ranks, one that fails leaves
  // the others waiting in a collective that will never complete: that ends the process like a failed
  // collective, with this rank's error, instead of a hang.
  void collectively(const std::function<void(int)>& job) {
    if (ranks_.size() == 1) {
      threads_->run(job);
      return;
    }
    threads_->run([&](int r) {
      try {
        job(r);
      } catch (const std::exception& e) {
        collective_failed("rank " + std::to_string(r) + ": " + e.what());
      }
    });
  }

  // Each rank is torn down on the thread that owns its device.
  void teardown() {
    if (threads_) threads_->run([&](int r) { ranks_[r].reset(); });
  }

  ModelConfig cfg_;
  std::unique_ptr<NcclGroup> nccl_;
  std::unique_ptr<CollectiveWatchdog> watchdog_;
  std::unique_ptr<RankThreads> threads_;
  std::vector<std::unique_ptr<CudaRank>> ranks_;
  StepPlan plan_;
  int64_t steps_ = 0, hang_at_ = -1;
  std::string all_reduce_;  // how the ranks' partial sums are added (tensor parallelism)
};

}  // namespace

std::unique_ptr<Backend> create_cuda_backend(const ModelConfig& cfg, const WeightStore& weights, const EngineOptions& opt) {
  return std::make_unique<CudaBackend>(cfg, weights, opt);
}

}  // namespace pagoda::cuda
