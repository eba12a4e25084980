// A rank's side of the one-shot all-reduce (kernels/all_reduce.cuh) of float32 or bf16 tensors: its staging buffer, arrival flags
// and call counters on its own GPU, and, once every rank has made its own, the peers' addresses. Used
// for tensors up to one_shot_max_bytes(world) when every pair of GPUs can reach each other's memory;
// larger ones (prefill steps, big decode batches on many GPUs) go through NCCL, whose ring is
// bandwidth-optimal: every rank of a one-shot reads all the others' whole tensors.
//
// PAGODA_TP_ALL_REDUCE=nccl turns it off (every all-reduce through NCCL), for comparisons.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "backends/cuda/device_memory.h"
#include "backends/cuda/env_choice.h"
#include "engine/errors.h"

namespace pagoda::cuda {

constexpr int64_t kOneShotMaxBytes = 8LL << 20;  // staging buffer size (each half)

// Where the one-shot stops beating NCCL inside a CUDA graph (npm run bench:all-reduce, H200s joined by
// NVLink): 2 GPUs still 1.02 x at 8 MiB; 4 GPUs 1.22 x at 512 KiB but 0.92 x at 2 MiB. 8 GPUs are
// not measured yet: 256 KiB, as each rank reads 7 peers.
inline int64_t one_shot_max_bytes(int world) {
  if (world <= 2) return kOneShotMaxBytes;
  if (world <= 4) return 1LL << 20;
  return 256LL << 10;
}
// As in kernels/all_reduce.cuh (kAllReduceMaxRanks, kAllReduceBlocks); peer_all_reduce.cu checks they agree.
constexpr int kPeerMaxRanks = 8;
constexpr int kPeerBlocks = 64;

// Whether the one-shot all-reduce is wanted and possible on devices 0..world-1.
inline bool one_shot_all_reduce_available(int world) {
  if (env_choice("PAGODA_TP_ALL_REDUCE", {"auto", "nccl"}) == "nccl") return false;
  if (world < 2 || world > kPeerMaxRanks) return false;
  for (int a = 0; a < world; a++)
    for (int b = 0; b < world; b++) {
      int ok = 0;
      if (a != b && (cudaDeviceCanAccessPeer(&ok, a, b) != cudaSuccess || !ok)) return false;
    }
  return true;
}

// Lets the current device read and write the memory of the other devices of the group.
inline void enable_peer_access(int rank, int world) {
  for (int p = 0; p < world; p++) {
    if (p == rank) continue;
    const cudaError_t e = cudaDeviceEnablePeerAccess(p, 0);
    if (e == cudaErrorPeerAccessAlreadyEnabled) {
      cudaGetLastError();  // not an error: clear it
      continue;
    }
    check(e, "cudaDeviceEnablePeerAccess");
  }
}

class PeerAllReduce {
 public:
  // Allocates on the current device (this rank's GPU).
  PeerAllReduce(int rank, int world)
      : rank_(rank),
        world_(world),
        limit_(one_shot_max_bytes(world)),
        staging_(2 * kOneShotMaxBytes),
        flags_(static_cast<size_t>(kPeerBlocks) * world),
        epochs_(kPeerBlocks),
        barrier_(4) {
    check(cudaMemset(flags_.get(), 0, flags_.bytes()), "cudaMemset(all-reduce flags)");
    check(cudaMemset(epochs_.get(), 0, epochs_.bytes()), "cudaMemset(all-reduce epochs)");
    check(cudaMemset(barrier_.get(), 0, barrier_.bytes()), "cudaMemset(barrier)");
    // The ranks' streams do not wait on the default stream: finish the zeroing before any peer can write.
    check(cudaDeviceSynchronize(), "cudaDeviceSynchronize(all-reduce buffers)");
  }

  void* staging() const { return staging_.get(); }
  uint64_t* flags() const { return flags_.get(); }

  // Every rank's buffers, indexed by rank (after each rank has made its PeerAllReduce).
  void join(const std::vector<void*>& staging, const std::vector<uint64_t*>& flags) {
    for (int r = 0; r < world_; r++) {
      peers_staging_[r] = staging[r];
      peers_flags_[r] = flags[r];
    }
    joined_ = true;
  }

  // Whether a tensor of `bytes` goes through the one-shot kernel (else NCCL); the same answer on every rank.
  bool fits(int64_t bytes) const { return joined_ && bytes % 16 == 0 && bytes <= limit_; }

  // Sums `data` ([n] float32, or bf16 when `bf16`; in place) over all ranks; every rank must call it
  // with the same n and type.
  void run(void* data, int64_t n, bool bf16, cudaStream_t stream) const;

  // Returns (on the stream) once every rank has reached it: an all-reduce of 16 bytes of zeros. Each
  // rank's kernel starts after that rank's earlier work on its stream, writes to peers' memory included,
  // and publishes its arrival with a system-scope release that the others acquire: after the barrier,
  // every rank sees what the others wrote before it (the LM head's slices of rank 0's logits).
  void barrier(cudaStream_t stream) const { run(barrier_.get(), 4, false, stream); }

  // The bf16 all-reduce of `data` ([rows, H], not written) fused with what follows it in a layer:
  // residual += the sum; out = RMSNorm(residual) * weight (kernels/all_reduce.cuh). Same call rules as run.
  void run_add_norm(void* data, int rows, int H, float* residual, const __nv_bfloat16* weight, __nv_bfloat16* out, float eps,
                    cudaStream_t stream) const;

 private:
  int rank_, world_;
  int64_t limit_;  // bytes: the largest tensor sent through it
  DeviceArray<uint8_t> staging_;  // [2][kOneShotMaxBytes]
  DeviceArray<uint64_t> flags_, epochs_;
  DeviceArray<float> barrier_;  // [4] zeros, summed by barrier()
  void* peers_staging_[kPeerMaxRanks] = {};
  uint64_t* peers_flags_[kPeerMaxRanks] = {};
  bool joined_ = false;
};

}  // namespace pagoda::cuda
