// Element types of tensors in model files, and the storage types of weights in memory.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pagoda {

enum class DType : uint8_t { F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q6_K };

// Elements per quantization block and bytes per block (1 element, element size for plain types).
struct BlockLayout {
  int64_t elems;
  int64_t bytes;
};

BlockLayout block_layout(DType t);
std::optional<DType> parse_dtype(std::string_view name);
const char* dtype_name(DType t);
bool is_quantized(DType t);

// Bytes needed for `n` elements; the caller has checked that n is a multiple of the block size.
inline int64_t bytes_for(DType t, int64_t n) {
  BlockLayout b = block_layout(t);
  return n / b.elems * b.bytes;
}

}  // namespace pagoda
