// The transformer shape the engine runs, as the TypeScript loader read it from config.json or GGUF
// metadata. One struct for every supported family: Llama (Llama 3, SmolLM2), Qwen2, Qwen3.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace pagoda {

struct RopeScaling {
  std::string type = "none";  // "none" | "linear" | "llama3"
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  double original_max_position = 8192;
};

struct ModelConfig {
  std::string arch;  // "llama" | "qwen2" | "qwen3"
  int32_t vocab_size = 0;
  int32_t hidden_size = 0;
  int32_t intermediate_size = 0;
  int32_t num_layers = 0;
  int32_t num_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v biases (Qwen2)
  bool qk_norm = false;         // per-head RMSNorm on q and k before RoPE (Qwen3)

  int32_t q_size() const { return num_heads * head_dim; }
  int32_t kv_size() const { return num_kv_heads * head_dim; }
  // Throws EngineError naming the first inconsistent field.
  void validate() const;
};

// Inverse frequencies of rotary embedding, one per pair of dimensions (head_dim / 2), computed as
// HF transformers does (float32 powers, then the config's scaling rule).
std::vector<float> rope_inv_freq(const ModelConfig& cfg);

}  // namespace pagoda
