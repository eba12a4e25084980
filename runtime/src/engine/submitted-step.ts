/**
 * A step submitted to the native engine and not processed yet. Submitting advances each scheduled
 * sequence as if the step had run (its tokens count as computed) and appends, for each sequence the
 * step samples, a placeholder that the next step may already use as its input token (the native engine
 * runs steps in order and substitutes what this step sampled).
 */
import type { NativeEngine, StepResult } from '../native/index.ts';
import { buildBatch } from './batch.ts';
import type { ScheduledSeq } from './scheduler.ts';
import { placeholder, type Sequence } from './sequence.ts';
import type { TokenLogprob } from './types.ts';

/** One sequence's part in a submitted step. */
export interface StepEntry {
  seq: Sequence;
  /** the sequence's epoch at submission: a mismatch later means the work is void */
  epoch: number;
  /** tokens with K/V in the cache once this step is done */
  computedAfter: number;
  /** logit row, or -1 when this step samples nothing for it (a prefill chunk short of the prompt's end) */
  row: number;
  /** where the sampled token goes in seq.tokens (a placeholder until the result is back) */
  tokenIndex: number;
}

export interface SubmittedStep {
  result: Promise<StepResult>;
  entries: StepEntry[];
  numTokens: number;
  numTopLogprobs: number;
  submittedAt: number;
}

export function submitStep(
  native: NativeEngine,
  scheduled: readonly ScheduledSeq[],
  numTokens: number,
  blockSize: number,
  now: number,
): SubmittedStep {
  const { batch } = buildBatch(scheduled, blockSize);
  const entries: StepEntry[] = [];
  let row = 0;
  for (const s of scheduled) {
    const { seq } = s;
    seq.numComputed += s.numTokens;
    seq.inFlight++;
    const entry: StepEntry = { seq, epoch: seq.epoch, computedAfter: seq.numComputed, row: -1, tokenIndex: -1 };
    if (s.samples) {
      entry.row = row;
      entry.tokenIndex = seq.tokens.length;
      // the next step reads this as "what row `row` of the previous step sampled"
      seq.tokens.push(placeholder(row++));
    }
    entries.push(entry);
  }
  const result = native.step(batch);
  // Rejections are handled where the result is awaited; a step queued behind a failed one must not
  // count as an unhandled rejection meanwhile.
  result.catch(() => {});
  return { result, entries, numTokens, numTopLogprobs: batch.numTopLogprobs ?? 0, submittedAt: now };
}

/** The token sampled for an entry, with its logprobs when the sequence asked for them. */
export function sampledToken(
  e: StepEntry,
  result: StepResult,
  k: number,
): { token: number; logprobs: TokenLogprob[] | undefined } {
  const r = e.row;
  const token = result.tokens[r]!;
  const want = e.seq.params.logprobs;
  if (want === undefined) return { token, logprobs: undefined };
  const top: { token: number; logprob: number }[] = [];
  for (let j = 0; j < Math.min(want, k); j++)
    top.push({ token: result.topIds[r * k + j]!, logprob: result.topLogprobs[r * k + j]! });
  return { token, logprobs: [{ token, logprob: result.logprobs[r]!, top }] };
}
