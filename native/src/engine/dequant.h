// Decoding tensor data from model files (plain and GGUF block-quantized types) to float32.
#pragma once
#include <cstdint>

#include "engine/dtype.h"

namespace pagoda {

// Decodes `n` elements of type `t` from `src` into `dst`. n must be a multiple of the block size.
void decode_to_f32(DType t, const uint8_t* src, int64_t n, float* dst);

}  // namespace pagoda
