/**
 * The engine loop: schedule → submit a native step → process the sampled tokens → repeat while there is
 * work, with the next step submitted before the current one's result is processed (async scheduling).
 * Requests come in as token ids with sampling parameters and go out as streams of per-sequence events.
 * Knows nothing of HTTP.
 */
import type { LoadedModel } from '../model/load.ts';
import type { BackendInfo, EngineOptions, NativeEngine, StepResult } from '../native/index.ts';
import { AsyncQueue } from './async-queue.ts';
import { BlockManager } from './block-manager.ts';
import { OutputProcessor } from './output-processor.ts';
import { endingTokens } from './sampling-params.ts';
import { Scheduler } from './scheduler.ts';
import { type FinishReason, Sequence } from './sequence.ts';
import { type StepEntry, type SubmittedStep, sampledToken, submitStep } from './submitted-step.ts';
import {
  type EngineConfig,
  EngineError,
  type EngineObserver,
  type GenerateRequest,
  type SequenceEvent,
  type TokenLogprob,
} from './types.ts';

export type {
  EngineConfig,
  EngineObserver,
  FinishedSequenceStats,
  GenerateRequest,
  SequenceEvent,
  TokenLogprob,
} from './types.ts';
export { EngineError } from './types.ts';

interface SeqState {
  seq: Sequence;
  index: number;
  out: OutputProcessor;
  queue: AsyncQueue<SequenceEvent>;
  request: RequestState;
  arrival: number;
  scheduled: number | undefined;
  firstToken: number | undefined;
  tokenTimes: number[];
}

interface RequestState {
  seqs: SeqState[];
  open: number;
}

const now = () => performance.now() / 1000;

export class Engine {
  readonly model: LoadedModel;
  readonly info: BackendInfo;
  readonly config: EngineConfig;
  readonly blocks: BlockManager;
  readonly scheduler: Scheduler;
  private readonly native: NativeEngine;
  private readonly states = new Map<number, SeqState>();
  private nextSeqId = 1;
  private looping = false;
  private fatal: Error | undefined;
  private observer: EngineObserver = {};
  /** cumulative counters: for metrics, and to show what the pipeline does */
  readonly counters = {
    promptTokens: 0,
    generationTokens: 0,
    steps: 0,
    /** steps submitted while the previous one was still unprocessed (prepared during it) */
    pipelinedSteps: 0,
    /** tokens sampled for sequences that had finished or been preempted meanwhile, thrown away */
    discardedTokens: 0,
  };
  private lastStepEnd = 0;
  private failureListeners: ((e: Error) => void)[] = [];
  /** finished sequences whose blocks wait for their last submitted step */
  private readonly awaitingRelease = new Set<Sequence>();
  private idleWaiters: (() => void)[] = [];

  private constructor(native: NativeEngine, model: LoadedModel, info: BackendInfo, config: EngineConfig) {
    this.native = native;
    this.model = model;
    this.info = info;
    this.config = config;
    this.blocks = new BlockManager(info.numBlocks, info.blockSize, config.enablePrefixCaching);
    this.scheduler = new Scheduler(this.blocks, {
      maxNumBatchedTokens: config.maxNumBatchedTokens,
      maxNumSeqs: config.maxNumSeqs,
    });
  }

  /** Loads the model into a native engine and sizes the cache; rejects with the loader's message. */
  static async create(
    native: NativeEngine,
    model: LoadedModel,
    options: EngineOptions,
    config: Omit<EngineConfig, 'maxModelLen'> & { maxModelLen?: number },
  ): Promise<Engine> {
    let info: BackendInfo;
    try {
      info = await native.load({ config: model.config, tensors: model.tensors, options });
    } catch (e) {
      native.close();
      // The native loader's message already names the file and the problem.
      throw new EngineError((e as Error).message);
    }
    const capacity = info.numBlocks * info.blockSize;
    const modelMax = model.config.maxPositionEmbeddings;
    if (config.maxModelLen !== undefined && config.maxModelLen > modelMax) {
      native.close();
      throw new EngineError(
        `--max-model-len ${config.maxModelLen} is longer than the model's context (${modelMax} positions in its config)`,
      );
    }
    const maxModelLen = config.maxModelLen ?? modelMax;
    if (capacity < maxModelLen && config.maxModelLen !== undefined) {
      native.close();
      throw new EngineError(
        `the KV cache holds ${capacity} tokens, fewer than --max-model-len ${maxModelLen}: lower --max-model-len or give the cache more memory`,
      );
    }
    return new Engine(native, model, info, { ...config, maxModelLen: Math.min(maxModelLen, capacity) });
  }

  setObserver(o: EngineObserver): void {
    this.observer = o;
  }

  /** Calls `listener` once if the engine fails for good (a native step threw); every open request has
   *  then already received an error event. */
  onFailure(listener: (e: Error) => void): void {
    if (this.fatal) queueMicrotask(() => listener(this.fatal!));
    else this.failureListeners.push(listener);
  }

  /** Ends every request now (finish reason "abort"): used when a drain runs out of time. */
  abortAll(): void {
    for (const state of [...this.states.values()]) this.finishSeq(state, 'abort', undefined, true);
  }

  get failed(): Error | undefined {
    return this.fatal;
  }

  get numRunning(): number {
    return this.scheduler.running.length;
  }

  get numWaiting(): number {
    return this.scheduler.waiting.length;
  }

  /** Starts generation; the returned stream yields events for all n sequences and ends when all finish.
   *  Stopping iteration early aborts the request. */
  generate(req: GenerateRequest): AsyncIterableIterator<SequenceEvent> {
    if (this.fatal) throw new EngineError(`engine failed: ${this.fatal.message}`);
    // The server checks these with friendlier messages; a request that breaks them would never finish.
    if (req.prompt.length === 0) throw new RangeError('the prompt is empty');
    if (req.prompt.length >= this.config.maxModelLen)
      throw new RangeError(
        `the prompt (${req.prompt.length} tokens) leaves no room below max model len ${this.config.maxModelLen}`,
      );
    if (!(req.params.maxTokens >= 1)) throw new RangeError('maxTokens must be at least 1');
    const n = req.n ?? 1;
    const request: RequestState = { seqs: [], open: n };
    const queue = new AsyncQueue<SequenceEvent>(() => this.abortRequest(request));
    const arrival = now();
    for (let i = 0; i < n; i++) {
      const baseSeed = req.params.seed ?? Math.floor(Math.random() * 2 ** 52);
      const seq = new Sequence(this.nextSeqId++, req.prompt, req.params, baseSeed + i, this.config.maxModelLen);
      seq.endingTokens = endingTokens(req.params, this.model.tokenizer.info.eosTokenIds);
      const state: SeqState = {
        seq,
        index: i,
        out: new OutputProcessor(this.model.tokenizer, req.params, this.model.tokenizer.info.eosTokenIds),
        queue,
        request,
        arrival,
        scheduled: undefined,
        firstToken: undefined,
        tokenTimes: [],
      };
      request.seqs.push(state);
      this.states.set(seq.id, state);
      this.scheduler.add(seq);
    }
    this.kick();
    return queue;
  }

  /** Resolves when no request is waiting or running and no step is in flight. */
  idle(): Promise<void> {
    if (!this.looping && !this.scheduler.hasWork) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  close(): void {
    this.native.close();
  }

  private abortRequest(request: RequestState): void {
    for (const s of request.seqs) {
      if (!s.seq.isFinished) this.finishSeq(s, 'abort', undefined, false);
    }
  }

  private kick(): void {
    if (this.looping || this.fatal) return;
    this.looping = true;
    void this.loop();
  }

  /**
   * The loop keeps the native engine busy: step k+1 is scheduled, built and queued on the native engine
   * (which runs steps in order) before step k's result is awaited, with placeholders for the tokens
   * step k samples. While step k+1 runs, step k's tokens are processed and step k+2 is prepared.
   */
  private async loop(): Promise<void> {
    let inFlight: SubmittedStep | undefined;
    try {
      const pipelined = this.config.asyncScheduling !== false;
      for (;;) {
        const next = inFlight && !pipelined ? undefined : this.submitNext(inFlight !== undefined);
        if (!inFlight && !next) {
          if (this.scheduler.hasWork)
            throw new EngineError('scheduler made no progress: a waiting request cannot fit the KV cache');
          break;
        }
        if (inFlight) this.process(inFlight, await inFlight.result);
        inFlight = next;
      }
    } catch (e) {
      this.fail(e as Error);
    } finally {
      this.looping = false;
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  /** Schedules and submits the next step; undefined when there is nothing to run now. */
  private submitNext(overlapping: boolean): SubmittedStep | undefined {
    if (!this.scheduler.hasWork) return undefined;
    const plan = this.scheduler.schedule();
    if (plan.scheduled.length === 0) return undefined;
    const t = now();
    for (const s of plan.scheduled) {
      const state = this.states.get(s.seq.id);
      if (state && state.scheduled === undefined) state.scheduled = t;
    }
    this.counters.steps++;
    if (overlapping) this.counters.pipelinedSteps++;
    return submitStep(this.native, plan.scheduled, plan.numTokens, this.info.blockSize, t);
  }

  /** Takes in a finished step: registers computed blocks, accepts sampled tokens, frees what is done. */
  private process(step: SubmittedStep, result: StepResult): void {
    const t = now();
    this.observer.onStep?.({
      numTokens: step.numTokens,
      numSeqs: step.entries.length,
      seconds: t - Math.max(step.submittedAt, this.lastStepEnd),
    });
    this.lastStepEnd = t;
    for (const e of step.entries) {
      const { seq } = e;
      seq.inFlight--;
      if (e.epoch !== seq.epoch) {
        // preempted or finished since: the work is void (a finished sequence's extra token is dropped)
        if (e.row >= 0) this.counters.discardedTokens++;
      } else {
        this.blocks.cacheComputedBlocks(seq, e.computedAfter);
        if (e.row >= 0) this.acceptToken(seq, e, result, step.numTopLogprobs, t);
      }
      if (seq.isFinished && seq.inFlight === 0) this.releaseBlocks(seq);
    }
  }

  private releaseBlocks(seq: Sequence): void {
    this.awaitingRelease.delete(seq);
    if (seq.blockTable.length > 0) this.blocks.release(seq);
  }

  private acceptToken(seq: Sequence, e: StepEntry, result: StepResult, k: number, t: number): void {
    const state = this.states.get(seq.id);
    if (!state) return;
    const { token, logprobs } = sampledToken(e, result, k);
    seq.tokens[e.tokenIndex] = token;
    this.counters.generationTokens++;
    if (state.firstToken === undefined) {
      state.firstToken = t;
      this.counters.promptTokens += seq.numPromptTokens;
    }
    state.tokenTimes.push(t);
    const outcome = state.out.push(token, e.tokenIndex + 1 >= this.config.maxModelLen);
    if (outcome.finished) {
      this.finishSeq(state, outcome.finishReason ?? 'stop', outcome.stopReason, true, {
        tokenIds: [token],
        textDelta: outcome.delta,
        logprobs,
      });
    } else {
      state.queue.push({ index: state.index, tokenIds: [token], textDelta: outcome.delta, logprobs, finished: false });
    }
  }

  private finishSeq(
    state: SeqState,
    reason: FinishReason,
    stopReason: string | number | undefined,
    emit: boolean,
    last?: { tokenIds: number[]; textDelta: string; logprobs: TokenLogprob[] | undefined },
  ): void {
    const { seq } = state;
    seq.status = 'finished';
    seq.finishReason = reason;
    seq.epoch++;
    seq.dropPending();
    this.scheduler.detach(seq);
    // A submitted step may still write its blocks: they return once the last such step is processed.
    if (seq.inFlight === 0) this.releaseBlocks(seq);
    else this.awaitingRelease.add(seq);
    this.states.delete(seq.id);
    const end = now();
    this.observer.onSequenceFinished?.({
      arrival: state.arrival,
      scheduled: state.scheduled,
      firstToken: state.firstToken,
      finished: end,
      tokenTimes: state.tokenTimes,
      promptTokens: seq.numPromptTokens,
      completionTokens: seq.numOutputTokens,
      cachedTokens: seq.numCachedTokens,
      preemptions: seq.preemptions,
      reason,
    });
    if (emit) {
      const ev: SequenceEvent = {
        index: state.index,
        tokenIds: last?.tokenIds ?? [],
        textDelta: last?.textDelta ?? '',
        logprobs: last?.logprobs,
        finished: true,
        finishReason: reason,
        usage: {
          promptTokens: seq.numPromptTokens,
          completionTokens: seq.numOutputTokens,
          cachedTokens: seq.numCachedTokens,
        },
      };
      if (stopReason !== undefined) ev.stopReason = stopReason;
      state.queue.push(ev);
    }
    if (--state.request.open === 0) state.queue.close();
  }

  private fail(e: Error): void {
    this.fatal = e;
    // No step will be processed any more: nothing can write the blocks now.
    for (const seq of [...this.awaitingRelease]) this.releaseBlocks(seq);
    for (const state of [...this.states.values()]) {
      state.seq.inFlight = 0;
      state.queue.push({
        index: state.index,
        tokenIds: [],
        textDelta: '',
        logprobs: undefined,
        finished: true,
        finishReason: 'error',
      });
      this.finishSeq(state, 'error', undefined, false);
    }
    const listeners = this.failureListeners;
    this.failureListeners = [];
    for (const l of listeners) l(e);
  }
}
