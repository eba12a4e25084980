/**
 * A per-key work queue: keys wait in FIFO order, each key is processed by at most one worker at a time,
 * a key added while it is being processed runs once more afterwards, and a key added many times while
 * waiting runs once (level-triggered: the handler reads the current state, not the events). Failures
 * retry with per-key exponential backoff; a handler may also ask to run again after a delay.
 */

export interface QueueResult {
  /** Run this key again after so many milliseconds (periodic checks), even on success. */
  requeueAfterMs?: number;
}

export interface QueueOptions {
  concurrency: number;
  handler: (key: string) => Promise<QueueResult | undefined>;
  /** First retry delay after a failure; doubles per consecutive failure of the same key. */
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  onError?: (key: string, error: unknown, retryInMs: number) => void;
  /** Called whenever the number of waiting keys changes. */
  onDepth?: (depth: number) => void;
  /** Called when a key starts, with the milliseconds it waited since it was first added. */
  onStart?: (key: string, waitedMs: number) => void;
}

export class WorkQueue {
  private readonly opts: Required<Omit<QueueOptions, 'onError' | 'onDepth' | 'onStart'>> &
    Pick<QueueOptions, 'onError' | 'onDepth' | 'onStart'>;
  /** Keys waiting to run, in order. */
  private readonly waiting: string[] = [];
  /** Keys that need a run: waiting, or processing and added again. Value: when first added. */
  private readonly dirty = new Map<string, number>();
  private readonly processing = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly inFlight = new Set<Promise<void>>();
  private running = false;
  private idleWaiters: (() => void)[] = [];

  constructor(opts: QueueOptions) {
    this.opts = { baseBackoffMs: 500, maxBackoffMs: 60_000, ...opts };
  }

  get depth(): number {
    return this.waiting.length;
  }

  get active(): number {
    return this.processing.size;
  }

  start(): void {
    this.running = true;
    this.pump();
  }

  /** Stops taking keys, cancels delayed adds and waits for the running handlers to finish. */
  async stop(): Promise<void> {
    this.running = false;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    await Promise.allSettled([...this.inFlight]);
  }

  /** Forgets every waiting key (after stop, before a restart with fresh state). */
  clear(): void {
    this.waiting.length = 0;
    this.dirty.clear();
    this.failures.clear();
    this.opts.onDepth?.(0);
  }

  add(key: string): void {
    if (this.dirty.has(key)) return;
    this.dirty.set(key, Date.now());
    if (!this.processing.has(key)) {
      this.waiting.push(key);
      this.opts.onDepth?.(this.waiting.length);
      this.pump();
    }
  }

  /** Adds the key after a delay; a sooner delayed add of the same key wins. */
  addAfter(key: string, delayMs: number): void {
    if (!this.running) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    const existing = this.timers.get(key) as (NodeJS.Timeout & { dueAt?: number }) | undefined;
    const dueAt = Date.now() + delayMs;
    if (existing?.dueAt !== undefined && existing.dueAt <= dueAt) return;
    if (existing) clearTimeout(existing);
    const t = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, delayMs) as NodeJS.Timeout & { dueAt?: number };
    t.dueAt = dueAt;
    t.unref();
    this.timers.set(key, t);
  }

  /** Resolves when nothing waits or runs (tests and shutdown). */
  idle(): Promise<void> {
    if (this.waiting.length === 0 && this.processing.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private pump(): void {
    while (this.running && this.processing.size < this.opts.concurrency && this.waiting.length > 0) {
      const key = this.waiting.shift() as string;
      const addedAt = this.dirty.get(key) ?? Date.now();
      this.dirty.delete(key);
      this.processing.add(key);
      this.opts.onDepth?.(this.waiting.length);
      this.opts.onStart?.(key, Date.now() - addedAt);
      const p = this.process(key).finally(() => this.inFlight.delete(p));
      this.inFlight.add(p);
    }
    if (this.waiting.length === 0 && this.processing.size === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  private async process(key: string): Promise<void> {
    let retryIn: number | undefined;
    try {
      const result = await this.opts.handler(key);
      this.failures.delete(key);
      retryIn = result?.requeueAfterMs;
    } catch (error) {
      const n = (this.failures.get(key) ?? 0) + 1;
      this.failures.set(key, n);
      retryIn = Math.min(this.opts.baseBackoffMs * 2 ** (n - 1), this.opts.maxBackoffMs);
      this.opts.onError?.(key, error, retryIn);
    } finally {
      this.processing.delete(key);
      if (this.dirty.has(key)) {
        this.waiting.push(key);
        this.opts.onDepth?.(this.waiting.length);
      }
    }
    if (retryIn !== undefined) this.addAfter(key, retryIn);
    this.pump();
  }
}
