#include "backends/cuda/peer_all_reduce.h"

#include "all_reduce.cuh"

namespace pagoda::cuda {

static_assert(kPeerMaxRanks == kernels::kAllReduceMaxRanks && kPeerBlocks == kernels::kAllReduceBlocks,
              "peer_all_reduce.h and kernels/all_reduce.cuh disagree on the one-shot all-reduce's layout");

void PeerAllReduce::run(float* data, int64_t n, cudaStream_t stream) const {
  kernels::OneShotAllReduceParams p{};
  p.data = data;
  for (int r = 0; r < world_; r++) {
    p.staging[r] = peers_staging_[r];
    p.flags[r] = peers_flags_[r];
  }
  p.epochs = epochs_.get();
  p.n = n;
  p.capacity = capacity_;
  p.rank = rank_;
  p.world = world_;
  kernels::launch_one_shot_all_reduce(p, stream);
}

}  // namespace pagoda::cuda
