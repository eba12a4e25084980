// One engine step as it crosses the binding: a mixed batch of prefill chunks and decodes, flattened.
//
// S sequences, T tokens in all, R logit rows (tokens whose next-token distribution is wanted: the
// last token of each sequence that samples this step; a prefill chunk that does not end its prompt
// has none).
#pragma once
#include <cstdint>
#include <vector>

namespace pagoda {

struct SamplingInputs {
  // Per logit row [R]. temperature 0 means greedy (argmax, lowest index on ties).
  std::vector<float> temperature;
  std::vector<float> top_p;          // 1 = off
  std::vector<int32_t> top_k;        // 0 or -1 = off
  std::vector<float> min_p;          // 0 = off
  std::vector<float> presence_penalty;
  std::vector<float> frequency_penalty;
  std::vector<float> repetition_penalty;  // 1 = off
  std::vector<uint32_t> seed;        // [R * 2]: low and high words of a 64-bit seed
  std::vector<int32_t> step;         // index of the token being sampled within its sequence's output
  // Tokens the penalties look at, per row: output tokens (presence/frequency) [offsets R+1], and
  // prompt + output tokens (repetition) [offsets R+1]. Empty ranges for rows without penalties.
  std::vector<int32_t> output_offsets, output_tokens;
  std::vector<int32_t> context_offsets, context_tokens;
  // Additive logit biases per row, after the penalties [offsets R+1]: OpenAI's logit_bias, and -inf for
  // the tokens min_tokens keeps from ending a sequence early. Empty offsets: no biases at all.
  std::vector<int32_t> bias_offsets, bias_tokens;
  std::vector<float> bias_values;
};

struct StepInput {
  // [T] A negative id -(r + 1) stands for "the token sampled for logit row r of the previous step":
  // the caller can prepare step k+1 before step k's tokens are known (resolve_previous_tokens).
  std::vector<int32_t> token_ids;
  std::vector<int32_t> positions;     // [T] absolute position of each token in its sequence
  std::vector<int32_t> query_start;   // [S + 1] offsets of each sequence's tokens in token_ids
  std::vector<int32_t> context_lens;  // [S] tokens in the KV cache once this step's are stored
  std::vector<int32_t> block_tables;  // [S, max_blocks_per_seq] physical block ids, row-padded
  int32_t max_blocks_per_seq = 0;
  std::vector<int32_t> slot_mapping;  // [T] block * block_size + offset where each token's K/V goes
  std::vector<int32_t> logit_rows;    // [R] indices into token_ids
  SamplingInputs sampling;
  int32_t num_top_logprobs = 0;       // top entries to return per row (0..20)
  bool return_logits = false;         // copy the full [R, vocab] logits back (tests, references)
  bool sample = true;                 // false: logits only

  int32_t num_seqs() const { return static_cast<int32_t>(context_lens.size()); }
  int32_t num_tokens() const { return static_cast<int32_t>(token_ids.size()); }
  int32_t num_rows() const { return static_cast<int32_t>(logit_rows.size()); }
};

struct StepOutput {
  std::vector<int32_t> tokens;          // [R]
  std::vector<float> logprobs;          // [R] log-probability of the chosen token (raw model distribution)
  std::vector<int32_t> top_ids;         // [R, num_top_logprobs]
  std::vector<float> top_logprobs;      // [R, num_top_logprobs]
  std::vector<float> logits;            // [R, vocab] when return_logits
};

// Replaces placeholders (negative ids) in token_ids and in the penalty token lists by the tokens the
// previous step sampled. Throws EngineError when a placeholder names a row that step did not have.
void resolve_previous_tokens(StepInput& in, const std::vector<int32_t>& previous);

// Checks every index in a step against the engine's sizes; throws EngineError naming the problem.
void validate_step(const StepInput& in, int32_t vocab_size, int32_t num_blocks, int32_t block_size);

}  // namespace pagoda
