/**
 * Continuous batching under a per-step token budget: running sequences first (decodes and unfinished
 * prefill chunks, oldest first), then waiting ones in arrival order while blocks, sequence slots and
 * budget last. When a running sequence needs a block and none is free, the most recently admitted
 * running sequence is preempted: its blocks return and its tokens are recomputed later.
 */
import type { BlockManager } from './block-manager.ts';
import type { Sequence } from './sequence.ts';

export interface SchedulerConfig {
  maxNumBatchedTokens: number;
  maxNumSeqs: number;
  /** longest prefill chunk one sequence gets per step (defaults to the whole budget) */
  maxPrefillChunk?: number;
}

export interface ScheduledSeq {
  seq: Sequence;
  /** tokens of this sequence in the step, starting at seq.numComputed */
  numTokens: number;
  /** whether the step ends at the sequence's last known token (so a new token is sampled) */
  samples: boolean;
}

export interface SchedulerOutput {
  scheduled: ScheduledSeq[];
  preempted: Sequence[];
  numTokens: number;
}

export class Scheduler {
  readonly waiting: Sequence[] = [];
  readonly running: Sequence[] = [];
  private readonly blocks: BlockManager;
  private readonly config: SchedulerConfig;
  /** cumulative count, for metrics */
  numPreemptions = 0;

  constructor(blocks: BlockManager, config: SchedulerConfig) {
    this.blocks = blocks;
    this.config = config;
  }

  add(seq: Sequence): void {
    seq.status = 'waiting';
    this.waiting.push(seq);
  }

  get hasWork(): boolean {
    return this.waiting.length > 0 || this.running.length > 0;
  }

  schedule(): SchedulerOutput {
    let budget = this.config.maxNumBatchedTokens;
    const chunkCap = this.config.maxPrefillChunk ?? budget;
    const scheduled: ScheduledSeq[] = [];
    const preempted: Sequence[] = [];

    for (let i = 0; i < this.running.length && budget > 0; ) {
      const seq = this.running[i]!;
      const n = Math.min(seq.numUncomputed, budget, chunkCap);
      if (n <= 0) {
        i++;
        continue;
      }
      // Make room for the new tokens' K/V, preempting from the back of the running list.
      let fits = this.blocks.canAppend(seq, seq.numComputed + n);
      while (!fits) {
        const victim = this.running[this.running.length - 1]!;
        this.preempt(victim);
        preempted.push(victim);
        if (victim === seq) break;
        fits = this.blocks.canAppend(seq, seq.numComputed + n);
      }
      if (!fits) continue; // seq itself was preempted; running[i] is now the next one
      this.blocks.append(seq, seq.numComputed + n);
      scheduled.push({ seq, numTokens: n, samples: seq.numComputed + n === seq.numTokens });
      budget -= n;
      i++;
    }

    // Admit waiting sequences only when nothing had to be preempted this step.
    while (
      preempted.length === 0 &&
      budget > 0 &&
      this.waiting.length > 0 &&
      this.running.length < this.config.maxNumSeqs
    ) {
      const seq = this.waiting[0]!;
      if (!this.blocks.canAllocate(seq)) break;
      this.waiting.shift();
      this.blocks.allocate(seq);
      seq.status = 'running';
      this.running.push(seq);
      const n = Math.min(seq.numUncomputed, budget, chunkCap);
      scheduled.push({ seq, numTokens: n, samples: seq.numComputed + n === seq.numTokens });
      budget -= n;
    }
    return { scheduled, preempted, numTokens: this.config.maxNumBatchedTokens - budget };
  }

  /** Drops a sequence from the running or waiting list (finish or abort) and returns its blocks. */
  remove(seq: Sequence): void {
    const r = this.running.indexOf(seq);
    if (r >= 0) this.running.splice(r, 1);
    const w = this.waiting.indexOf(seq);
    if (w >= 0) this.waiting.splice(w, 1);
    if (seq.blockTable.length > 0) this.blocks.release(seq);
  }

  private preempt(seq: Sequence): void {
    const r = this.running.indexOf(seq);
    if (r >= 0) this.running.splice(r, 1);
    this.blocks.release(seq);
    seq.status = 'waiting';
    seq.preemptions++;
    this.numPreemptions++;
    this.waiting.unshift(seq);
  }
}
