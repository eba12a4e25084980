/**
 * Turns each sampled token into what a client sees: text deltas, stop-string and stop-token
 * detection, length limits. Stop text never leaks: while a stop string could still be completing,
 * the text that might belong to it is held back.
 */
import { type Decoder, IncrementalDetokenizer } from './detokenizer.ts';
import type { SamplingParams } from './sampling-params.ts';
import type { FinishReason } from './sequence.ts';

export interface TokenOutcome {
  /** text released to the client by this token */
  delta: string;
  finished: boolean;
  finishReason?: FinishReason;
  /** the stop string or stop token id that ended generation */
  stopReason?: string | number;
}

export class OutputProcessor {
  private readonly params: SamplingParams;
  private readonly eosIds: ReadonlySet<number>;
  private readonly detok: IncrementalDetokenizer;
  private readonly holdBack: number;
  /** all text decoded so far, and how much of it was released */
  private text = '';
  private released = 0;
  private numOutput = 0;

  constructor(decoder: Decoder, params: SamplingParams, eosIds: readonly number[]) {
    this.params = params;
    this.eosIds = new Set(eosIds);
    this.detok = new IncrementalDetokenizer(decoder, params.skipSpecialTokens);
    this.holdBack = params.stop.reduce((m, s) => Math.max(m, s.length - 1), 0);
  }

  get outputText(): string {
    return this.text.slice(0, this.released);
  }

  /** Processes one new token; `atMaxModelLen` says the context is full after it. */
  push(token: number, atMaxModelLen: boolean): TokenOutcome {
    const p = this.params;
    this.numOutput++;
    const minReached = this.numOutput >= p.minTokens;
    if (minReached && !p.ignoreEos && this.eosIds.has(token)) return this.finish('stop', undefined);
    if (minReached && p.stopTokenIds.includes(token)) return this.finish('stop', token);

    if (!p.detokenize) {
      if (this.numOutput >= p.maxTokens || atMaxModelLen) return this.finish('length', undefined);
      return { delta: '', finished: false };
    }
    const prevLen = this.text.length;
    this.text += this.detok.push(token);
    if (minReached && p.stop.length > 0) {
      const from = Math.max(0, prevLen - this.holdBack);
      let best: { at: number; stop: string } | undefined;
      for (const s of p.stop) {
        const at = this.text.indexOf(s, from);
        if (at >= 0 && (!best || at < best.at)) best = { at, stop: s };
      }
      if (best) {
        this.text = this.text.slice(0, best.at + (p.includeStopStrInOutput ? best.stop.length : 0));
        return this.finish('stop', best.stop);
      }
    }
    if (this.numOutput >= p.maxTokens || atMaxModelLen) return this.finish('length', undefined);
    const releasable = Math.max(this.released, this.text.length - this.holdBack);
    const delta = this.text.slice(this.released, releasable);
    this.released = releasable;
    return { delta, finished: false };
  }

  private finish(reason: FinishReason, stopReason: string | number | undefined): TokenOutcome {
    const delta = this.text.slice(this.released);
    this.released = this.text.length;
    const out: TokenOutcome = { delta, finished: true, finishReason: reason };
    if (stopReason !== undefined) out.stopReason = stopReason;
    return out;
  }
}
