// Weight tensors as the TypeScript loader described them: a manifest of (canonical name, file, byte
// range, element type, shape). The store maps each file once and decodes a tensor on request.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/dtype.h"

namespace pagoda {

struct TensorEntry {
  std::string name;           // canonical name, e.g. "layers.3.attn.q.weight"
  std::string file;           // absolute path of the file that holds it
  int64_t offset = 0;         // byte offset of the data in that file
  int64_t nbytes = 0;         // byte length of the data
  DType dtype = DType::F32;
  std::vector<int64_t> shape; // logical row-major shape: [out, in] for matrices
  // GGUF Llama checkpoints store q/k rows interleaved for rotary embedding; > 0 means "undo that
  // permutation with this many heads" so every backend uses the half-split (NeoX) layout.
  int32_t rope_unpermute_heads = 0;
};

class MappedFile;

class WeightStore {
 public:
  explicit WeightStore(std::vector<TensorEntry> entries);
  ~WeightStore();
  WeightStore(const WeightStore&) = delete;
  WeightStore& operator=(const WeightStore&) = delete;

  bool has(const std::string& name) const;
  const TensorEntry& entry(const std::string& name) const;
  // Same, throwing if the tensor's shape is not `expect`.
  const TensorEntry& entry(const std::string& name, const std::vector<int64_t>& expect) const;
  // Decodes the whole tensor to float32 (rope permutation undone). Throws EngineError if missing.
  std::vector<float> read_f32(const std::string& name) const;
  // Same, checking the shape first.
  std::vector<float> read_f32(const std::string& name, const std::vector<int64_t>& expect_shape) const;
  // Rows [r0, r0 + nr) x columns [c0, c0 + nc) of a matrix of shape `expect_shape` ([n, k]) as bf16 bits,
  // row-major [nr, nc]: what the GPU stores. A bf16 tensor is copied as stored (no float32 buffer);
  // any other is read as read_f32 does and rounded to nearest even, so the bits are the same either way
  // (NaN payloads aside).
  std::vector<uint16_t> read_bf16(const std::string& name, const std::vector<int64_t>& expect_shape, int64_t r0, int64_t nr,
                                  int64_t c0, int64_t nc) const;

 private:
  std::unordered_map<std::string, TensorEntry> entries_;
  std::unordered_map<std::string, std::unique_ptr<MappedFile>> files_;
};

int64_t numel(const std::vector<int64_t>& shape);
std::string shape_str(const std::vector<int64_t>& shape);

}  // namespace pagoda
