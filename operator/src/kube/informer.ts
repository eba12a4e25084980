/**
 * An informer that stays up. client-node's informer lists, watches and relists on 410 Gone, but stops
 * for good on any other error (API server restarted, connection reset, list refused). This wrapper
 * restarts it with capped exponential backoff, reports whether the cache is in sync, and calls
 * onResync after each successful (re)start so the controller can re-check every object: events may
 * have been missed while it was down.
 */
import { type KubernetesObject, makeInformer } from '@kubernetes/client-node';
import type { KubeClient } from './rest.ts';

export type EventType = 'add' | 'update' | 'delete';

/** What the cache needs of an object; the objects themselves stay plain JSON. */
export interface Named {
  metadata: { name: string; namespace?: string; resourceVersion?: string };
}

export interface InformerOptions<T extends Named> {
  /** For logs and metrics. */
  name: string;
  client: KubeClient;
  /** Collection path, e.g. /apis/apps/v1/deployments. */
  path: string;
  labelSelector?: string;
  onEvent: (type: EventType, obj: T) => void;
  onResync?: () => void;
  onRestart?: (error: unknown, retryInMs: number) => void;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
}

export class ResilientInformer<T extends Named> {
  private readonly opts: InformerOptions<T>;
  private readonly informer;
  private stopped = true;
  private errorSeen = false;
  private failed: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private firstSync: { resolve: () => void; promise: Promise<void> };
  private wake: (() => void) | undefined;
  synced = false;

  constructor(opts: InformerOptions<T>) {
    this.opts = opts;
    const list = () =>
      opts.client.list<KubernetesObject>(opts.path, opts.labelSelector ? { labelSelector: opts.labelSelector } : {});
    this.informer = makeInformer<KubernetesObject>(opts.client.kc, opts.path, list, opts.labelSelector);
    this.informer.on('add', (o) => opts.onEvent('add', o as unknown as T));
    this.informer.on('update', (o) => opts.onEvent('update', o as unknown as T));
    this.informer.on('delete', (o) => opts.onEvent('delete', o as unknown as T));
    this.informer.on('error', (err) => {
      this.errorSeen = true;
      this.lastError = err;
      this.failed?.();
    });
    let resolve = () => {};
    const promise = new Promise<void>((r) => {
      resolve = r;
    });
    this.firstSync = { resolve, promise };
  }

  lastError: unknown;

  get(name: string, namespace?: string): T | undefined {
    return this.informer.get(name, namespace) as T | undefined;
  }

  list(namespace?: string): readonly T[] {
    return this.informer.list(namespace) as unknown as readonly T[];
  }

  /** Starts the list/watch loop; resolves once the cache first holds a full list. */
  start(): Promise<void> {
    if (!this.stopped) return this.firstSync.promise;
    this.stopped = false;
    this.loop = this.run();
    return this.firstSync.promise;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.synced = false;
    this.failed?.();
    this.wake?.();
    await this.informer.stop();
    await this.loop;
  }

  private async run(): Promise<void> {
    const initial = this.opts.initialBackoffMs ?? 500;
    const max = this.opts.maxBackoffMs ?? 30_000;
    let delay = initial;
    while (!this.stopped) {
      this.errorSeen = false;
      const failed = new Promise<void>((resolve) => {
        this.failed = resolve;
      });
      await this.informer.start().catch((e: unknown) => {
        this.errorSeen = true;
        this.lastError = e;
      });
      if (!this.errorSeen && !this.stopped) {
        this.synced = true;
        delay = initial;
        this.firstSync.resolve();
        this.opts.onResync?.();
      }
      await failed;
      this.synced = false;
      if (this.stopped) break;
      await this.informer.stop();
      // Jitter, so informers that failed together do not retry in lockstep.
      const wait = Math.round(delay * (0.8 + Math.random() * 0.4));
      this.opts.onRestart?.(this.lastError, wait);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, wait);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      delay = Math.min(delay * 2, max);
    }
  }
}
