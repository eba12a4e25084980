/**
 * The engine loop: schedule → run one native step → process the sampled tokens → repeat while there is
 * work. Requests come in as token ids with sampling parameters and go out as streams of per-sequence
 * events. Knows nothing of HTTP.
 */
import type { LoadedModel } from '../model/load.ts';
import type { BackendInfo, EngineOptions, NativeEngine } from '../native/index.ts';
import { AsyncQueue } from './async-queue.ts';
import { buildBatch } from './batch.ts';
import { BlockManager } from './block-manager.ts';
import { OutputProcessor } from './output-processor.ts';
import type { SamplingParams } from './sampling-params.ts';
import { Scheduler } from './scheduler.ts';
import { type FinishReason, Sequence } from './sequence.ts';

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
  firstToken: number | undefined;
  finished: number;
  tokenTimes: number[];
  promptTokens: number;
  completionTokens: number;
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
}

interface SeqState {
  seq: Sequence;
  index: number;
  out: OutputProcessor;
  queue: AsyncQueue<SequenceEvent>;
  request: RequestState;
  arrival: number;
  firstToken: number | undefined;
  tokenTimes: number[];
}

interface RequestState {
  seqs: SeqState[];
  open: number;
}

export class EngineError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EngineError';
  }
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
  /** cumulative counters for metrics */
  readonly counters = { promptTokens: 0, generationTokens: 0, steps: 0 };
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
    const maxModelLen = Math.min(
      config.maxModelLen ?? model.config.maxPositionEmbeddings,
      model.config.maxPositionEmbeddings,
    );
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
    const n = req.n ?? 1;
    const request: RequestState = { seqs: [], open: n };
    const queue = new AsyncQueue<SequenceEvent>(() => this.abortRequest(request));
    const arrival = now();
    for (let i = 0; i < n; i++) {
      const baseSeed = req.params.seed ?? Math.floor(Math.random() * 2 ** 52);
      const seq = new Sequence(this.nextSeqId++, req.prompt, req.params, baseSeed + i);
      const state: SeqState = {
        seq,
        index: i,
        out: new OutputProcessor(this.model.tokenizer, req.params, this.model.tokenizer.info.eosTokenIds),
        queue,
        request,
        arrival,
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

  /** Resolves when no request is waiting or running. */
  idle(): Promise<void> {
    if (!this.scheduler.hasWork) return Promise.resolve();
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

  private async loop(): Promise<void> {
    try {
      while (this.scheduler.hasWork) {
        const plan = this.scheduler.schedule();
        if (plan.scheduled.length === 0) {
          throw new EngineError('scheduler made no progress: a waiting request cannot fit the KV cache');
        }
        const { batch, sampled } = buildBatch(plan.scheduled, this.info.blockSize);
        const t0 = now();
        const result = await this.native.step(batch);
        const t1 = now();
        this.counters.steps++;
        this.observer.onStep?.({ numTokens: plan.numTokens, numSeqs: plan.scheduled.length, seconds: t1 - t0 });
        for (const s of plan.scheduled) {
          // A sequence aborted while the step ran has already returned its blocks.
          if (s.seq.isFinished) continue;
          s.seq.numComputed += s.numTokens;
          this.blocks.cacheComputedBlocks(s.seq);
        }
        for (const [r, s] of sampled.entries()) this.acceptToken(s.seq, result, r, batch.numTopLogprobs ?? 0, t1);
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

  private acceptToken(
    seq: Sequence,
    result: { tokens: Int32Array; logprobs: Float32Array; topIds: Int32Array; topLogprobs: Float32Array },
    r: number,
    k: number,
    t: number,
  ): void {
    const state = this.states.get(seq.id);
    if (!state || seq.isFinished) return;
    const token = result.tokens[r]!;
    seq.tokens.push(token);
    this.counters.generationTokens++;
    if (state.firstToken === undefined) {
      state.firstToken = t;
      this.counters.promptTokens += seq.numPromptTokens;
    }
    state.tokenTimes.push(t);
    let logprobs: TokenLogprob[] | undefined;
    const want = seq.params.logprobs;
    if (want !== undefined) {
      const top: { token: number; logprob: number }[] = [];
      for (let j = 0; j < Math.min(want, k); j++)
        top.push({ token: result.topIds[r * k + j]!, logprob: result.topLogprobs[r * k + j]! });
      logprobs = [{ token, logprob: result.logprobs[r]!, top }];
    }
    const outcome = state.out.push(token, seq.numTokens >= this.config.maxModelLen);
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
    this.scheduler.remove(seq);
    this.states.delete(seq.id);
    const end = now();
    this.observer.onSequenceFinished?.({
      arrival: state.arrival,
      firstToken: state.firstToken,
      finished: end,
      tokenTimes: state.tokenTimes,
      promptTokens: seq.numPromptTokens,
      completionTokens: seq.numOutputTokens,
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
    for (const state of [...this.states.values()]) {
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
  }
}
