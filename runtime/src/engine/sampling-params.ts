/** Per-request generation settings, already validated (the server maps the OpenAI fields onto these). */
export interface SamplingParams {
  /** 0 = greedy */
  temperature: number;
  topP: number;
  /** 0 = off */
  topK: number;
  minP: number;
  presencePenalty: number;
  frequencyPenalty: number;
  repetitionPenalty: number;
  /** undefined: a random seed per sequence */
  seed: number | undefined;
  maxTokens: number;
  minTokens: number;
  stop: string[];
  stopTokenIds: number[];
  ignoreEos: boolean;
  /** undefined: no logprobs; k >= 0: the chosen token's logprob and the k most likely */
  logprobs: number | undefined;
  includeStopStrInOutput: boolean;
  skipSpecialTokens: boolean;
  /** false: token ids only (no text, no stop strings), for offline throughput work */
  detokenize: boolean;
  /** (token id, bias) pairs added to the logits before sampling (OpenAI logit_bias) */
  logitBias: readonly (readonly [number, number])[];
}

export const MAX_LOGPROBS = 20;

export function defaultSamplingParams(overrides: Partial<SamplingParams> = {}): SamplingParams {
  return {
    temperature: 1,
    topP: 1,
    topK: 0,
    minP: 0,
    presencePenalty: 0,
    frequencyPenalty: 0,
    repetitionPenalty: 1,
    seed: undefined,
    maxTokens: 16,
    minTokens: 0,
    stop: [],
    stopTokenIds: [],
    ignoreEos: false,
    logprobs: undefined,
    includeStopStrInOutput: false,
    skipSpecialTokens: true,
    detokenize: true,
    logitBias: [],
    ...overrides,
  };
}

export function usesPenalties(p: SamplingParams): boolean {
  return p.presencePenalty !== 0 || p.frequencyPenalty !== 0 || p.repetitionPenalty !== 1;
}

/** Tokens that would end a sequence (EOS unless ignored, stop token ids): min_tokens keeps them from being
 *  sampled until that many tokens are out, as vLLM does. */
export function endingTokens(p: SamplingParams, eosIds: readonly number[]): number[] {
  if (p.minTokens <= 0) return [];
  return [...new Set([...(p.ignoreEos ? [] : eosIds), ...p.stopTokenIds])];
}
