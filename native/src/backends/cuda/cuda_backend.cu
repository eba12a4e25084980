#include "backends/cuda/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <unordered_map>
#include <vector>

#include "activation.cuh"
#include "backends/cuda/device_memory.h"
#include "backends/cuda/linear.h"
#include "decode_attention.cuh"
#include "engine/errors.h"
#include "engine/half.h"
#include "norm.cuh"
#include "prefill_attention.cuh"
#include "qkv_rope.cuh"
#include "sampling.cuh"

namespace pagoda::cuda {
namespace {

using kernels::bf16;
constexpr int kMaxSplits = 64;
constexpr int kMaxTopLogprobs = 20;
constexpr size_t kCublasWorkspace = 32u << 20;
constexpr int64_t kPartialBytes = 64LL << 20;
const int kGraphBuckets[] = {1, 2, 4, 8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512};

DeviceArray<bf16> upload_bf16(const std::vector<float>& host) {
  std::vector<uint16_t> tmp(host.size());
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < static_cast<int64_t>(host.size()); i++) tmp[i] = float_to_bf16(host[i]);
  DeviceArray<bf16> d(host.size());
  check(cudaMemcpy(d.get(), tmp.data(), tmp.size() * 2, cudaMemcpyHostToDevice), "cudaMemcpy(weights)");
  return d;
}

std::vector<float> concat(std::initializer_list<const std::vector<float>*> parts) {
  std::vector<float> out;
  for (const auto* p : parts) out.insert(out.end(), p->begin(), p->end());
  return out;
}

struct Matrix {
  DeviceArray<bf16> data;
  Weight w;
  void set(std::vector<float> host, int n, int k) {
    data = upload_bf16(host);
    w = {data.get(), n, k};
  }
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

class CudaBackend final : public Backend {
 public:
  CudaBackend(const ModelConfig& cfg, const WeightStore& w, const EngineOptions& opt) : cfg_(cfg), opt_(opt) {
    cfg_.validate();
    if (cfg.head_dim != 64 && cfg.head_dim != 128)
      throw EngineError("CUDA backend: unsupported head_dim " + std::to_string(cfg.head_dim) + " (supported: 64, 128)");
    if (opt.tensor_parallel_size != 1)
      throw EngineError("CUDA backend: this build runs tensor parallelism 1 only");
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) throw EngineError("--device cuda: no CUDA GPU is visible");
    check(cudaSetDevice(0), "cudaSetDevice");
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
    if (prop.major != 9)
      throw EngineError(std::string("CUDA backend: this build targets compute capability 9.0 (Hopper); the GPU is ") + prop.name +
                        " (" + std::to_string(prop.major) + "." + std::to_string(prop.minor) + ")");
    device_name_ = prop.name;
    num_sms_ = prop.multiProcessorCount;
    resident_ctas_ = kernels::decode_resident_ctas(cfg.head_dim, cfg.num_heads / cfg.num_kv_heads);
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    check_cublas(cublasCreate(&cublas_), "cublasCreate");
    check_cublas(cublasSetStream(cublas_, stream_), "cublasSetStream");
    cublas_ws_ = DeviceArray<uint8_t>(kCublasWorkspace);
    check_cublas(cublasSetWorkspace(cublas_, cublas_ws_.get(), kCublasWorkspace), "cublasSetWorkspace");
    check_cublas(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");

    load_weights(w);
    size_workspace();
    size_kv_cache();
    if (opt_.enable_cuda_graphs) capture_graphs();
  }

  ~CudaBackend() override {
    for (auto& [b, g] : graphs_) cudaGraphExecDestroy(g);
    if (cublas_) cublasDestroy(cublas_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  BackendInfo info() const override {
    BackendInfo i;
    i.device = "cuda (" + device_name_ + ", " + std::to_string(graphs_.size()) + " decode graphs)";
    i.num_blocks = num_blocks_;
    i.block_size = bs_;
    i.kv_cache_bytes = kv_.bytes();
    i.weight_bytes = weight_bytes_;
    i.weight_dtype = "bf16";
    return i;
  }

  void step(const StepInput& in, StepOutput& out) override {
    validate_step(in, cfg_.vocab_size, num_blocks_, bs_);
    const int S = in.num_seqs(), T = in.num_tokens(), R = in.num_rows();
    if (T > max_tokens_) throw EngineError("step: " + std::to_string(T) + " tokens exceed the workspace of " + std::to_string(max_tokens_));
    if (S > max_seqs_ || R > max_seqs_) throw EngineError("step: " + std::to_string(S) + " sequences exceed --max-num-seqs");
    if (in.max_blocks_per_seq > blocks_cap_)
      throw EngineError("step: block table of " + std::to_string(in.max_blocks_per_seq) + " blocks exceeds max model length");

    // Decode entries (one query token) and prefill tiles (64 query rows) of this step.
    entries_seq_.clear();
    entries_row_.clear();
    tiles_seq_.clear();
    tiles_row0_.clear();
    int max_ctx = 0;
    for (int s = 0; s < S; s++) {
      const int q0 = in.query_start[s], qlen = in.query_start[s + 1] - q0;
      if (qlen == 1) {
        entries_seq_.push_back(s);
        entries_row_.push_back(q0);
        max_ctx = std::max(max_ctx, in.context_lens[s]);
      } else {
        for (int r = 0; r < qlen; r += kernels::kPrefillRows) {
          tiles_seq_.push_back(s);
          tiles_row0_.push_back(r);
        }
      }
    }
    bool identity_rows = R == S;
    for (int r = 0; identity_rows && r < R; r++) identity_rows = in.logit_rows[r] == r;
    const bool pure_decode = static_cast<int>(entries_seq_.size()) == S && T == S && identity_rows;
    int bucket = 0;
    if (pure_decode && !graphs_.empty()) {
      for (auto& [b, g] : graphs_)
        if (b >= S) {
          bucket = b;
          break;
        }
    }

    if (bucket > 0) {
      upload_inputs(in, bucket);
      check(cudaGraphLaunch(graphs_.at(bucket), stream_), "cudaGraphLaunch");
    } else {
      upload_inputs(in, 0);
      const int E = static_cast<int>(entries_seq_.size());
      const int gc = kernels::decode_heads_per_cta(cfg_.num_heads / cfg_.num_kv_heads);
      int splits = kernels::decode_splits(E, cfg_.num_heads, gc, max_ctx, num_sms_, resident_ctas_, kMaxSplits);
      splits = std::min(splits, max_splits_for(E));
      forward(T, E, /*identity_entries=*/false, static_cast<int>(tiles_seq_.size()), R, splits);
    }
    sample(in, out, R);
  }

 private:
  // ---- loading ----------------------------------------------------------------------------------

  void load_weights(const WeightStore& w) {
    const int H = cfg_.hidden_size, I = cfg_.intermediate_size, Q = cfg_.q_size(), KV = cfg_.kv_size();
    embed_ = upload_bf16(w.read_f32("embed.weight", {cfg_.vocab_size, H}));
    weight_bytes_ += embed_.bytes();
    if (!cfg_.tie_word_embeddings && w.has("lm_head.weight")) {
      lm_head_.set(w.read_f32("lm_head.weight", {cfg_.vocab_size, H}), cfg_.vocab_size, H);
      weight_bytes_ += lm_head_.data.bytes();
    } else {
      lm_head_.w = {embed_.get(), cfg_.vocab_size, H};
    }
    final_norm_ = upload_bf16(w.read_f32("norm.weight", {H}));
    std::vector<float> inv = rope_inv_freq(cfg_);
    inv_freq_ = DeviceArray<float>(inv.size());
    check(cudaMemcpy(inv_freq_.get(), inv.data(), inv.size() * 4, cudaMemcpyHostToDevice), "cudaMemcpy(inv_freq)");
    layers_.resize(cfg_.num_layers);
    for (int l = 0; l < cfg_.num_layers; l++) {
      const std::string p = "layers." + std::to_string(l) + ".";
      Layer& L = layers_[l];
      L.attn_norm = upload_bf16(w.read_f32(p + "attn_norm.weight", {H}));
      L.mlp_norm = upload_bf16(w.read_f32(p + "mlp_norm.weight", {H}));
      auto q = w.read_f32(p + "attn.q.weight", {Q, H});
      auto k = w.read_f32(p + "attn.k.weight", {KV, H});
      auto v = w.read_f32(p + "attn.v.weight", {KV, H});
      L.qkv.set(concat({&q, &k, &v}), Q + 2 * KV, H);
      if (cfg_.attention_bias) {
        auto qb = w.read_f32(p + "attn.q.bias", {Q});
        auto kb = w.read_f32(p + "attn.k.bias", {KV});
        auto vb = w.read_f32(p + "attn.v.bias", {KV});
        L.qkv_bias = upload_bf16(concat({&qb, &kb, &vb}));
      }
      if (cfg_.qk_norm) {
        L.q_norm = upload_bf16(w.read_f32(p + "attn.q_norm.weight", {cfg_.head_dim}));
        L.k_norm = upload_bf16(w.read_f32(p + "attn.k_norm.weight", {cfg_.head_dim}));
      }
      L.o.set(w.read_f32(p + "attn.o.weight", {H, Q}), H, Q);
      auto gate = w.read_f32(p + "mlp.gate.weight", {I, H});
      auto up = w.read_f32(p + "mlp.up.weight", {I, H});
      L.gate_up.set(concat({&gate, &up}), 2 * I, H);
      L.down.set(w.read_f32(p + "mlp.down.weight", {H, I}), H, I);
      weight_bytes_ += L.qkv.data.bytes() + L.o.data.bytes() + L.gate_up.data.bytes() + L.down.data.bytes();
    }
  }

  int max_splits_for(int entries) const {
    if (entries == 0) return 1;
    const int64_t per_split = static_cast<int64_t>(entries) * cfg_.num_heads * cfg_.head_dim * 4;
    return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(kMaxSplits, partial_acc_.bytes() / per_split)));
  }

  void size_workspace() {
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
    const char* pd = std::getenv("PAGODA_PROJ_DTYPE");
    proj_f32_ = pd != nullptr && std::string(pd) == "f32";
    if (proj_f32_) proj_ = DeviceArray<float>(T * H);
    else proj_bf16_ = DeviceArray<bf16>(T * H);
    h_ = DeviceArray<bf16>(T * H);
    qkv_ = DeviceArray<bf16>(T * (Q + 2 * KV));
    q_ = DeviceArray<bf16>(T * Q);
    attn_ = DeviceArray<bf16>(T * Q);
    gu_ = DeviceArray<bf16>(T * 2 * I);
    act_ = DeviceArray<bf16>(T * I);
    hl_ = DeviceArray<bf16>(static_cast<int64_t>(max_seqs_) * H);
    logits_ = DeviceArray<float>(static_cast<int64_t>(max_seqs_) * cfg_.vocab_size);
    partial_acc_ = DeviceArray<float>(kPartialBytes / 4);
    partial_ml_ = DeviceArray<float>(kPartialBytes / 4 / cfg_.head_dim * 2);
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
    // Sampling inputs and outputs.
    const int R = max_seqs_;
    s_float_ = DeviceArray<float>(6 * static_cast<int64_t>(R));
    s_int_ = DeviceArray<int32_t>(4 * static_cast<int64_t>(R));
    s_host_f_ = PinnedArray<float>(6 * static_cast<int64_t>(R));
    s_host_i_ = PinnedArray<int32_t>(4 * static_cast<int64_t>(R));
    out_dev_ = DeviceArray<int32_t>(2 * static_cast<int64_t>(R) * (1 + kMaxTopLogprobs));
    out_host_ = PinnedArray<int32_t>(2 * static_cast<int64_t>(R) * (1 + kMaxTopLogprobs));
  }

  void size_kv_cache() {
    const int64_t per_block = 2LL * cfg_.num_layers * cfg_.num_kv_heads * bs_ * cfg_.head_dim * 2;
    int64_t blocks = opt_.num_blocks;
    if (blocks <= 0) {
      size_t free_b = 0, total_b = 0;
      check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
      const double util = opt_.gpu_memory_utilization > 0 ? opt_.gpu_memory_utilization : 0.9;
      // Everything already in use (weights, workspace, other processes) counts against the share;
      // keep room for graphs, cuBLAS and the logits copy used with penalties.
      const int64_t reserve = (512LL << 20) + static_cast<int64_t>(max_seqs_) * cfg_.vocab_size * 4;
      const int64_t budget = static_cast<int64_t>(util * static_cast<double>(total_b)) - static_cast<int64_t>(total_b - free_b) - reserve;
      blocks = budget / per_block;
      if (blocks < 1)
        throw EngineError("--gpu-memory-utilization " + std::to_string(util) + " leaves no room for the KV cache after " +
                          std::to_string((total_b - free_b) >> 20) + " MiB in use: raise it or use a smaller model");
    }
    num_blocks_ = static_cast<int>(std::min<int64_t>(blocks, 1 << 30));
    layer_elems_ = static_cast<int64_t>(num_blocks_) * cfg_.num_kv_heads * bs_ * cfg_.head_dim;
    kv_ = DeviceArray<bf16>(2 * layer_elems_ * cfg_.num_layers);
  }

  // ---- one step ---------------------------------------------------------------------------------

  template <typename F>
  void put(int field, int64_t n, F value_at) {
    int32_t* h = in_host_.get() + offsets_[field];
    for (int64_t i = 0; i < n; i++) h[i] = value_at(i);
  }

  void copy_field(int field, int64_t n) {
    if (n == 0) return;
    check(cudaMemcpyAsync(in_dev_.get() + offsets_[field], in_host_.get() + offsets_[field], n * 4, cudaMemcpyHostToDevice, stream_),
          "cudaMemcpyAsync(inputs)");
  }

  // bucket > 0: a graph replay of `bucket` decode entries; the rows past the batch are padding.
  void upload_inputs(const StepInput& in, int bucket) {
    const int S = in.num_seqs(), T = in.num_tokens(), R = in.num_rows();
    const int n_tok = bucket > 0 ? bucket : T, n_seq = bucket > 0 ? bucket : S;
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
      const int E = static_cast<int>(entries_seq_.size()), NT = static_cast<int>(tiles_seq_.size());
      put(7, E, [&](int64_t i) { return entries_seq_[i]; });
      put(8, E, [&](int64_t i) { return entries_row_[i]; });
      put(9, NT, [&](int64_t i) { return tiles_seq_[i]; });
      put(10, NT, [&](int64_t i) { return tiles_row0_[i]; });
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
  void forward(int T, int E, bool identity_entries, int NT, int R, int splits) {
    const int H = cfg_.hidden_size, I = cfg_.intermediate_size, Q = cfg_.q_size(), KV = cfg_.kv_size(), D = cfg_.head_dim;
    const float eps = static_cast<float>(cfg_.rms_norm_eps), scale = 1.0f / std::sqrt(static_cast<float>(D));
    kernels::launch_embed(in_.tokens, embed_.get(), residual_.get(), T, H, stream_);
    for (int l = 0; l < cfg_.num_layers; l++) {
      const Layer& L = layers_[l];
      bf16* kc = kv_.get() + 2 * l * layer_elems_;
      bf16* vc = kc + layer_elems_;
      add_norm(l == 0, L.attn_norm.get(), h_.get(), nullptr, T);
      linear(cublas_, h_.get(), T, L.qkv.w, qkv_.get(), false);
      kernels::QkvRopeParams rp{qkv_.get(), L.qkv_bias.get(), L.q_norm.get(), L.k_norm.get(), inv_freq_.get(), in_.positions,
                                in_.slots, q_.get(), kc, vc, T, cfg_.num_heads, cfg_.num_kv_heads, bs_, Q + 2 * KV, eps};
      kernels::launch_qkv_rope(rp, D, stream_);
      if (E > 0) {
        kernels::DecodeAttentionParams dp{q_.get(), kc, vc, in_.block_tables, in_.context_lens,
                                          identity_entries ? nullptr : in_.entry_seq, identity_entries ? nullptr : in_.entry_row,
                                          attn_.get(), partial_acc_.get(), partial_ml_.get(), E, cfg_.num_heads, cfg_.num_kv_heads,
                                          bs_, blocks_cap_, splits, Q, Q, scale};
        kernels::launch_decode_attention(dp, D, stream_);
      }
      if (NT > 0) {
        kernels::PrefillAttentionParams pp{q_.get(), kc, vc, in_.block_tables, in_.context_lens, in_.query_start, in_.tile_seq,
                                           in_.tile_row0, attn_.get(), NT, cfg_.num_heads, cfg_.num_kv_heads, bs_, blocks_cap_, Q, Q,
                                           scale};
        kernels::launch_prefill_attention(pp, D, stream_);
      }
      linear(cublas_, attn_.get(), T, L.o.w, proj(), proj_f32_);
      add_norm(false, L.mlp_norm.get(), h_.get(), nullptr, T);
      linear(cublas_, h_.get(), T, L.gate_up.w, gu_.get(), false);
      kernels::launch_silu_and_mul(gu_.get(), act_.get(), T, I, stream_);
      linear(cublas_, act_.get(), T, L.down.w, proj(), proj_f32_);
    }
    add_norm(false, final_norm_.get(), hl_.get(), in_.logit_rows, R);
    linear(cublas_, hl_.get(), R, lm_head_.w, logits_.get(), true);
  }

  // The o / down projections' output: float32 or (default) bf16, PAGODA_PROJ_DTYPE=f32|bf16.
  void* proj() const { return proj_f32_ ? static_cast<void*>(proj_.get()) : static_cast<void*>(proj_bf16_.get()); }

  // residual += projection (unless first), then RMSNorm into `out`.
  void add_norm(bool first, const bf16* weight, bf16* out, const int32_t* rows, int n) {
    const int H = cfg_.hidden_size;
    const float eps = static_cast<float>(cfg_.rms_norm_eps);
    if (first || proj_f32_) {
      kernels::launch_add_rmsnorm<float>(residual_.get(), first ? nullptr : proj_.get(), weight, out, rows, n, H, eps, stream_);
    } else {
      kernels::launch_add_rmsnorm<bf16>(residual_.get(), proj_bf16_.get(), weight, out, rows, n, H, eps, stream_);
    }
  }

  void sample(const StepInput& in, StepOutput& out, int R) {
    const int V = cfg_.vocab_size, K = in.num_top_logprobs;
    int32_t* out_tokens = out_dev_.get();
    float* out_lp = reinterpret_cast<float*>(out_dev_.get() + R);
    int32_t* out_top_ids = out_dev_.get() + 2 * R;
    float* out_top_lp = reinterpret_cast<float*>(out_dev_.get() + 2 * R + static_cast<int64_t>(R) * K);
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
                                 reinterpret_cast<const uint32_t*>(di + 2 * max_seqs_), di + max_seqs_, out_tokens, out_lp, R, V};
      kernels::launch_sample(sp, stream_);
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

  static std::vector<kernels::PenaltyEntry> penalty_entries(const StepInput& in) {
    std::vector<kernels::PenaltyEntry> out;
    const SamplingInputs& s = in.sampling;
    for (int r = 0; r < in.num_rows(); r++) {
      const bool rep = s.repetition_penalty[r] != 1.0f;
      const bool freq = s.frequency_penalty[r] != 0.0f || s.presence_penalty[r] != 0.0f;
      if (!rep && !freq) continue;
      std::unordered_map<int32_t, std::pair<int32_t, int32_t>> m;  // token → (output count, in context)
      if (freq)
        for (int i = s.output_offsets[r]; i < s.output_offsets[r + 1]; i++) m[s.output_tokens[i]].first++;
      if (rep)
        for (int i = s.context_offsets[r]; i < s.context_offsets[r + 1]; i++) m[s.context_tokens[i]].second = 1;
      for (auto& [tok, v] : m) out.push_back({r, tok, v.first, v.second});
    }
    return out;
  }

  // ---- CUDA graphs for decode -------------------------------------------------------------------

  void capture_graphs() {
    const int gc = kernels::decode_heads_per_cta(cfg_.num_heads / cfg_.num_kv_heads);
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
      int splits = kernels::decode_splits(b, cfg_.num_heads, gc, 0, num_sms_, resident_ctas_, kMaxSplits);
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

  ModelConfig cfg_;
  EngineOptions opt_;
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

  DeviceArray<float> residual_, proj_, logits_, logits_work_, partial_acc_, partial_ml_;
  DeviceArray<bf16> h_, qkv_, q_, attn_, gu_, act_, hl_, proj_bf16_;
  bool proj_f32_ = false;
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
  DeviceArray<kernels::PenaltyEntry> penalties_;
  std::vector<int32_t> entries_seq_, entries_row_, tiles_seq_, tiles_row0_;
  std::map<int, cudaGraphExec_t> graphs_;
};

}  // namespace

std::unique_ptr<Backend> create_cuda_backend(const ModelConfig& cfg, const WeightStore& weights, const EngineOptions& opt) {
  return std::make_unique<CudaBackend>(cfg, weights, opt);
}

}  // namespace pagoda::cuda
