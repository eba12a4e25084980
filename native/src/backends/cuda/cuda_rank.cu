#include "backends/cuda/cuda_rank.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <unordered_map>
#include <vector>

#include "activation.cuh"
#include "backends/cuda/device_memory.h"
#include "backends/cuda/env_choice.h"
#include "backends/cuda/linear.h"
#include "backends/cuda/nccl_group.h"
#include "decode_attention.cuh"
#include "decode_attention_mma.cuh"
#include "engine/errors.h"
#include "engine/half.h"
#include "norm.cuh"
#include "prefill_attention.cuh"
#include "qkv_rope.cuh"
#include "sampling.cuh"

namespace pagoda::cuda {
namespace {

constexpr int kMaxSplits = 64;
constexpr int kMaxTopLogprobs = 20;
constexpr size_t kCublasWorkspace = 32u << 20;
constexpr int64_t kPartialValues = 16LL << 20;  // split-K partial outputs (bf16): splits x entries x heads x head_dim
const int kGraphBuckets[] = {1, 2, 4, 8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512};

// bf16 bits (row-major, as WeightStore::read_bf16 returns them) into a new device array.
DeviceArray<bf16> upload_bits(const std::vector<uint16_t>& bits) {
  DeviceArray<bf16> d(bits.size());
  check(cudaMemcpy(d.get(), bits.data(), bits.size() * 2, cudaMemcpyHostToDevice), "cudaMemcpy(weights)");
  return d;
}

// float32 vectors (norm weights, biases), rounded to bf16.
DeviceArray<bf16> upload_bf16(const std::vector<float>& host) {
  std::vector<uint16_t> bits(host.size());
  for (size_t i = 0; i < host.size(); i++) bits[i] = float_to_bf16(host[i]);
  return upload_bits(bits);
}

template <typename T>
std::vector<T> concat(std::initializer_list<const std::vector<T>*> parts) {
  std::vector<T> out;
  for (const auto* p : parts) out.insert(out.end(), p->begin(), p->end());
  return out;
}

}  // namespace

void Matrix::set(const std::vector<uint16_t>& bits, int n, int k) {
  data = upload_bits(bits);
  w = {data.get(), n, k};
}

void StepPlan::build(const StepInput& in) {
  entries_seq.clear();
  entries_row.clear();
  tiles_seq.clear();
  tiles_row0.clear();
  max_ctx = 0;
  const int S = in.num_seqs(), T = in.num_tokens(), R = in.num_rows();
  for (int s = 0; s < S; s++) {
    const int q0 = in.query_start[s], qlen = in.query_start[s + 1] - q0;
    if (qlen == 1) {
      entries_seq.push_back(s);
      entries_row.push_back(q0);
      max_ctx = std::max(max_ctx, in.context_lens[s]);
    } else {
      for (int r = 0; r < qlen; r += kernels::kPrefillRows) {
        tiles_seq.push_back(s);
        tiles_row0.push_back(r);
      }
    }
  }
  bool identity_rows = R == S;
  for (int r = 0; identity_rows && r < R; r++) identity_rows = in.logit_rows[r] == r;
  pure_decode = static_cast<int>(entries_seq.size()) == S && T == S && identity_rows;
}

CudaRank::CudaRank(const ModelConfig& full, const WeightStore& w, const EngineOptions& opt, const Shard& shard, ncclComm_t comm)
    : full_(full), cfg_(local_config(full, shard)), shard_(shard), opt_(opt), comm_(comm), samples_(shard.rank == 0) {
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, shard.rank), "cudaGetDeviceProperties");
  if (prop.major != 9)
    throw EngineError(std::string("CUDA backend: this build targets compute capability 9.0 (Hopper); the GPU is ") + prop.name + " (" +
                      std::to_string(prop.major) + "." + std::to_string(prop.minor) + ")");
  device_name_ = prop.name;
  num_sms_ = prop.multiProcessorCount;
  check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  check_cublas(cublasCreate(&cublas_), "cublasCreate");
  check_cublas(cublasSetStream(cublas_, stream_), "cublasSetStream");
  cublas_ws_ = DeviceArray<uint8_t>(kCublasWorkspace);
  check_cublas(cublasSetWorkspace(cublas_, cublas_ws_.get(), kCublasWorkspace), "cublasSetWorkspace");
  check_cublas(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
  load_weights(w);
  size_workspace();
}

CudaRank::~CudaRank() {
  profiler_.report(shard_.rank);
  for (auto& [b, g] : graphs_) cudaGraphExecDestroy(g);
  if (cublas_) cublasDestroy(cublas_);
  if (stream_) cudaStreamDestroy(stream_);
}

void CudaRank::check_fits(const StepInput& in) const {
  const int S = in.num_seqs(), T = in.num_tokens(), R = in.num_rows();
  if (T > max_tokens_) throw EngineError("step: " + std::to_string(T) + " tokens exceed the workspace of " + std::to_string(max_tokens_));
  if (S > max_seqs_ || R > max_seqs_) throw EngineError("step: " + std::to_string(S) + " sequences exceed --max-num-seqs");
  if (in.max_blocks_per_seq > blocks_cap_)
    throw EngineError("step: block table of " + std::to_string(in.max_blocks_per_seq) + " blocks exceeds max model length");
}

void CudaRank::run(const StepInput& in, const StepPlan& plan, StepOutput* out) {
  const int S = in.num_seqs(), T = in.num_tokens(), R = in.num_rows();
  int bucket = 0;
  if (plan.pure_decode && !graphs_.empty() && !profiler_.enabled()) {
    for (auto& [b, g] : graphs_)
      if (b >= S) {
        bucket = b;
        break;
      }
  }
  if (bucket > 0) {
    upload_inputs(in, plan, bucket);
    check(cudaGraphLaunch(graphs_.at(bucket), stream_), "cudaGraphLaunch");
  } else {
    upload_inputs(in, plan, 0);
    const int E = static_cast<int>(plan.entries_seq.size());
    int splits = kernels::decode_splits(E, cfg_.num_heads, decode_heads_per_cta_, plan.max_ctx, num_sms_, resident_ctas_, kMaxSplits);
    splits = std::min(splits, max_splits_for(E));
    forward(T, E, /*identity_entries=*/false, static_cast<int>(plan.tiles_seq.size()), R, splits);
  }
  if (out != nullptr) {
    sample(in, *out, R);
  } else {
    // The pinned inputs are rewritten by the next step: wait until this one has read them.
    check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize(step)");
    profiler_.end_step(stream_);
  }
}

// ---- loading ------------------------------------------------------------------------------------

void CudaRank::load_weights(const WeightStore& w) {
  // Full-model sizes as stored; this rank keeps its slices.
  const int V = full_.vocab_size, H = full_.hidden_size, I = full_.intermediate_size, Q = full_.q_size(), KV = full_.kv_size(),
            D = full_.head_dim;
  const int q0 = shard_.head0 * D, nq = cfg_.q_size(), kv0 = shard_.kv_head0 * D, nkv = cfg_.kv_size();
  const int i0 = shard_.inter0, ni = cfg_.intermediate_size;
  // Matrices W[n, k] go to the GPU as bf16 read straight from the file: rows [r0, r0 + count) of W for
  // a column-parallel shard, columns [c0, c0 + count) for a row-parallel one (everything at TP=1).
  auto rows = [&](const std::string& name, int64_t n, int64_t k, int64_t r0, int64_t count) {
    return w.read_bf16(name, {n, k}, r0, count, 0, k);
  };
  auto cols = [&](const std::string& name, int64_t n, int64_t k, int64_t c0, int64_t count) {
    return w.read_bf16(name, {n, k}, 0, n, c0, count);
  };
  // Bias vectors: this rank's entries.
  auto part = [](const std::vector<float>& full, int64_t first, int64_t count) { return take_rows(full, 1, first, count); };
  // The embedding is replicated (every rank starts from the token's row); the LM head is split by
  // vocabulary rows (shard_.vocab0 ...), or rank 0's alone.
  embed_ = upload_bits(rows("embed.weight", V, H, 0, V));
  weight_bytes_ += embed_.bytes();
  if (shard_.vocab > 0) {
    if (!full_.tie_word_embeddings && w.has("lm_head.weight")) {
      lm_head_.set(rows("lm_head.weight", V, H, shard_.vocab0, shard_.vocab), shard_.vocab, H);
      weight_bytes_ += lm_head_.data.bytes();
    } else {
      lm_head_.w = {embed_.get() + static_cast<int64_t>(shard_.vocab0) * H, shard_.vocab, H};
    }
    final_norm_ = upload_bf16(w.read_f32("norm.weight", {H}));
  }
  std::vector<float> inv = rope_inv_freq(full_);
  inv_freq_ = DeviceArray<float>(inv.size());
  check(cudaMemcpy(inv_freq_.get(), inv.data(), inv.size() * 4, cudaMemcpyHostToDevice), "cudaMemcpy(inv_freq)");
  layers_.resize(full_.num_layers);
  for (int l = 0; l < full_.num_layers; l++) {
    const std::string p = "layers." + std::to_string(l) + ".";
    Layer& L = layers_[l];
    L.attn_norm = upload_bf16(w.read_f32(p + "attn_norm.weight", {H}));
    L.mlp_norm = upload_bf16(w.read_f32(p + "mlp_norm.weight", {H}));
    auto q = rows(p + "attn.q.weight", Q, H, q0, nq);
    auto k = rows(p + "attn.k.weight", KV, H, kv0, nkv);
    auto v = rows(p + "attn.v.weight", KV, H, kv0, nkv);
    L.qkv.set(concat({&q, &k, &v}), nq + 2 * nkv, H);
    if (full_.attention_bias) {
      auto qb = part(w.read_f32(p + "attn.q.bias", {Q}), q0, nq);
      auto kb = part(w.read_f32(p + "attn.k.bias", {KV}), kv0, nkv);
      auto vb = part(w.read_f32(p + "attn.v.bias", {KV}), kv0, nkv);
      L.qkv_bias = upload_bf16(concat({&qb, &kb, &vb}));
    }
    if (full_.qk_norm) {
      L.q_norm = upload_bf16(w.read_f32(p + "attn.q_norm.weight", {D}));
      L.k_norm = upload_bf16(w.read_f32(p + "attn.k_norm.weight", {D}));
    }
    L.o.set(cols(p + "attn.o.weight", H, Q, q0, nq), H, nq);
    auto gate = rows(p + "mlp.gate.weight", I, H, i0, ni);
    auto up = rows(p + "mlp.up.weight", I, H, i0, ni);
    L.gate_up.set(concat({&gate, &up}), 2 * ni, H);
    L.down.set(cols(p + "mlp.down.weight", H, I, i0, ni), H, ni);
    weight_bytes_ += L.qkv.data.bytes() + L.o.data.bytes() + L.gate_up.data.bytes() + L.down.data.bytes();
  }
}

int CudaRank::max_splits_for(int entries) const {
  if (entries == 0) return 1;
  const int64_t per_split = static_cast<int64_t>(entries) * cfg_.num_heads * cfg_.head_dim;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(kMaxSplits, static_cast<int64_t>(partial_acc_.size()) / per_split)));
}

void CudaRank::size_workspace() {
  bs_ = opt_.block_size;
  if (bs_ <= 0 || bs_ > 1024) throw EngineError("block size must be in 1..1024");
  max_seqs_ = std::max(1, opt_.max_num_seqs);
  int largest_bucket = 0;
  for (int b : kGraphBuckets)
    if (b <= max_seqs_) largest_bucket = b;
  max_tokens_ = std::max({opt_.max_num_batched_tokens, max_seqs_, largest_bucket});
  const int max_len = opt_.max_model_len > 0 ? opt_.max_model_len : 32768;
  blocks_cap_ = (max_len + bs_ - 1) / bs_;
  const int64_t T = max_tokens_, H = cfg_.hidden_size, I = cfg_.intermediate_size, Q = cfg_.q_size(), KV = cfg_.kv_size();
  residual_ = DeviceArray<float>(T * H);
  // The o / down projections' output: bf16 by default, float32 with PAGODA_PROJ_DTYPE=f32. Under tensor
  // parallelism it is also what the all-reduce adds: bf16 halves its bytes (each rank's partial sum is
  // rounded once, the total is added in float32 and rounded once, as HF transformers and vLLM do).
  proj_f32_ = env_choice("PAGODA_PROJ_DTYPE", {"bf16", "f32"}) == "f32";
  fuse_norm_ = env_choice("PAGODA_TP_FUSE_NORM", {"1", "0"}) == "1";
  // Decode attention on tensor cores (decode_attention_mma.cuh) for groups of 4-16 query heads per KV head,
  // where the CUDA-core kernel stops being memory-bound; PAGODA_DECODE_MMA=0 / 1: never / for every group.
  const int group = cfg_.num_heads / cfg_.num_kv_heads;
  const std::string mma = env_choice("PAGODA_DECODE_MMA", {"auto", "0", "1"});
  decode_mma_ = kernels::decode_mma_supports(group) && (mma == "1" || (mma == "auto" && group >= 4));
  // The split heuristic needs the chosen kernel's CTA shape: query heads per CTA and CTAs per SM.
  decode_heads_per_cta_ = decode_mma_ ? group : kernels::decode_heads_per_cta(group);
  resident_ctas_ = decode_mma_ ? kernels::decode_mma_resident_ctas(cfg_.head_dim) : kernels::decode_resident_ctas(cfg_.head_dim, group);
  if (proj_f32_) proj_ = DeviceArray<float>(T * H);
  else proj_bf16_ = DeviceArray<bf16>(T * H);
  h_ = DeviceArray<bf16>(T * H);
  qkv_ = DeviceArray<bf16>(T * (Q + 2 * KV));
  q_ = DeviceArray<bf16>(T * Q);
  attn_ = DeviceArray<bf16>(T * Q);
  gu_ = DeviceArray<bf16>(T * 2 * I);
  act_ = DeviceArray<bf16>(T * I);
  if (shard_.vocab > 0) hl_ = DeviceArray<bf16>(static_cast<int64_t>(max_seqs_) * H);
  if (samples_) {
    logits_ = DeviceArray<float>(static_cast<int64_t>(max_seqs_) * cfg_.vocab_size);
    logits_target_ = logits_.get();
  }
  partial_acc_ = DeviceArray<bf16>(kPartialValues);
  partial_ml_ = DeviceArray<float>(kPartialValues / cfg_.head_dim * 2);
  if (env_choice("PAGODA_DECODE_MERGE", {"fused", "kernel"}) == "fused") {
    split_done_ = DeviceArray<int32_t>(static_cast<int64_t>(kernels::decode_split_counters(max_seqs_, cfg_.num_heads)));
    check(cudaMemset(split_done_.get(), 0, split_done_.bytes()), "cudaMemset(split counters)");
  }
  // Forward inputs at fixed offsets.
  const int64_t max_tiles = (T + kernels::kPrefillRows - 1) / kernels::kPrefillRows + max_seqs_;
  const int64_t sizes[] = {T, T, T, max_seqs_ + 1, max_seqs_, static_cast<int64_t>(max_seqs_) * blocks_cap_, max_seqs_, max_seqs_,
                           max_seqs_, max_tiles, max_tiles};
  int64_t total = 0;
  for (int64_t s : sizes) total += (s + 31) / 32 * 32;
  in_dev_ = DeviceArray<int32_t>(total);
  in_host_ = PinnedArray<int32_t>(total);
  int32_t* fields[11];
  int64_t off = 0;
  for (int i = 0; i < 11; i++) {
    fields[i] = in_dev_.get() + off;
    offsets_[i] = off;
    off += (sizes[i] + 31) / 32 * 32;
  }
  in_ = {fields[0], fields[1], fields[2], fields[3], fields[4], fields[5], fields[6], fields[7], fields[8], fields[9], fields[10]};
  if (!samples_) return;
  // Sampling inputs and outputs.
  const int R = max_seqs_;
  s_float_ = DeviceArray<float>(6 * static_cast<int64_t>(R));
  s_int_ = DeviceArray<int32_t>(4 * static_cast<int64_t>(R));
  s_host_f_ = PinnedArray<float>(6 * static_cast<int64_t>(R));
  s_host_i_ = PinnedArray<int32_t>(4 * static_cast<int64_t>(R));
  out_dev_ = DeviceArray<int32_t>(2 * static_cast<int64_t>(R) * (1 + kMaxTopLogprobs));
  out_host_ = PinnedArray<int32_t>(2 * static_cast<int64_t>(R) * (1 + kMaxTopLogprobs));
  sample_partials_ = DeviceArray<kernels::RowScan>(static_cast<int64_t>(R) * kernels::kSampleMaxSplits);
  sample_arrivals_ = DeviceArray<int32_t>(R);
  check(cudaMemset(sample_arrivals_.get(), 0, sample_arrivals_.bytes()), "cudaMemset(sampling counters)");
}

void CudaRank::set_logits_target(float* rank0_logits) {
  if (!samples_) logits_target_ = rank0_logits;
}

PeerAllReduce& CudaRank::start_peer_all_reduce() {
  peer_ = std::make_unique<PeerAllReduce>(shard_.rank, shard_.world);
  return *peer_;
}

void CudaRank::connect() {
  nccl_all_reduce(cfg_.hidden_size);
  all_reduce_projection(1);
  check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize(connect)");
  profiler_.discard();
}

int64_t CudaRank::kv_blocks_that_fit() const {
  const int64_t per_block = 2LL * cfg_.num_layers * cfg_.num_kv_heads * bs_ * cfg_.head_dim * 2;
  size_t free_b = 0, total_b = 0;
  check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
  const double util = opt_.gpu_memory_utilization > 0 ? opt_.gpu_memory_utilization : 0.9;
  // Everything already in use (weights, workspace, other processes) counts against the share;
  // keep room for graphs, cuBLAS, NCCL and the logits copy used with penalties.
  const int64_t reserve = (512LL << 20) + (samples_ ? static_cast<int64_t>(max_seqs_) * cfg_.vocab_size * 4 : 0);
  const int64_t budget = static_cast<int64_t>(util * static_cast<double>(total_b)) - static_cast<int64_t>(total_b - free_b) - reserve;
  const int64_t blocks = budget / per_block;
  if (blocks < 1)
    throw EngineError("--gpu-memory-utilization " + std::to_string(util) + " leaves no room for the KV cache on GPU " +
                      std::to_string(shard_.rank) + " after " + std::to_string((total_b - free_b) >> 20) +
                      " MiB in use: raise it, use a smaller model or more tensor parallelism");
  return blocks;
}

void CudaRank::allocate_kv_cache(int num_blocks) {
  num_blocks_ = num_blocks;
  layer_elems_ = static_cast<int64_t>(num_blocks_) * cfg_.num_kv_heads * bs_ * cfg_.head_dim;
  kv_ = DeviceArray<bf16>(2 * layer_elems_ * cfg_.num_layers);
}

// ---- one step -----------------------------------------------------------------------------------

template <typename F>
void CudaRank::put(int field, int64_t n, F value_at) {
  int32_t* h = in_host_.get() + offsets_[field];
  for (int64_t i = 0; i < n; i++) h[i] = value_at(i);
}

void CudaRank::copy_field(int field, int64_t n) {
  if (n == 0) return;
  check(cudaMemcpyAsync(in_dev_.get() + offsets_[field], in_host_.get() + offsets_[field], n * 4, cudaMemcpyHostToDevice, stream_),
        "cudaMemcpyAsync(inputs)");
}

// bucket > 0: a graph replay of `bucket` decode entries; the rows past the batch are padding.
void CudaRank::upload_inputs(const StepInput& in, const StepPlan& plan, int bucket) {
  const int S = in.num_seqs(), T = in.num_tokens(), R = in.num_rows();
  const int n_tok = bucket > 0 ? bucket : T, n_seq = bucket > 0 ? bucket : S;
  profiler_.mark("inputs upload", stream_);
  put(0, n_tok, [&](int64_t i) { return i < T ? in.token_ids[i] : 0; });
  put(1, n_tok, [&](int64_t i) { return i < T ? in.positions[i] : 0; });
  put(2, n_tok, [&](int64_t i) { return i < T ? in.slot_mapping[i] : -1; });
  put(3, n_seq + 1, [&](int64_t i) { return i <= S ? in.query_start[i] : T; });
  put(4, n_seq, [&](int64_t i) { return i < S ? in.context_lens[i] : 0; });
  const int n_rows = bucket > 0 ? bucket : R;
  put(6, n_rows, [&](int64_t i) { return i < R ? in.logit_rows[i] : static_cast<int32_t>(i); });
  copy_field(0, n_tok);
  copy_field(1, n_tok);
  copy_field(2, n_tok);
  copy_field(3, n_seq + 1);
  copy_field(4, n_seq);
  copy_field(6, n_rows);
  if (bucket == 0) {
    const int E = static_cast<int>(plan.entries_seq.size()), NT = static_cast<int>(plan.tiles_seq.size());
    put(7, E, [&](int64_t i) { return plan.entries_seq[i]; });
    put(8, E, [&](int64_t i) { return plan.entries_row[i]; });
    put(9, NT, [&](int64_t i) { return plan.tiles_seq[i]; });
    put(10, NT, [&](int64_t i) { return plan.tiles_row0[i]; });
    copy_field(7, E);
    copy_field(8, E);
    copy_field(9, NT);
    copy_field(10, NT);
  }
  // Block tables: rows of the step's width into the fixed stride.
  if (S > 0 && in.max_blocks_per_seq > 0)
    check(cudaMemcpy2DAsync(in_.block_tables, static_cast<size_t>(blocks_cap_) * 4, in.block_tables.data(),
                            static_cast<size_t>(in.max_blocks_per_seq) * 4, static_cast<size_t>(in.max_blocks_per_seq) * 4, S,
                            cudaMemcpyHostToDevice, stream_),
          "cudaMemcpy2DAsync(block tables)");
}


// The model over T tokens: E decode entries, NT prefill tiles, logits for R rows into logits_.
void CudaRank::forward(int T, int E, bool identity_entries, int NT, int R, int splits) {
  const int H = cfg_.hidden_size, I = cfg_.intermediate_size, Q = cfg_.q_size(), KV = cfg_.kv_size(), D = cfg_.head_dim;
  const float eps = static_cast<float>(cfg_.rms_norm_eps), scale = 1.0f / std::sqrt(static_cast<float>(D));
  profiler_.mark("embedding", stream_);
  kernels::launch_embed(in_.tokens, embed_.get(), residual_.get(), T, H, stream_);
  for (int l = 0; l < cfg_.num_layers; l++) {
    const Layer& L = layers_[l];
    bf16* kc = kv_.get() + 2 * l * layer_elems_;
    bf16* vc = kc + layer_elems_;
    if (l == 0) {
      profiler_.mark("residual add + norm", stream_);
      add_norm(true, L.attn_norm.get(), h_.get(), nullptr, T);
    } else {
      reduce_add_norm(T, L.attn_norm.get());  // the previous layer's down projection
    }
    profiler_.mark("qkv projection", stream_);
    linear(cublas_, h_.get(), T, L.qkv.w, qkv_.get(), false);
    profiler_.mark("qk norm, rope, kv store", stream_);
    kernels::QkvRopeParams rp{qkv_.get(), L.qkv_bias.get(), L.q_norm.get(), L.k_norm.get(), inv_freq_.get(), in_.positions,
                              in_.slots, q_.get(), kc, vc, T, cfg_.num_heads, cfg_.num_kv_heads, bs_, Q + 2 * KV, eps};
    kernels::launch_qkv_rope(rp, D, stream_, overlap_launches());
    if (E > 0) {
      profiler_.mark("decode attention", stream_);
      kernels::DecodeAttentionParams dp{q_.get(), kc, vc, in_.block_tables, in_.context_lens,
                                        identity_entries ? nullptr : in_.entry_seq, identity_entries ? nullptr : in_.entry_row,
                                        attn_.get(), partial_acc_.get(), partial_ml_.get(), E, cfg_.num_heads, cfg_.num_kv_heads,
                                        bs_, blocks_cap_, splits, Q, Q, scale, split_done_.get(), overlap_launches()};
      if (decode_mma_) kernels::launch_decode_attention_mma(dp, D, stream_);
      else kernels::launch_decode_attention(dp, D, stream_);
    }
    if (NT > 0) {
      profiler_.mark("prefill attention", stream_);
      kernels::PrefillAttentionParams pp{q_.get(), kc, vc, in_.block_tables, in_.context_lens, in_.query_start, in_.tile_seq,
                                         in_.tile_row0, attn_.get(), NT, cfg_.num_heads, cfg_.num_kv_heads, bs_, blocks_cap_, Q, Q,
                                         scale};
      kernels::launch_prefill_attention(pp, D, stream_);
    }
    profiler_.mark("o projection", stream_);
    linear(cublas_, attn_.get(), T, L.o.w, proj(), proj_f32_);
    reduce_add_norm(T, L.mlp_norm.get());
    if (gate_up_fused(T, L.gate_up.w, h_.get())) {
      profiler_.mark("gate/up projection + silu", stream_);
      linear_silu_mul(cublas_, h_.get(), T, L.gate_up.w, act_.get());
    } else {
      profiler_.mark("gate/up projection", stream_);
      linear(cublas_, h_.get(), T, L.gate_up.w, gu_.get(), false);
      profiler_.mark("silu and mul", stream_);
      kernels::launch_silu_and_mul(gu_.get(), act_.get(), T, I, stream_);
    }
    profiler_.mark("down projection", stream_);
    linear(cublas_, act_.get(), T, L.down.w, proj(), proj_f32_);
  }
  all_reduce_projection(T);  // the last down projection: its norm reads only the sampled rows
  if (shard_.vocab == 0) return;  // the LM head is rank 0's alone
  profiler_.mark("residual add + norm", stream_);
  add_norm(false, final_norm_.get(), hl_.get(), in_.logit_rows, R);
  profiler_.mark("lm head", stream_);
  // This rank's columns of rank 0's logits [R, V] (all of them without vocabulary parallelism).
  linear(cublas_, hl_.get(), R, lm_head_.w, logits_target_ + shard_.vocab0, true, cfg_.vocab_size);
  // Rank 0 samples after the step: every slice must have landed.
  if (shard_.vocab < cfg_.vocab_size) {
    profiler_.mark("lm head barrier", stream_);
    peer_->barrier(stream_);
  }
}

// Sums the row-parallel projection of every rank, in place (its own type), on this rank's stream: in one
// peer-to-peer kernel when it is small enough (decode steps), else through NCCL. Every rank takes the
// same path for the same T.
void CudaRank::all_reduce_projection(int T) {
  if (comm_ == nullptr) return;
  profiler_.mark("all-reduce", stream_);
  const int64_t n = static_cast<int64_t>(T) * cfg_.hidden_size;
  if (peer_ && peer_->fits(n * (proj_f32_ ? 4 : 2))) peer_->run(proj(), n, !proj_f32_, stream_);
  else nccl_all_reduce(n);
}

// After a row-parallel projection: sum it across ranks, add it to the residual stream and normalise
// into h_ — in one kernel when the one-shot all-reduce takes the tensor (bf16 projections; PAGODA_TP_FUSE_NORM=0
// turns the fusion off, for comparisons), else the all-reduce and then add_norm.
void CudaRank::reduce_add_norm(int T, const bf16* weight) {
  const int H = cfg_.hidden_size;
  if (fuse_norm_ && comm_ != nullptr && peer_ && !proj_f32_ && peer_->fits(static_cast<int64_t>(T) * H * 2)) {
    profiler_.mark("all-reduce + add + norm", stream_);
    peer_->run_add_norm(proj_bf16_.get(), T, H, residual_.get(), weight, h_.get(), static_cast<float>(cfg_.rms_norm_eps), stream_);
    return;
  }
  all_reduce_projection(T);
  profiler_.mark("residual add + norm", stream_);
  add_norm(false, weight, h_.get(), nullptr, T);
}

// The first n elements of the projection buffer.
void CudaRank::nccl_all_reduce(int64_t n) {
  check_nccl(ncclAllReduce(proj(), proj(), static_cast<size_t>(n), proj_f32_ ? ncclFloat32 : ncclBfloat16, ncclSum, comm_, stream_),
             "ncclAllReduce");
}

void* CudaRank::proj() const { return proj_f32_ ? static_cast<void*>(proj_.get()) : static_cast<void*>(proj_bf16_.get()); }

// residual += projection (unless first), then RMSNorm into `out`.
void CudaRank::add_norm(bool first, const bf16* weight, bf16* out, const int32_t* rows, int n) {
  const int H = cfg_.hidden_size;
  const float eps = static_cast<float>(cfg_.rms_norm_eps);
  if (first || proj_f32_) {
    kernels::launch_add_rmsnorm<float>(residual_.get(), first ? nullptr : proj_.get(), weight, out, rows, n, H, eps, stream_,
                                     overlap_launches());
  } else {
    kernels::launch_add_rmsnorm<bf16>(residual_.get(), proj_bf16_.get(), weight, out, rows, n, H, eps, stream_, overlap_launches());
  }
}


namespace {

std::vector<kernels::PenaltyEntry> penalty_entries(const StepInput& in) {
  std::vector<kernels::PenaltyEntry> out;
  const SamplingInputs& s = in.sampling;
  const bool any_bias = !s.bias_offsets.empty();
  for (int r = 0; r < in.num_rows(); r++) {
    const bool rep = s.repetition_penalty[r] != 1.0f;
    const bool freq = s.frequency_penalty[r] != 0.0f || s.presence_penalty[r] != 0.0f;
    const bool bias = any_bias && s.bias_offsets[r + 1] > s.bias_offsets[r];
    if (!rep && !freq && !bias) continue;
    std::unordered_map<int32_t, kernels::PenaltyEntry> m;  // one entry per token of the row
    const auto at = [&](int32_t tok) -> kernels::PenaltyEntry& {
      auto [it, fresh] = m.try_emplace(tok);
      if (fresh) it->second = {r, tok, 0, 0};
      return it->second;
    };
    if (freq)
      for (int i = s.output_offsets[r]; i < s.output_offsets[r + 1]; i++) at(s.output_tokens[i]).output_count++;
    if (rep)
      for (int i = s.context_offsets[r]; i < s.context_offsets[r + 1]; i++) at(s.context_tokens[i]).in_context = 1;
    if (bias)
      for (int i = s.bias_offsets[r]; i < s.bias_offsets[r + 1]; i++) at(s.bias_tokens[i]).bias += s.bias_values[i];
    for (auto& [tok, e] : m) out.push_back(e);
  }
  return out;
}

}  // namespace

void CudaRank::sample(const StepInput& in, StepOutput& out, int R) {
  const int V = cfg_.vocab_size, K = in.num_top_logprobs;
  int32_t* out_tokens = out_dev_.get();
  float* out_lp = reinterpret_cast<float*>(out_dev_.get() + R);
  int32_t* out_top_ids = out_dev_.get() + 2 * R;
  float* out_top_lp = reinterpret_cast<float*>(out_dev_.get() + 2 * R + static_cast<int64_t>(R) * K);
  profiler_.mark("sampling", stream_);
  if (in.sample && R > 0) {
    const SamplingInputs& s = in.sampling;
    float* hf = s_host_f_.get();
    int32_t* hi = s_host_i_.get();
    std::copy(s.temperature.begin(), s.temperature.end(), hf);
    std::copy(s.top_p.begin(), s.top_p.end(), hf + R);
    std::copy(s.min_p.begin(), s.min_p.end(), hf + 2 * R);
    std::copy(s.repetition_penalty.begin(), s.repetition_penalty.end(), hf + 3 * R);
    std::copy(s.frequency_penalty.begin(), s.frequency_penalty.end(), hf + 4 * R);
    std::copy(s.presence_penalty.begin(), s.presence_penalty.end(), hf + 5 * R);
    std::copy(s.top_k.begin(), s.top_k.end(), hi);
    std::copy(s.step.begin(), s.step.end(), hi + R);
    std::memcpy(hi + 2 * R, s.seed.data(), static_cast<size_t>(R) * 8);
    // The fixed layout is [6][R_max] floats and [4][R_max] ints on the device: copy each section.
    float* df = s_float_.get();
    int32_t* di = s_int_.get();
    for (int k = 0; k < 6; k++)
      check(cudaMemcpyAsync(df + static_cast<int64_t>(k) * max_seqs_, hf + static_cast<int64_t>(k) * R, R * 4,
                            cudaMemcpyHostToDevice, stream_),
            "cudaMemcpyAsync(sampling)");
    check(cudaMemcpyAsync(di, hi, R * 4, cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync(sampling)");
    check(cudaMemcpyAsync(di + max_seqs_, hi + R, R * 4, cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync(sampling)");
    check(cudaMemcpyAsync(di + 2 * max_seqs_, hi + 2 * R, R * 8, cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync(sampling)");
    const float* work = logits_.get();
    std::vector<kernels::PenaltyEntry> pen = penalty_entries(in);
    if (!pen.empty()) {
      if (logits_work_.size() == 0) logits_work_ = DeviceArray<float>(static_cast<int64_t>(max_seqs_) * V);
      if (penalties_.size() < pen.size()) penalties_ = DeviceArray<kernels::PenaltyEntry>(pen.size() * 2);
      check(cudaMemcpyAsync(logits_work_.get(), logits_.get(), static_cast<size_t>(R) * V * 4, cudaMemcpyDeviceToDevice, stream_),
            "cudaMemcpyAsync(logits)");
      check(cudaMemcpyAsync(penalties_.get(), pen.data(), pen.size() * sizeof(pen[0]), cudaMemcpyHostToDevice, stream_),
            "cudaMemcpyAsync(penalties)");
      kernels::launch_apply_penalties(logits_work_.get(), penalties_.get(), df + 3 * max_seqs_, df + 4 * max_seqs_,
                                      df + 5 * max_seqs_, static_cast<int>(pen.size()), V, stream_);
      work = logits_work_.get();
    }
    kernels::SamplingParams sp{work, logits_.get(), df, df + max_seqs_, di, df + 2 * max_seqs_,
                               reinterpret_cast<const uint32_t*>(di + 2 * max_seqs_), di + max_seqs_, out_tokens, out_lp, R, V,
                               sample_partials_.get(), sample_arrivals_.get()};
    kernels::launch_sample(sp, kernels::sample_splits(R, num_sms_), stream_);
    kernels::launch_top_logprobs(logits_.get(), out_top_ids, out_top_lp, R, V, K, stream_);
    const size_t n = static_cast<size_t>(2 * R + 2 * static_cast<int64_t>(R) * K);
    check(cudaMemcpyAsync(out_host_.get(), out_dev_.get(), n * 4, cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync(outputs)");
  }
  if (in.return_logits) {
    out.logits.resize(static_cast<size_t>(R) * V);
    check(cudaMemcpyAsync(out.logits.data(), logits_.get(), out.logits.size() * 4, cudaMemcpyDeviceToHost, stream_),
          "cudaMemcpyAsync(logits)");
  }
  check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize(step)");
  profiler_.end_step(stream_);
  if (in.sample) {
    const int32_t* h = out_host_.get();
    out.tokens.assign(h, h + R);
    out.logprobs.resize(R);
    std::memcpy(out.logprobs.data(), h + R, static_cast<size_t>(R) * 4);
    out.top_ids.assign(h + 2 * R, h + 2 * R + static_cast<int64_t>(R) * K);
    out.top_logprobs.resize(static_cast<size_t>(R) * K);
    std::memcpy(out.top_logprobs.data(), h + 2 * R + static_cast<int64_t>(R) * K, static_cast<size_t>(R) * K * 4);
  }
}


// ---- CUDA graphs for decode ---------------------------------------------------------------------

void CudaRank::capture_graphs() {
  if (profiler_.enabled()) return;  // profiled steps run eagerly
  for (int b : kGraphBuckets) {
    if (b > max_seqs_ || b > max_tokens_) break;
    // A valid idle state: every entry is padding (no context, no KV store).
    put(0, b, [](int64_t) { return 0; });
    put(1, b, [](int64_t) { return 0; });
    put(2, b, [](int64_t) { return -1; });
    put(3, b + 1, [](int64_t i) { return static_cast<int32_t>(i); });
    put(4, b, [](int64_t) { return 0; });
    put(6, b, [](int64_t i) { return static_cast<int32_t>(i); });
    for (int f : {0, 1, 2, 4, 6}) copy_field(f, b);
    copy_field(3, b + 1);
    // Splits depend on the bucket only (the graph serves every context length): whole waves of CTAs.
    int splits = kernels::decode_splits(b, cfg_.num_heads, decode_heads_per_cta_, 0, num_sms_, resident_ctas_, kMaxSplits);
    splits = std::min(splits, max_splits_for(b));
    forward(b, b, true, 0, b, splits);  // warm-up outside capture (cuBLAS picks its kernels)
    check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize(warm-up)");
    cudaGraph_t graph;
    check(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    forward(b, b, true, 0, b, splits);
    check(cudaStreamEndCapture(stream_, &graph), "cudaStreamEndCapture");
    cudaGraphExec_t exec;
    check(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
    cudaGraphDestroy(graph);
    graphs_[b] = exec;
  }
  check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize(capture)");
}


}  // namespace pagoda::cuda
