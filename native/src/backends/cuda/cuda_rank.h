// One GPU's share of the model: its shard of the weights and of every KV block in device memory, its
// stream, cuBLAS handle, workspace and decode graphs. With tensor parallelism 1 the shard is the whole
// model; with N > 1 every rank runs the same forward on its heads and MLP columns, and the row-parallel
// projections (o, down) are summed across ranks by an all-reduce (one-shot peer-to-peer or NCCL). Each
// rank computes its vocabulary slice of the logits straight into rank 0's buffer when the GPUs reach
// each other's memory (else rank 0 computes them all); rank 0 samples. All calls on a rank come from its own host thread (see
// RankThreads).
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backends/cuda/device_memory.h"
#include "backends/cuda/linear.h"
#include "backends/cuda/peer_all_reduce.h"
#include "backends/cuda/shard.h"
#include "backends/cuda/step_profiler.h"
#include "engine/backend.h"

namespace pagoda::kernels {
struct PenaltyEntry;  // sampling.cuh
struct RowScan;       // sampling.cuh
}

namespace pagoda::cuda {

using bf16 = __nv_bfloat16;

// How a step splits into decode entries (one query token) and prefill tiles (64 query rows); the same
// for every rank, computed once per step.
struct StepPlan {
  std::vector<int32_t> entries_seq, entries_row, tiles_seq, tiles_row0;
  int max_ctx = 0;          // longest context among decode entries
  bool pure_decode = false;  // every sequence decodes one token and every token is a logit row
  void build(const StepInput& in);
};

struct Matrix {
  DeviceArray<bf16> data;
  Weight w;
  void set(const std::vector<uint16_t>& bits, int n, int k);  // bf16 bits, row-major [n, k]
};

struct Layer {
  DeviceArray<bf16> attn_norm, mlp_norm, q_norm, k_norm, qkv_bias;
  Matrix qkv, o, gate_up, down;
};

// Fixed-address device inputs of the forward pass (CUDA graphs replay against these addresses),
// mirrored in pinned host memory.
struct ForwardInputs {
  int32_t *tokens, *positions, *slots, *query_start, *context_lens, *block_tables, *logit_rows, *entry_seq, *entry_row,
      *tile_seq, *tile_row0;
};

class CudaRank {
 public:
  // Loads this rank's shard onto GPU `shard.rank` (already current on the calling thread) and sizes the
  // workspace. `comm` is null with one rank.
  CudaRank(const ModelConfig& full, const WeightStore& w, const EngineOptions& opt, const Shard& shard, ncclComm_t comm);
  ~CudaRank();
  CudaRank(const CudaRank&) = delete;
  CudaRank& operator=(const CudaRank&) = delete;

  // This GPU's side of the one-shot all-reduce; the caller joins every rank's before the first step.
  PeerAllReduce& start_peer_all_reduce();
  // With a vocabulary-parallel LM head: rank 0's logits buffer, where this rank writes its columns.
  float* logits() const { return logits_.get(); }
  void set_logits_target(float* rank0_logits);
  // One small all-reduce of each kind, waited for: NCCL sets up its connections and buffers
  // (tensor parallelism), and the peer-to-peer path is exercised before it is trusted with a step.
  void connect();
  // KV blocks that fit in this GPU's share of memory now (weights and workspace already taken).
  int64_t kv_blocks_that_fit() const;
  void allocate_kv_cache(int num_blocks);
  void capture_graphs();
  // Throws EngineError if the step does not fit the workspace; nothing has run yet then.
  void check_fits(const StepInput& in) const;
  // Runs the step; rank 0 samples into `out` (other ranks pass nullptr).
  void run(const StepInput& in, const StepPlan& plan, StepOutput* out);

  const std::string& device_name() const { return device_name_; }
  int64_t weight_bytes() const { return weight_bytes_; }
  int64_t kv_cache_bytes() const { return static_cast<int64_t>(kv_.bytes()); }
  int num_graphs() const { return static_cast<int>(graphs_.size()); }
  int num_blocks() const { return num_blocks_; }
  int block_size() const { return bs_; }

 private:
  void load_weights(const WeightStore& w);
  void size_workspace();
  int max_splits_for(int entries) const;
  template <typename F>
  void put(int field, int64_t n, F value_at);
  void copy_field(int field, int64_t n);
  void upload_inputs(const StepInput& in, const StepPlan& plan, int bucket);
  void forward(int T, int E, bool identity_entries, int NT, int R, int splits);
  void all_reduce_projection(int T);
  void reduce_add_norm(int T, const bf16* weight);
  void nccl_all_reduce(int64_t n);
  void* proj() const;
  void add_norm(bool first, const bf16* weight, bf16* out, const int32_t* rows, int n);
  void sample(const StepInput& in, StepOutput& out, int R);

  ModelConfig full_;  // the whole model (vocabulary, hidden size, layers)
  ModelConfig cfg_;   // this rank's share (heads, KV heads, MLP columns)
  Shard shard_;
  EngineOptions opt_;
  ncclComm_t comm_ = nullptr;
  std::unique_ptr<PeerAllReduce> peer_;  // null: every all-reduce through NCCL
  bool samples_ = true;             // rank 0: holds the logits [max_seqs, V] and samples
  float* logits_target_ = nullptr;  // rank 0's logits_, where this rank writes its vocabulary slice
  std::string device_name_;
  int num_sms_ = 0, resident_ctas_ = 1;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  DeviceArray<uint8_t> cublas_ws_;
  DeviceArray<bf16> embed_, final_norm_;
  Matrix lm_head_;
  std::vector<Layer> layers_;
  DeviceArray<float> inv_freq_;
  int64_t weight_bytes_ = 0;

  int bs_ = 16, num_blocks_ = 0, blocks_cap_ = 0, max_tokens_ = 0, max_seqs_ = 0;
  int64_t layer_elems_ = 0;
  DeviceArray<bf16> kv_;

  DeviceArray<float> residual_, proj_, logits_, logits_work_, partial_ml_;
  DeviceArray<bf16> h_, qkv_, q_, attn_, gu_, act_, hl_, proj_bf16_, partial_acc_;
  bool proj_f32_ = false;
  bool fuse_norm_ = true;    // all-reduce + residual add + norm in one kernel (tensor parallelism)
  bool decode_mma_ = false;  // tensor-core decode attention (PAGODA_DECODE_MMA=1)
  // Split-K decode: arrival counters of the fused merge (PAGODA_DECODE_MERGE=fused), one per entry and CTA
  // group; empty for the separate merge kernel (=kernel).
  DeviceArray<int32_t> split_done_;
  int decode_heads_per_cta_ = 1;
  DeviceArray<int32_t> in_dev_;
  PinnedArray<int32_t> in_host_;
  int64_t offsets_[11] = {};
  ForwardInputs in_{};
  DeviceArray<float> s_float_;
  DeviceArray<int32_t> s_int_;
  PinnedArray<float> s_host_f_;
  PinnedArray<int32_t> s_host_i_;
  DeviceArray<int32_t> out_dev_;
  PinnedArray<int32_t> out_host_;
  // Token selection split over several CTAs per row when the batch is small (kernels::sample_splits).
  DeviceArray<kernels::RowScan> sample_partials_;
  DeviceArray<int32_t> sample_arrivals_;
  DeviceArray<kernels::PenaltyEntry> penalties_;
  std::map<int, cudaGraphExec_t> graphs_;
  StepProfiler profiler_;  // PAGODA_PROFILE=1
};

}  // namespace pagoda::cuda
