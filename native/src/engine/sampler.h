// Token selection on the host: penalties, temperature, top-k / top-p / min-p filters, a counter-based
// random draw per (seed, step) so the same seed gives the same output whatever the batch holds, and
// log-probabilities of the raw model distribution.
#pragma once
#include <cstdint>

#include "engine/step.h"

namespace pagoda {

// logits: [R, vocab] float32, row r belongs to in.logit_rows[r]. Fills out.tokens, out.logprobs and,
// when in.num_top_logprobs > 0, out.top_ids / out.top_logprobs. Rows run in parallel.
void sample_rows(const float* logits, int32_t vocab, const StepInput& in, StepOutput& out);

// Uniform double in [0, 1) from a 64-bit seed and a step counter (SplitMix64 finaliser).
double uniform_from(uint64_t seed, uint64_t step);

}  // namespace pagoda
