#include "engine/model_config.h"

#include <cmath>

#include "engine/errors.h"

namespace pagoda {

void ModelConfig::validate() const {
  auto positive = [](const char* field, int64_t v) {
    if (v <= 0) throw EngineError(std::string("model config: ") + field + " must be positive, got " + std::to_string(v));
  };
  if (arch != "llama" && arch != "qwen2" && arch != "qwen3")
    throw EngineError("model config: unsupported architecture '" + arch + "' (supported: llama, qwen2, qwen3)");
  positive("vocab_size", vocab_size);
  positive("hidden_size", hidden_size);
  positive("intermediate_size", intermediate_size);
  positive("num_hidden_layers", num_layers);
  positive("num_attention_heads", num_heads);
  positive("num_key_value_heads", num_kv_heads);
  positive("head_dim", head_dim);
  if (num_heads % num_kv_heads != 0)
    throw EngineError("model config: num_attention_heads " + std::to_string(num_heads) +
                      " is not a multiple of num_key_value_heads " + std::to_string(num_kv_heads));
  if (head_dim % 2 != 0) throw EngineError("model config: head_dim must be even for rotary embedding");
  if (rope_scaling.type != "none" && rope_scaling.type != "linear" && rope_scaling.type != "llama3")
    throw EngineError("model config: unsupported rope_scaling type '" + rope_scaling.type +
                      "' (supported: linear, llama3)");
}

std::vector<float> rope_inv_freq(const ModelConfig& cfg) {
  int half = cfg.head_dim / 2;
  std::vector<float> inv(half);
  for (int i = 0; i < half; i++) {
    float expo = static_cast<float>(2 * i) / static_cast<float>(cfg.head_dim);
    inv[i] = 1.0f / std::pow(static_cast<float>(cfg.rope_theta), expo);
  }
  const RopeScaling& s = cfg.rope_scaling;
  if (s.type == "linear") {
    for (float& f : inv) f = static_cast<float>(f / s.factor);
  } else if (s.type == "llama3") {
    const double pi = 3.14159265358979323846;
    double low_wavelen = s.original_max_position / s.low_freq_factor;
    double high_wavelen = s.original_max_position / s.high_freq_factor;
    for (float& f : inv) {
      double wavelen = 2 * pi / f;
      if (wavelen < high_wavelen) continue;  // high frequency: unchanged
      if (wavelen > low_wavelen) {
        f = static_cast<float>(f / s.factor);
      } else {
        double smooth = (s.original_max_position / wavelen - s.low_freq_factor) /
                        (s.high_freq_factor - s.low_freq_factor);
        f = static_cast<float>((1 - smooth) * f / s.factor + smooth * f);
      }
    }
  }
  return inv;
}

}  // namespace pagoda
