#include "binding/step_io.h"

#include <cstring>
#include <string>
#include <type_traits>

namespace pagoda::binding {
namespace {

[[noreturn]] void type_error(const Napi::Env& env, const std::string& msg) {
  throw Napi::TypeError::New(env, msg);
}

Napi::Value get(const Napi::Object& o, const char* key) { return o.Get(key); }

double number(const Napi::Object& o, const char* key, double fallback, bool required = false) {
  Napi::Value v = get(o, key);
  if (v.IsUndefined() && !required) return fallback;
  if (!v.IsNumber()) type_error(o.Env(), std::string(key) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

bool boolean(const Napi::Object& o, const char* key, bool fallback) {
  Napi::Value v = get(o, key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsBoolean()) type_error(o.Env(), std::string(key) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::string string(const Napi::Object& o, const char* key, const std::string& fallback, bool required = false) {
  Napi::Value v = get(o, key);
  if (v.IsUndefined() && !required) return fallback;
  if (!v.IsString()) type_error(o.Env(), std::string(key) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

template <typename T>
constexpr napi_typedarray_type typed_kind();
template <> constexpr napi_typedarray_type typed_kind<int32_t>() { return napi_int32_array; }
template <> constexpr napi_typedarray_type typed_kind<uint32_t>() { return napi_uint32_array; }
template <> constexpr napi_typedarray_type typed_kind<float>() { return napi_float32_array; }

template <typename T>
const char* typed_name() {
  if constexpr (std::is_same_v<T, int32_t>) return "an Int32Array";
  if constexpr (std::is_same_v<T, uint32_t>) return "a Uint32Array";
  return "a Float32Array";
}

// Copies a typed array field; absent → empty (the step validator then names the missing entries).
template <typename T>
std::vector<T> typed(const Napi::Object& o, const char* key) {
  Napi::Value v = get(o, key);
  if (v.IsUndefined()) return {};
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != typed_kind<T>())
    type_error(o.Env(), std::string("step.") + key + " must be " + typed_name<T>());
  auto arr = v.As<Napi::TypedArrayOf<T>>();
  return std::vector<T>(arr.Data(), arr.Data() + arr.ElementLength());
}

template <typename T>
Napi::Value to_js(Napi::Env env, const std::vector<T>& v) {
  auto arr = Napi::TypedArrayOf<T>::New(env, v.size());
  if (!v.empty()) std::memcpy(arr.Data(), v.data(), v.size() * sizeof(T));
  return arr;
}

}  // namespace

ModelConfig read_model_config(const Napi::Object& o) {
  ModelConfig c;
  c.arch = string(o, "arch", "", true);
  c.vocab_size = static_cast<int32_t>(number(o, "vocabSize", 0, true));
  c.hidden_size = static_cast<int32_t>(number(o, "hiddenSize", 0, true));
  c.intermediate_size = static_cast<int32_t>(number(o, "intermediateSize", 0, true));
  c.num_layers = static_cast<int32_t>(number(o, "numLayers", 0, true));
  c.num_heads = static_cast<int32_t>(number(o, "numHeads", 0, true));
  c.num_kv_heads = static_cast<int32_t>(number(o, "numKvHeads", 0, true));
  c.head_dim = static_cast<int32_t>(number(o, "headDim", 0, true));
  c.rms_norm_eps = number(o, "rmsNormEps", 1e-6);
  c.rope_theta = number(o, "ropeTheta", 10000.0);
  c.tie_word_embeddings = boolean(o, "tieWordEmbeddings", false);
  c.attention_bias = boolean(o, "attentionBias", false);
  c.qk_norm = boolean(o, "qkNorm", false);
  Napi::Value rs = get(o, "ropeScaling");
  if (rs.IsObject()) {
    Napi::Object s = rs.As<Napi::Object>();
    c.rope_scaling.type = string(s, "type", "none");
    c.rope_scaling.factor = number(s, "factor", 1.0);
    c.rope_scaling.low_freq_factor = number(s, "lowFreqFactor", 1.0);
    c.rope_scaling.high_freq_factor = number(s, "highFreqFactor", 4.0);
    c.rope_scaling.original_max_position = number(s, "originalMaxPosition", 8192);
  }
  return c;
}

std::vector<TensorEntry> read_tensors(const Napi::Array& a) {
  std::vector<TensorEntry> out;
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value v = a.Get(i);
    if (!v.IsObject()) type_error(a.Env(), "tensors[" + std::to_string(i) + "] must be an object");
    Napi::Object t = v.As<Napi::Object>();
    TensorEntry e;
    e.name = string(t, "name", "", true);
    e.file = string(t, "file", "", true);
    e.offset = static_cast<int64_t>(number(t, "offset", 0, true));
    e.nbytes = static_cast<int64_t>(number(t, "nbytes", 0, true));
    std::string dt = string(t, "dtype", "", true);
    auto parsed = parse_dtype(dt);
    if (!parsed) type_error(a.Env(), "tensor " + e.name + ": unsupported dtype " + dt);
    e.dtype = *parsed;
    Napi::Value shape = get(t, "shape");
    if (!shape.IsArray()) type_error(a.Env(), "tensor " + e.name + ": shape must be an array");
    Napi::Array sa = shape.As<Napi::Array>();
    for (uint32_t j = 0; j < sa.Length(); j++) e.shape.push_back(static_cast<int64_t>(sa.Get(j).As<Napi::Number>().Int64Value()));
    e.rope_unpermute_heads = static_cast<int32_t>(number(t, "ropeUnpermuteHeads", 0));
    out.push_back(std::move(e));
  }
  return out;
}

EngineOptions read_engine_options(const Napi::Object& o) {
  EngineOptions e;
  e.device = string(o, "device", "cpu");
  e.threads = static_cast<int32_t>(number(o, "threads", 0));
  e.block_size = static_cast<int32_t>(number(o, "blockSize", 16));
  e.num_blocks = static_cast<int32_t>(number(o, "numBlocks", 0));
  e.kv_cache_bytes = static_cast<int64_t>(number(o, "kvCacheBytes", 0));
  e.gpu_memory_utilization = number(o, "gpuMemoryUtilization", 0.9);
  e.weight_dtype = string(o, "weightDtype", "auto");
  e.max_num_batched_tokens = static_cast<int32_t>(number(o, "maxNumBatchedTokens", 2048));
  e.max_num_seqs = static_cast<int32_t>(number(o, "maxNumSeqs", 256));
  e.tensor_parallel_size = static_cast<int32_t>(number(o, "tensorParallelSize", 1));
  e.max_model_len = static_cast<int32_t>(number(o, "maxModelLen", 0));
  e.enable_cuda_graphs = boolean(o, "enableCudaGraphs", true);
  return e;
}

StepInput read_step(const Napi::Object& o) {
  StepInput s;
  s.token_ids = typed<int32_t>(o, "tokenIds");
  s.positions = typed<int32_t>(o, "positions");
  s.query_start = typed<int32_t>(o, "queryStart");
  s.context_lens = typed<int32_t>(o, "contextLens");
  s.block_tables = typed<int32_t>(o, "blockTables");
  s.max_blocks_per_seq = static_cast<int32_t>(number(o, "maxBlocksPerSeq", 0, true));
  s.slot_mapping = typed<int32_t>(o, "slotMapping");
  s.logit_rows = typed<int32_t>(o, "logitRows");
  s.num_top_logprobs = static_cast<int32_t>(number(o, "numTopLogprobs", 0));
  s.return_logits = boolean(o, "returnLogits", false);
  s.sample = boolean(o, "sample", true);
  SamplingInputs& p = s.sampling;
  p.temperature = typed<float>(o, "temperature");
  p.top_p = typed<float>(o, "topP");
  p.top_k = typed<int32_t>(o, "topK");
  p.min_p = typed<float>(o, "minP");
  p.presence_penalty = typed<float>(o, "presencePenalty");
  p.frequency_penalty = typed<float>(o, "frequencyPenalty");
  p.repetition_penalty = typed<float>(o, "repetitionPenalty");
  p.seed = typed<uint32_t>(o, "seed");
  p.step = typed<int32_t>(o, "sampleStep");
  p.output_offsets = typed<int32_t>(o, "outputOffsets");
  p.output_tokens = typed<int32_t>(o, "outputTokens");
  p.context_offsets = typed<int32_t>(o, "contextOffsets");
  p.context_tokens = typed<int32_t>(o, "contextTokens");
  p.bias_offsets = typed<int32_t>(o, "biasOffsets");
  p.bias_tokens = typed<int32_t>(o, "biasTokens");
  p.bias_values = typed<float>(o, "biasValues");
  return s;
}

Napi::Object write_step_output(Napi::Env env, StepOutput&& out, const StepInput& in) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("tokens", to_js(env, out.tokens));
  o.Set("logprobs", to_js(env, out.logprobs));
  o.Set("topIds", to_js(env, out.top_ids));
  o.Set("topLogprobs", to_js(env, out.top_logprobs));
  if (in.return_logits) o.Set("logits", to_js(env, out.logits));
  return o;
}

Napi::Object write_backend_info(Napi::Env env, const BackendInfo& info) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("device", info.device);
  o.Set("numBlocks", info.num_blocks);
  o.Set("blockSize", info.block_size);
  o.Set("kvCacheBytes", static_cast<double>(info.kv_cache_bytes));
  o.Set("weightBytes", static_cast<double>(info.weight_bytes));
  o.Set("weightDtype", info.weight_dtype);
  return o;
}

}  // namespace pagoda::binding
