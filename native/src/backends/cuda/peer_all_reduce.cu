#include "backends/cuda/peer_all_reduce.h"

#include "all_reduce.cuh"

namespace pagoda::cuda {

static_assert(kPeerMaxRanks == kernels::kAllReduceMaxRanks && kPeerBlocks == kernels::kAllReduceBlocks,
              "peer_all_reduce.h and kernels/all_reduce.cuh disagree on the one-shot all-reduce's layout");

void PeerAllReduce::run(void* data, int64_t n, bool bf16, cudaStream_t stream) const {
  const kernels::OneShotAllReduceParams p =
      kernels::one_shot_params(data, n * (bf16 ? 2 : 4), peers_staging_, peers_flags_, epochs_.get(), kOneShotMaxBytes, rank_, world_);
  if (bf16) kernels::launch_one_shot_all_reduce<kernels::bf16>(p, stream);
  else kernels::launch_one_shot_all_reduce<float>(p, stream);
}

void PeerAllReduce::run_add_norm(void* data, int rows, int H, float* residual, const __nv_bfloat16* weight, __nv_bfloat16* out,
                                 float eps, cudaStream_t stream) const {
  const kernels::OneShotAllReduceParams p = kernels::one_shot_params(data, static_cast<int64_t>(rows) * H * 2, peers_staging_,
                                                                     peers_flags_, epochs_.get(), kOneShotMaxBytes, rank_, world_);
  kernels::launch_one_shot_all_reduce_add_norm(p, kernels::AddNormParams{residual, weight, out, rows, H, eps}, stream);
}

}  // namespace pagoda::cuda
