#include "engine/step.h"

#include <cmath>
#include <string>

#include "engine/errors.h"

namespace pagoda {
namespace {

void expect_size(const char* what, size_t got, size_t want) {
  if (got != want)
    throw EngineError(std::string("step: ") + what + " has " + std::to_string(got) + " entries, expected " +
                      std::to_string(want));
}

}  // namespace

void resolve_previous_tokens(StepInput& in, const std::vector<int32_t>& previous) {
  auto resolve = [&](std::vector<int32_t>& ids) {
    for (int32_t& id : ids) {
      if (id >= 0) continue;
      const int64_t row = -static_cast<int64_t>(id) - 1;
      if (row >= static_cast<int64_t>(previous.size()))
        throw EngineError("step: placeholder for row " + std::to_string(row) + " of the previous step, which sampled " +
                          std::to_string(previous.size()) + " tokens");
      id = previous[static_cast<size_t>(row)];
    }
  };
  resolve(in.token_ids);
  resolve(in.sampling.output_tokens);
  resolve(in.sampling.context_tokens);
}

void validate_step(const StepInput& in, int32_t vocab, int32_t num_blocks, int32_t block_size) {
  const size_t T = in.token_ids.size(), S = in.context_lens.size(), R = in.logit_rows.size();
  expect_size("positions", in.positions.size(), T);
  expect_size("slotMapping", in.slot_mapping.size(), T);
  expect_size("queryStart", in.query_start.size(), S + 1);
  expect_size("blockTables", in.block_tables.size(), S * static_cast<size_t>(in.max_blocks_per_seq));
  if (in.query_start.empty() || in.query_start[0] != 0 || static_cast<size_t>(in.query_start[S]) != T)
    throw EngineError("step: queryStart must start at 0 and end at the token count");
  const int64_t slots = static_cast<int64_t>(num_blocks) * block_size;
  for (size_t t = 0; t < T; t++) {
    if (in.token_ids[t] < 0 || in.token_ids[t] >= vocab)
      throw EngineError("step: token id " + std::to_string(in.token_ids[t]) + " is outside the vocabulary of " +
                        std::to_string(vocab));
    if (in.slot_mapping[t] < 0 || in.slot_mapping[t] >= slots)
      throw EngineError("step: slot " + std::to_string(in.slot_mapping[t]) + " is outside the KV cache");
    if (in.positions[t] < 0) throw EngineError("step: negative position");
  }
  for (size_t s = 0; s < S; s++) {
    int32_t q0 = in.query_start[s], q1 = in.query_start[s + 1];
    if (q1 <= q0) throw EngineError("step: sequence " + std::to_string(s) + " has no tokens");
    int32_t ctx = in.context_lens[s];
    if (ctx < q1 - q0 || ctx > in.max_blocks_per_seq * block_size)
      throw EngineError("step: sequence " + std::to_string(s) + " context length " + std::to_string(ctx) +
                        " does not fit its tokens or its block table");
    if (in.positions[q1 - 1] != ctx - 1)
      throw EngineError("step: sequence " + std::to_string(s) + " last position must be context length - 1");
    int32_t used = (ctx + block_size - 1) / block_size;
    for (int32_t b = 0; b < used; b++) {
      int32_t id = in.block_tables[s * in.max_blocks_per_seq + b];
      if (id < 0 || id >= num_blocks) throw EngineError("step: block id " + std::to_string(id) + " out of range");
    }
  }
  for (size_t r = 0; r < R; r++)
    if (in.logit_rows[r] < 0 || static_cast<size_t>(in.logit_rows[r]) >= T)
      throw EngineError("step: logit row " + std::to_string(in.logit_rows[r]) + " is not a token of this step");
  const SamplingInputs& s = in.sampling;
  if (in.sample) {
    expect_size("temperature", s.temperature.size(), R);
    expect_size("topP", s.top_p.size(), R);
    expect_size("topK", s.top_k.size(), R);
    expect_size("minP", s.min_p.size(), R);
    expect_size("presencePenalty", s.presence_penalty.size(), R);
    expect_size("frequencyPenalty", s.frequency_penalty.size(), R);
    expect_size("repetitionPenalty", s.repetition_penalty.size(), R);
    expect_size("seed", s.seed.size(), 2 * R);
    expect_size("sampleStep", s.step.size(), R);
    expect_size("outputOffsets", s.output_offsets.size(), R + 1);
    expect_size("contextOffsets", s.context_offsets.size(), R + 1);
    for (size_t r = 0; r <= R; r++) {
      if (s.output_offsets[r] < 0 || static_cast<size_t>(s.output_offsets[r]) > s.output_tokens.size() ||
          s.context_offsets[r] < 0 || static_cast<size_t>(s.context_offsets[r]) > s.context_tokens.size())
        throw EngineError("step: penalty token offsets out of range");
    }
    for (int32_t t : s.output_tokens)
      if (t < 0 || t >= vocab) throw EngineError("step: penalty token outside the vocabulary");
    for (int32_t t : s.context_tokens)
      if (t < 0 || t >= vocab) throw EngineError("step: penalty token outside the vocabulary");
    if (!s.bias_offsets.empty()) {
      expect_size("biasOffsets", s.bias_offsets.size(), R + 1);
      if (s.bias_values.size() != s.bias_tokens.size()) throw EngineError("step: biasValues and biasTokens differ in length");
      for (size_t r = 0; r <= R; r++)
        if (s.bias_offsets[r] < 0 || static_cast<size_t>(s.bias_offsets[r]) > s.bias_tokens.size() ||
            (r > 0 && s.bias_offsets[r] < s.bias_offsets[r - 1]))
          throw EngineError("step: bias offsets out of range");
      for (int32_t t : s.bias_tokens)
        if (t < 0 || t >= vocab) throw EngineError("step: logit bias token outside the vocabulary");
      for (float v : s.bias_values)
        if (!(v < INFINITY)) throw EngineError("step: a logit bias must be a number below +infinity");
    }
    for (size_t r = 0; r < R; r++) {
      if (!(s.temperature[r] >= 0)) throw EngineError("step: temperature must be >= 0");
      if (!(s.top_p[r] > 0 && s.top_p[r] <= 1)) throw EngineError("step: top_p must be in (0, 1]");
      if (!(s.min_p[r] >= 0 && s.min_p[r] <= 1)) throw EngineError("step: min_p must be in [0, 1]");
      if (!(s.repetition_penalty[r] > 0)) throw EngineError("step: repetition_penalty must be > 0");
    }
  }
  if (in.num_top_logprobs < 0 || in.num_top_logprobs > 20)
    throw EngineError("step: numTopLogprobs must be in [0, 20]");
}

}  // namespace pagoda
