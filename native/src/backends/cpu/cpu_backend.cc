#include "backends/cpu/cpu_backend.h"

#include <omp.h>
#include <unistd.h>

#include <cmath>
#include <cstring>

#include "backends/cpu/attention.h"
#include "backends/cpu/matmul.h"
#include "backends/cpu/ops.h"
#include "backends/cpu/threads.h"
#include "engine/errors.h"
#include "engine/sampler.h"

namespace pagoda::cpu {

namespace {
int g_threads = 1;
}
int worker_threads() { return g_threads; }
void set_worker_threads(int n) { g_threads = n > 0 ? n : 1; }

namespace {

struct Layer {
  std::vector<float> attn_norm, mlp_norm, q_norm, k_norm;
  PackedMatrix qkv, o, gate_up, down;
};

DType storage_for(const TensorEntry& e, const std::string& requested) {
  if (requested == "f32") return DType::F32;
  if (requested == "f16") return DType::F16;
  if (requested == "bf16") return DType::BF16;
  if (requested != "auto") throw EngineError("weight dtype must be auto, f32, f16 or bf16, got " + requested);
  // auto: keep the file's precision; quantized tensors dequantize to f16 (closer than bf16 to the
  // dequantized values and half the bytes of f32).
  if (e.dtype == DType::F32) return DType::F32;
  if (e.dtype == DType::BF16) return DType::BF16;
  return DType::F16;
}

std::string simd_name() {
#if defined(__AVX512F__)
  return "avx512";
#elif defined(__AVX2__)
  return "avx2";
#else
  return "scalar";
#endif
}

class CpuBackend final : public Backend {
 public:
  CpuBackend(const ModelConfig& cfg, const WeightStore& w, const EngineOptions& opt) : cfg_(cfg) {
    cfg_.validate();
    if (cfg.head_dim > 1024) throw EngineError("CPU backend: head_dim above 1024 is not supported");
    int threads = opt.threads > 0 ? opt.threads : static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
    set_worker_threads(threads);
    const int32_t H = cfg.hidden_size, I = cfg.intermediate_size, Q = cfg.q_size(), KV = cfg.kv_size();
    const std::string& req = opt.weight_dtype;
    dtype_ = storage_for(w.entry("embed.weight"), req);
    embed_dtype_ = dtype_;
    {
      std::vector<float> e = w.read_f32("embed.weight", {cfg.vocab_size, H});
      embed_ = std::move(e);
      if (cfg.tie_word_embeddings || !w.has("lm_head.weight")) {
        lm_head_ = PackedMatrix(embed_.data(), cfg.vocab_size, H, dtype_);
      }
    }
    if (!cfg.tie_word_embeddings && w.has("lm_head.weight")) {
      auto lm = w.read_f32("lm_head.weight", {cfg.vocab_size, H});
      lm_head_ = PackedMatrix(lm.data(), cfg.vocab_size, H, storage_for(w.entry("lm_head.weight"), req));
    }
    final_norm_ = w.read_f32("norm.weight", {H});
    layers_.resize(cfg.num_layers);
    for (int32_t l = 0; l < cfg.num_layers; l++) {
      const std::string p = "layers." + std::to_string(l) + ".";
      Layer& L = layers_[l];
      L.attn_norm = w.read_f32(p + "attn_norm.weight", {H});
      L.mlp_norm = w.read_f32(p + "mlp_norm.weight", {H});
      auto q = w.read_f32(p + "attn.q.weight", {Q, H});
      auto k = w.read_f32(p + "attn.k.weight", {KV, H});
      auto v = w.read_f32(p + "attn.v.weight", {KV, H});
      L.qkv = PackedMatrix::stack({&q, &k, &v}, H, storage_for(w.entry(p + "attn.q.weight"), req));
      if (cfg.attention_bias) {
        auto qb = w.read_f32(p + "attn.q.bias", {Q});
        auto kb = w.read_f32(p + "attn.k.bias", {KV});
        auto vb = w.read_f32(p + "attn.v.bias", {KV});
        L.qkv.bias = qb;
        L.qkv.bias.insert(L.qkv.bias.end(), kb.begin(), kb.end());
        L.qkv.bias.insert(L.qkv.bias.end(), vb.begin(), vb.end());
      }
      if (cfg.qk_norm) {
        L.q_norm = w.read_f32(p + "attn.q_norm.weight", {cfg.head_dim});
        L.k_norm = w.read_f32(p + "attn.k_norm.weight", {cfg.head_dim});
      }
      auto o = w.read_f32(p + "attn.o.weight", {H, Q});
      L.o = PackedMatrix(o.data(), H, Q, storage_for(w.entry(p + "attn.o.weight"), req));
      auto gate = w.read_f32(p + "mlp.gate.weight", {I, H});
      auto up = w.read_f32(p + "mlp.up.weight", {I, H});
      L.gate_up = PackedMatrix::stack({&gate, &up}, H, storage_for(w.entry(p + "mlp.gate.weight"), req));
      auto down = w.read_f32(p + "mlp.down.weight", {H, I});
      L.down = PackedMatrix(down.data(), H, I, storage_for(w.entry(p + "mlp.down.weight"), req));
      weight_bytes_ += L.qkv.bytes() + L.o.bytes() + L.gate_up.bytes() + L.down.bytes();
    }
    weight_bytes_ += lm_head_.bytes() + static_cast<int64_t>(embed_.size()) * 4;
    inv_freq_ = rope_inv_freq(cfg_);

    block_size_ = opt.block_size;
    if (block_size_ <= 0 || block_size_ > 1024) throw EngineError("block size must be in 1..1024");
    const int64_t per_block = KvCache::bytes_per_block(cfg.num_layers, block_size_, cfg.num_kv_heads, cfg.head_dim);
    int32_t blocks = opt.num_blocks;
    if (blocks <= 0) {
      int64_t budget = opt.kv_cache_bytes > 0 ? opt.kv_cache_bytes : (1LL << 30);
      blocks = static_cast<int32_t>(budget / per_block);
    }
    if (blocks < 1) throw EngineError("KV cache budget is smaller than one block (" + std::to_string(per_block) + " bytes)");
    cache_ = std::make_unique<KvCache>(cfg.num_layers, blocks, block_size_, cfg.num_kv_heads, cfg.head_dim);
    kv_bytes_ = per_block * blocks;
  }

  BackendInfo info() const override {
    BackendInfo i;
    i.device = "cpu (" + std::to_string(worker_threads()) + " threads, " + simd_name() + ")";
    i.num_blocks = cache_->num_blocks();
    i.block_size = block_size_;
    i.kv_cache_bytes = kv_bytes_;
    i.weight_bytes = weight_bytes_;
    i.weight_dtype = dtype_name(dtype_);
    return i;
  }

  void step(const StepInput& in, StepOutput& out) override {
    validate_step(in, cfg_.vocab_size, cache_->num_blocks(), block_size_);
    const int32_t T = in.num_tokens(), R = in.num_rows();
    const int32_t H = cfg_.hidden_size, I = cfg_.intermediate_size, Q = cfg_.q_size(), KV = cfg_.kv_size();
    const int32_t QKV = Q + 2 * KV;
    x_.assign(static_cast<size_t>(T) * H, 0.0f);
    h_.resize(static_cast<size_t>(T) * H);
    qkv_.resize(static_cast<size_t>(T) * QKV);
    attn_.resize(static_cast<size_t>(T) * Q);
    proj_.resize(static_cast<size_t>(T) * H);
    gu_.resize(static_cast<size_t>(T) * 2 * I);
    act_.resize(static_cast<size_t>(T) * I);

    for (int32_t t = 0; t < T; t++)
      std::memcpy(x_.data() + static_cast<int64_t>(t) * H, embed_.data() + static_cast<int64_t>(in.token_ids[t]) * H,
                  sizeof(float) * H);
    const float eps = static_cast<float>(cfg_.rms_norm_eps);
    const float scale = 1.0f / std::sqrt(static_cast<float>(cfg_.head_dim));
    for (int32_t l = 0; l < cfg_.num_layers; l++) {
      const Layer& L = layers_[l];
      rms_norm(x_.data(), T, H, H, L.attn_norm.data(), eps, h_.data(), H);
      L.qkv.multiply(h_.data(), T, H, qkv_.data(), QKV);
      float* q = qkv_.data();
      float* k = q + Q;
      float* v = k + KV;
      if (cfg_.qk_norm) {
        head_rms_norm(q, T, QKV, cfg_.num_heads, cfg_.head_dim, L.q_norm.data(), eps);
        head_rms_norm(k, T, QKV, cfg_.num_kv_heads, cfg_.head_dim, L.k_norm.data(), eps);
      }
      rope(q, T, QKV, cfg_.num_heads, cfg_.head_dim, in.positions.data(), inv_freq_);
      rope(k, T, QKV, cfg_.num_kv_heads, cfg_.head_dim, in.positions.data(), inv_freq_);
      cache_->store(l, k, v, QKV, in.slot_mapping);
      paged_attention(*cache_, l, in, q, QKV, cfg_.num_heads, cfg_.num_kv_heads, cfg_.head_dim, scale, attn_.data());
      L.o.multiply(attn_.data(), T, Q, proj_.data(), H);
      add_inplace(x_.data(), proj_.data(), static_cast<int64_t>(T) * H);
      rms_norm(x_.data(), T, H, H, L.mlp_norm.data(), eps, h_.data(), H);
      L.gate_up.multiply(h_.data(), T, H, gu_.data(), 2 * I);
      silu_and_mul(gu_.data(), T, I, act_.data());
      L.down.multiply(act_.data(), T, I, proj_.data(), H);
      add_inplace(x_.data(), proj_.data(), static_cast<int64_t>(T) * H);
    }
    // Final norm and LM head only for the rows whose next token is wanted.
    std::vector<float> last(static_cast<size_t>(R) * H);
    for (int32_t r = 0; r < R; r++)
      std::memcpy(last.data() + static_cast<int64_t>(r) * H, x_.data() + static_cast<int64_t>(in.logit_rows[r]) * H,
                  sizeof(float) * H);
    rms_norm(last.data(), R, H, H, final_norm_.data(), eps, last.data(), H);
    std::vector<float> logits(static_cast<size_t>(R) * cfg_.vocab_size);
    lm_head_.multiply(last.data(), R, H, logits.data(), cfg_.vocab_size);
    if (in.sample) sample_rows(logits.data(), cfg_.vocab_size, in, out);
    if (in.return_logits) out.logits = std::move(logits);
  }

 private:
  ModelConfig cfg_;
  DType dtype_ = DType::F32, embed_dtype_ = DType::F32;
  std::vector<float> embed_, final_norm_, inv_freq_;
  PackedMatrix lm_head_;
  std::vector<Layer> layers_;
  std::unique_ptr<KvCache> cache_;
  int32_t block_size_ = 16;
  int64_t kv_bytes_ = 0, weight_bytes_ = 0;
  std::vector<float> x_, h_, qkv_, attn_, proj_, gu_, act_;
};

}  // namespace

std::unique_ptr<Backend> create_cpu_backend(const ModelConfig& cfg, const WeightStore& weights,
                                            const EngineOptions& opt) {
  return std::make_unique<CpuBackend>(cfg, weights, opt);
}

}  // namespace pagoda::cpu
