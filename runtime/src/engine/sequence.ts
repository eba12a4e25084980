/** One sequence being generated: its tokens, how many are in the KV cache, and its blocks. */
import type { SamplingParams } from './sampling-params.ts';

export type SequenceStatus = 'waiting' | 'running' | 'finished';
export type FinishReason = 'stop' | 'length' | 'abort' | 'error';

export class Sequence {
  readonly id: number;
  readonly params: SamplingParams;
  /** prompt then output tokens */
  readonly tokens: number[];
  readonly numPromptTokens: number;
  /** 64-bit sampling seed as two 32-bit words */
  readonly seedLo: number;
  readonly seedHi: number;
  status: SequenceStatus = 'waiting';
  finishReason: FinishReason | undefined;
  /** tokens whose K/V are in the cache (prefix-cache hits included) */
  numComputed = 0;
  /** prompt tokens found in the prefix cache at the last admission */
  numCachedTokens = 0;
  blockTable: number[] = [];
  /** how many times it was preempted (its blocks taken back and its tokens recomputed) */
  preemptions = 0;

  constructor(id: number, prompt: readonly number[], params: SamplingParams, seed: number) {
    this.id = id;
    this.params = params;
    this.tokens = [...prompt];
    this.numPromptTokens = prompt.length;
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

  get isFinished(): boolean {
    return this.status === 'finished';
  }
}
