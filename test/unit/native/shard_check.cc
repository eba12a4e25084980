// Checks the tensor-parallel sharding rules (native/src/backends/cuda/shard.h) for N = 1, 2, 4, 8 without a
// GPU: for each model shape, the ranks' shards of q/k/v, gate/up (rows) and o/down (columns) put back
// together give the full matrices exactly, as do the LM head's vocabulary slices, every rank's query heads
// read the KV head it holds, and plans that cannot work are refused. Prints one JSON line per case for
// the test to read.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "backends/cuda/shard.h"

using namespace pagoda;
using namespace pagoda::cuda;

static ModelConfig shape(int heads, int kv_heads, int head_dim, int hidden, int inter) {
  ModelConfig c;
  c.arch = "qwen3";
  c.vocab_size = 151936;
  c.num_layers = 1;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.head_dim = head_dim;
  c.hidden_size = hidden;
  c.intermediate_size = inter;
  return c;
}

// Columns [c0, c0 + count) of a row-major [n, k] matrix, as [n, count] (what WeightStore::read_bf16
// returns for a row-parallel shard).
static std::vector<float> take_cols(const std::vector<float>& w, int64_t n, int64_t k, int64_t c0, int64_t count) {
  std::vector<float> out(static_cast<size_t>(n * count));
  for (int64_t i = 0; i < n; i++)
    std::copy(w.begin() + i * k + c0, w.begin() + i * k + c0 + count, out.begin() + i * count);
  return out;
}

// A matrix whose every element names its position, so any misplaced element shows.
static std::vector<float> numbered(int64_t n, int64_t k) {
  std::vector<float> w(static_cast<size_t>(n * k));
  for (int64_t i = 0; i < n * k; i++) w[i] = static_cast<float>(i);
  return w;
}

static bool rebuilt_rows(const ModelConfig& c, int world, int64_t rows_per_unit, int (*count)(const Shard&), int (*first)(const Shard&),
                         int64_t units, int64_t k) {
  const std::vector<float> full = numbered(units * rows_per_unit, k);
  std::vector<float> back(full.size(), -1.0f);
  for (int r = 0; r < world; r++) {
    const Shard s = shard_for(c, world, r, true);
    const int64_t r0 = first(s) * rows_per_unit, n = count(s) * rows_per_unit;
    const std::vector<float> part = take_rows(full, k, r0, n);
    for (int64_t i = 0; i < n * k; i++) {
      // replicated KV heads: every copy must equal the original
      if (back[r0 * k + i] >= 0 && back[r0 * k + i] != part[i]) return false;
      back[r0 * k + i] = part[i];
    }
  }
  return back == full;
}

static bool rebuilt_cols(const ModelConfig& c, int world, int64_t n, int64_t cols_per_unit, int (*count)(const Shard&),
                         int (*first)(const Shard&), int64_t units) {
  const int64_t k = units * cols_per_unit;
  const std::vector<float> full = numbered(n, k);
  std::vector<float> back(full.size(), -1.0f);
  for (int r = 0; r < world; r++) {
    const Shard s = shard_for(c, world, r, true);
    const int64_t c0 = first(s) * cols_per_unit, w = count(s) * cols_per_unit;
    const std::vector<float> part = take_cols(full, n, k, c0, w);
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < w; j++) back[i * k + c0 + j] = part[i * w + j];
  }
  return back == full;
}

int main() {
  struct Case {
    const char* name;
    ModelConfig cfg;
  };
  const Case cases[] = {
      {"qwen3-8b", shape(32, 8, 128, 4096, 12288)},
      {"qwen3-32b", shape(64, 8, 128, 5120, 25600)},
      {"llama-1b", shape(32, 8, 64, 2048, 8192)},
      {"kv4", shape(16, 4, 64, 1024, 2048)},   // TP 8 replicates each KV head on 2 ranks
      {"kv2", shape(8, 2, 64, 512, 1024)},     // TP 8: 1 query head per rank, KV heads on 4 ranks each
      {"heads12", shape(12, 4, 64, 768, 2048)},  // TP 8 does not divide 12 heads
      {"kv3", shape(12, 3, 64, 768, 2048)},    // TP 2 and 4: 3 KV heads, neither divided nor a multiple
  };
  for (const Case& cs : cases) {
    const ModelConfig& c = cs.cfg;
    for (int world : {1, 2, 4, 8}) {
      std::string error;
      try {
        validate_tensor_parallel(c, world, 8);
      } catch (const EngineError& e) {
        error = e.what();
      }
      bool ok = true;
      if (error.empty()) {
        const int D = c.head_dim, H = c.hidden_size;
        const int group = c.num_heads / c.num_kv_heads;
        int heads = 0;
        for (int r = 0; r < world; r++) {
          const Shard s = shard_for(c, world, r, true);
          const ModelConfig local = local_config(c, s);
          heads += s.heads;
          ok = ok && local.num_heads % local.num_kv_heads == 0;
          // query head h reads KV head h / group: it must be among this rank's KV heads, at the same
          // local grouping the kernels use (local head i reads local KV head i / local group)
          const int local_group = s.heads / s.kv_heads;
          for (int i = 0; i < s.heads; i++) ok = ok && (s.head0 + i) / group == s.kv_head0 + i / local_group;
        }
        ok = ok && heads == c.num_heads;
        ok = ok && rebuilt_rows(c, world, D, [](const Shard& s) { return s.heads; }, [](const Shard& s) { return s.head0; },
                                c.num_heads, 8);
        ok = ok && rebuilt_rows(c, world, D, [](const Shard& s) { return s.kv_heads; }, [](const Shard& s) { return s.kv_head0; },
                                c.num_kv_heads, 8);
        ok = ok && rebuilt_rows(c, world, 1, [](const Shard& s) { return s.inter; }, [](const Shard& s) { return s.inter0; },
                                c.intermediate_size, 4);
        ok = ok && rebuilt_cols(c, world, 4, D, [](const Shard& s) { return s.heads; }, [](const Shard& s) { return s.head0; },
                                c.num_heads);
        ok = ok && rebuilt_cols(c, world, 4, 1, [](const Shard& s) { return s.inter; }, [](const Shard& s) { return s.inter0; },
                                c.intermediate_size);
        (void)H;
        // LM head: vocabulary-parallel slices cover the vocabulary once; otherwise rank 0 holds it all
        ok = ok && rebuilt_rows(c, world, 1, [](const Shard& s) { return s.vocab; }, [](const Shard& s) { return s.vocab0; },
                                c.vocab_size, 1);
        for (int r = 0; r < world; r++) {
          const Shard whole = shard_for(c, world, r, false);
          ok = ok && whole.vocab == (r == 0 ? c.vocab_size : 0) && whole.vocab0 == 0;
        }
      }
      std::string msg;
      for (char ch : error) msg += ch == '"' ? '\'' : ch;
      std::printf("{\"model\":\"%s\",\"tp\":%d,\"ok\":%s,\"error\":\"%s\"}\n", cs.name, world, ok ? "true" : "false", msg.c_str());
    }
  }
  std::string too_many;
  try {
    validate_tensor_parallel(cases[0].cfg, 4, 2);
  } catch (const EngineError& e) {
    too_many = e.what();
  }
  std::printf("{\"model\":\"qwen3-8b on 2 GPUs\",\"tp\":4,\"ok\":true,\"error\":\"%s\"}\n", too_many.c_str());
  return 0;
}
