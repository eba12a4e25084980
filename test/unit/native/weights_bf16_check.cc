// WeightStore::read_bf16 (what the CUDA backend uploads) against the reference path it replaces:
// read_f32, slice, round to bf16. Every dtype, whole matrices, row slices (column-parallel shards),
// column slices (row-parallel shards), the GGUF rope permutation; then the time of both paths on a
// bf16 matrix of DIM x DIM (default 16384: 512 MiB). Prints one JSON line per case.
// Usage: weights_bf16_check TMP_DIR [DIM]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/half.h"
#include "engine/weights.h"

using namespace pagoda;

struct File {
  std::string path;
  std::vector<uint8_t> bytes;
  TensorEntry add(const std::string& name, DType t, std::vector<int64_t> shape, const std::vector<uint8_t>& data) {
    TensorEntry e;
    e.name = name;
    e.file = path;
    e.offset = static_cast<int64_t>(bytes.size());
    e.nbytes = static_cast<int64_t>(data.size());
    e.dtype = t;
    e.shape = std::move(shape);
    bytes.insert(bytes.end(), data.begin(), data.end());
    return e;
  }
  void write() const {
    FILE* f = std::fopen(path.c_str(), "wb");
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
  }
};

static std::vector<uint8_t> encode(DType t, int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 0.05f);
  std::vector<uint8_t> out;
  auto put16 = [&](uint16_t v) {
    out.push_back(static_cast<uint8_t>(v & 0xff));
    out.push_back(static_cast<uint8_t>(v >> 8));
  };
  if (t == DType::Q8_0) {
    for (int64_t b = 0; b < n / 32; b++) {
      put16(float_to_half(0.01f + 0.001f * static_cast<float>(b % 7)));
      for (int j = 0; j < 32; j++) out.push_back(static_cast<uint8_t>(static_cast<int8_t>(static_cast<int>(rng() % 255) - 127)));
    }
    return out;
  }
  for (int64_t i = 0; i < n; i++) {
    const float x = dist(rng);
    if (t == DType::BF16) put16(float_to_bf16(x));
    else if (t == DType::F16) put16(float_to_half(x));
    else {
      uint8_t b[4];
      std::memcpy(b, &x, 4);
      out.insert(out.end(), b, b + 4);
    }
  }
  return out;
}

static std::vector<uint16_t> reference(const WeightStore& w, const std::string& name, int64_t k, int64_t r0, int64_t nr, int64_t c0,
                                       int64_t nc) {
  const std::vector<float> full = w.read_f32(name);
  std::vector<uint16_t> out(static_cast<size_t>(nr * nc));
  for (int64_t i = 0; i < nr; i++)
    for (int64_t j = 0; j < nc; j++) out[i * nc + j] = float_to_bf16(full[(r0 + i) * k + c0 + j]);
  return out;
}

static double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : "/tmp";
  std::mt19937 rng(7);
  File f{dir + "/weights.bin", {}};
  const int64_t n = 96, k = 128;
  std::vector<TensorEntry> entries;
  const DType types[] = {DType::BF16, DType::F16, DType::F32, DType::Q8_0};
  const char* names[] = {"bf16", "f16", "f32", "q8_0"};
  for (int i = 0; i < 4; i++) entries.push_back(f.add(names[i], types[i], {n, k}, encode(types[i], n * k, rng)));
  TensorEntry rope = f.add("bf16-rope", DType::BF16, {n, k}, encode(DType::BF16, n * k, rng));
  rope.rope_unpermute_heads = 3;  // 3 heads of 32 rows
  entries.push_back(rope);
  f.write();
  WeightStore w(entries);
  struct Slice {
    const char* what;
    int64_t r0, nr, c0, nc;
  };
  const Slice slices[] = {{"whole", 0, n, 0, k}, {"rows", 32, 48, 0, k}, {"cols", 0, n, 64, 32}, {"block", 5, 7, 96, 32}};
  for (const char* name : {"bf16", "f16", "f32", "q8_0", "bf16-rope"})
    for (const Slice& s : slices) {
      const bool same = w.read_bf16(name, {n, k}, s.r0, s.nr, s.c0, s.nc) == reference(w, name, k, s.r0, s.nr, s.c0, s.nc);
      std::printf("{\"case\":\"%s %s\",\"same\":%s}\n", name, s.what, same ? "true" : "false");
    }
  std::string error;
  try {
    w.read_bf16("bf16", {n, k}, 90, 10, 0, k);
  } catch (const std::exception& e) {
    error = e.what();
  }
  std::printf("{\"case\":\"out of range\",\"error\":\"%s\"}\n", error.c_str());

  // Time: a DIM x DIM bf16 matrix, whole and as the column half a row-parallel rank takes.
  const int64_t dim = argc > 2 ? std::atoll(argv[2]) : 16384;
  const int64_t big_n = dim, big_k = dim;
  File g{dir + "/big.bin", {}};
  std::vector<uint8_t> data(static_cast<size_t>(big_n * big_k * 2));
  for (size_t i = 0; i < data.size(); i += 2) {
    const uint16_t v = float_to_bf16(static_cast<float>(static_cast<int>(i % 977) - 488) * 1e-4f);
    data[i] = static_cast<uint8_t>(v & 0xff);
    data[i + 1] = static_cast<uint8_t>(v >> 8);
  }
  std::vector<TensorEntry> big{g.add("big", DType::BF16, {big_n, big_k}, data)};
  data.clear();
  data.shrink_to_fit();
  g.write();
  g.bytes.clear();
  g.bytes.shrink_to_fit();
  WeightStore wb(big);
  for (int64_t cols : {big_k, big_k / 2}) {
    auto t0 = std::chrono::steady_clock::now();
    const auto fast = wb.read_bf16("big", {big_n, big_k}, 0, big_n, 0, cols);
    const double t_fast = ms_since(t0);
    t0 = std::chrono::steady_clock::now();
    const auto slow = reference(wb, "big", big_k, 0, big_n, 0, cols);
    const double t_slow = ms_since(t0);
    std::printf("{\"case\":\"time %s\",\"same\":%s,\"read_bf16_ms\":%.0f,\"f32_path_ms\":%.0f}\n",
                cols == big_k ? "whole" : "column half", fast == slow ? "true" : "false", t_fast, t_slow);
  }
  return 0;
}
