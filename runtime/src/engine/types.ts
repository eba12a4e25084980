/** The engine's public vocabulary: requests in, per-sequence events out, observers, configuration. */
import type { SamplingParams } from './sampling-params.ts';
import type { FinishReason } from './sequence.ts';

export interface TokenLogprob {
  token: number;
  logprob: number;
  top: { token: number; logprob: number }[];
}

/** One step's news for one sequence of a request. */
export interface SequenceEvent {
  /** which of the request's n sequences */
  index: number;
  tokenIds: number[];
  textDelta: string;
  logprobs: TokenLogprob[] | undefined;
  finished: boolean;
  finishReason?: FinishReason;
  stopReason?: string | number;
  /** set when finished */
  usage?: { promptTokens: number; completionTokens: number; cachedTokens: number };
}

export interface GenerateRequest {
  prompt: number[];
  params: SamplingParams;
  /** number of sequences (OpenAI `n`) */
  n?: number;
}

/** Timing of one finished sequence, for metrics. Times in seconds since an arbitrary origin. */
export interface FinishedSequenceStats {
  arrival: number;
  /** first admitted into a step (queue time = scheduled - arrival) */
  scheduled: number | undefined;
  firstToken: number | undefined;
  finished: number;
  tokenTimes: number[];
  promptTokens: number;
  completionTokens: number;
  /** prompt tokens served from the prefix cache at its last admission */
  cachedTokens: number;
  /** times it was preempted and recomputed */
  preemptions: number;
  reason: FinishReason;
}

export interface EngineObserver {
  onSequenceFinished?(s: FinishedSequenceStats): void;
  onStep?(s: { numTokens: number; numSeqs: number; seconds: number }): void;
}

export interface EngineConfig {
  maxModelLen: number;
  maxNumSeqs: number;
  maxNumBatchedTokens: number;
  enablePrefixCaching: boolean;
  /** prepare and queue step k+1 while step k runs (default true) */
  asyncScheduling?: boolean;
}

export class EngineError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EngineError';
  }
}
