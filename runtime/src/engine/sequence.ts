/** One sequence being generated: its tokens, how many are in the KV cache, and its blocks. */
import type { SamplingParams } from './sampling-params.ts';

export type SequenceStatus = 'waiting' | 'running' | 'finished';
export type FinishReason = 'stop' | 'length' | 'abort' | 'error';

/** A token sampled by a step whose result is not back yet: -(row + 1), the native step's placeholder for
 *  "what the previous step sampled for logit row `row`". */
export const placeholder = (row: number) => -(row + 1);

export class Sequence {
  readonly id: number;
  readonly params: SamplingParams;
  /** prompt then output tokens; the last one or two may be placeholders (negative) while the steps that
   *  sample them are in flight */
  readonly tokens: number[];
  readonly numPromptTokens: number;
  /** output tokens it may produce: max_tokens, capped by the context length */
  readonly maxOutputTokens: number;
  /** 64-bit sampling seed as two 32-bit words */
  readonly seedLo: number;
  readonly seedHi: number;
  status: SequenceStatus = 'waiting';
  finishReason: FinishReason | undefined;
  /** tokens whose K/V are in the cache or being written by a submitted step (prefix-cache hits included) */
  numComputed = 0;
  /** prompt tokens found in the prefix cache at the last admission */
  numCachedTokens = 0;
  blockTable: number[] = [];
  /** how many times it was preempted (its blocks taken back and its tokens recomputed) */
  preemptions = 0;
  /** bumped when it is preempted or finishes: a submitted step's work for an older epoch is void */
  epoch = 0;
  /** submitted steps that include it and whose results are not processed yet */
  inFlight = 0;
  /** tokens kept from being sampled while fewer than params.minTokens are out (see endingTokens) */
  endingTokens: readonly number[] = [];

  constructor(id: number, prompt: readonly number[], params: SamplingParams, seed: number, maxModelLen = Infinity) {
    this.id = id;
    this.params = params;
    this.tokens = [...prompt];
    this.numPromptTokens = prompt.length;
    this.maxOutputTokens = Math.min(params.maxTokens, maxModelLen - prompt.length);
    this.seedLo = seed >>> 0;
    this.seedHi = Math.floor(seed / 2 ** 32) >>> 0;
  }

  get numTokens(): number {
    return this.tokens.length;
  }

  get numOutputTokens(): number {
    return this.tokens.length - this.numPromptTokens;
  }

  get outputTokens(): number[] {
    return this.tokens.slice(this.numPromptTokens);
  }

  get lastToken(): number {
    return this.tokens[this.tokens.length - 1]!;
  }

  /** tokens still to run through the model before the next token can be sampled */
  get numUncomputed(): number {
    return this.tokens.length - this.numComputed;
  }

  /** It has (or will have, once its pending tokens arrive) all the output it may produce. */
  get reachedLength(): boolean {
    return this.numOutputTokens >= this.maxOutputTokens;
  }

  get isFinished(): boolean {
    return this.status === 'finished';
  }

  /** Forgets tokens whose steps are still in flight (they are sampled again after a recompute). */
  dropPending(): void {
    while (this.tokens.length > this.numPromptTokens && this.lastToken < 0) this.tokens.pop();
  }
}
