#include "backends/cuda/peer_all_reduce.h"

#include "all_reduce.cuh"

namespace pagoda::cuda {

static_assert(kPeerMaxRanks == kernels::kAllReduceMaxRanks && kPeerBlocks == kernels::kAllReduceBlocks,
              "peer_all_reduce.h and kernels/all_reduce.cuh disagree on the one-shot all-reduce's layout");

void PeerAllReduce::run(float* data, int64_t n, cudaStream_t stream) const {
  kernels::launch_one_shot_all_reduce(
      kernels::one_shot_params(data, n, peers_staging_, peers_flags_, epochs_.get(), capacity_, rank_, world_), stream);
}

}  // namespace pagoda::cuda
