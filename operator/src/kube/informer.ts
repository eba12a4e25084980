/**
 * An informer: a cache of one kind of object kept current by list + watch, with callbacks per change.
 * It never gives up: a watch that ends is resumed from the last resourceVersion; a failure (API server
 * restarted, connection reset, list refused) is retried with capped exponential backoff; 410 Gone
 * (the version was compacted away) relists, and the relist reports the differences as events. After
 * every (re)list onResync lets the controller re-check every object.
 */
import { ApiError, type KubeClient, type WatchEvent } from './rest.ts';

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
  /** old: the cached object an update replaces. */
  onEvent: (type: EventType, obj: T, old?: T) => void;
  onResync?: () => void;
  onRestart?: (error: unknown, retryInMs: number) => void;
  /**
   * Trims each object before it is cached (and handed to onEvent): keep only what the controller reads.
   * Objects arrive with managedFields and full specs; at hundreds of objects per kind the difference is
   * most of the operator's memory.
   */
  transform?: (obj: T) => T;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
}

const key = (namespace: string | undefined, name: string) => `${namespace ?? ''}/${name}`;

export class ResilientInformer<T extends Named> {
  private readonly o: InformerOptions<T>;
  private readonly store = new Map<string, T>();
  private resourceVersion = '';
  private stopped = true;
  private abort: AbortController | undefined;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private firstSync!: Promise<void>;
  private resolveFirstSync!: () => void;
  synced = false;
  lastError: unknown;

  constructor(opts: InformerOptions<T>) {
    this.o = opts;
  }

  get(name: string, namespace?: string): T | undefined {
    return this.store.get(key(namespace, name));
  }

  list(namespace?: string): readonly T[] {
    const all = [...this.store.values()];
    return namespace === undefined ? all : all.filter((o) => o.metadata.namespace === namespace);
  }

  /** Starts list/watch; resolves once the cache first holds a full list. */
  start(): Promise<void> {
    if (!this.stopped) return this.firstSync;
    this.stopped = false;
    this.firstSync = new Promise((resolve) => {
      this.resolveFirstSync = resolve;
    });
    this.loop = this.run();
    return this.firstSync;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.synced = false;
    this.abort?.abort();
    this.wake?.();
    await this.loop;
    this.resolveFirstSync?.();
  }

  private selector(): Record<string, string> {
    return this.o.labelSelector ? { labelSelector: this.o.labelSelector } : {};
  }

  private async relist(): Promise<void> {
    const list = await this.o.client.list<T>(this.o.path, this.selector());
    const trim = this.o.transform ?? ((o: T) => o);
    const fresh = new Map(list.items.map((o) => [key(o.metadata.namespace, o.metadata.name), trim(o)]));
    for (const [k, old] of this.store) {
      if (!fresh.has(k)) {
        this.store.delete(k);
        this.o.onEvent('delete', old);
      }
    }
    for (const [k, obj] of fresh) {
      const old = this.store.get(k);
      this.store.set(k, obj);
      if (!old) this.o.onEvent('add', obj);
      else if (old.metadata.resourceVersion !== obj.metadata.resourceVersion) this.o.onEvent('update', obj, old);
    }
    this.resourceVersion = list.metadata.resourceVersion ?? '';
    this.synced = true;
    this.resolveFirstSync();
    this.o.onResync?.();
  }

  private apply(e: WatchEvent<T>): void {
    if (e.type === 'ERROR') {
      const status = e.object as unknown as { code?: number; message?: string };
      throw new ApiError('WATCH', this.o.path, status.code ?? 500, status);
    }
    if (e.object.metadata?.resourceVersion) this.resourceVersion = e.object.metadata.resourceVersion;
    if (e.type === 'BOOKMARK') return;
    const obj = this.o.transform ? this.o.transform(e.object) : e.object;
    const k = key(obj.metadata.namespace, obj.metadata.name);
    if (e.type === 'DELETED') {
      this.store.delete(k);
      this.o.onEvent('delete', obj);
    } else {
      const old = this.store.get(k);
      this.store.set(k, obj);
      if (old) this.o.onEvent('update', obj, old);
      else this.o.onEvent('add', obj);
    }
  }

  private async run(): Promise<void> {
    const initial = this.o.initialBackoffMs ?? 500;
    const max = this.o.maxBackoffMs ?? 30_000;
    let delay = initial;
    while (!this.stopped) {
      try {
        if (!this.resourceVersion) await this.relist();
        else if (!this.synced) {
          // Resumed after a failure: the cache is current again once the watch is accepted; a relist
          // would be needed only on 410, which the watch reports.
          this.synced = true;
          this.o.onResync?.();
        }
        this.abort = new AbortController();
        // The server ends each watch after timeoutSeconds; bookmarks keep the version fresh meanwhile.
        await this.o.client.watch<T>(
          this.o.path,
          {
            ...this.selector(),
            resourceVersion: this.resourceVersion,
            allowWatchBookmarks: true,
            timeoutSeconds: 240 + Math.floor(Math.random() * 60),
          },
          (e) => {
            this.apply(e);
            delay = initial;
          },
          this.abort.signal,
        );
      } catch (error) {
        if (this.stopped) break;
        this.synced = false;
        this.lastError = error;
        if (error instanceof ApiError && error.status === 410) {
          this.resourceVersion = ''; // compacted: relist now
          continue;
        }
        // Jitter, so informers that failed together do not retry in lockstep.
        const wait = Math.round(delay * (0.8 + Math.random() * 0.4));
        this.o.onRestart?.(error, wait);
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
}
