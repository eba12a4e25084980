/**
 * Records core/v1 Events on objects, as `kubectl describe` shows them. Repeats of the same reason and
 * message on the same object within a window bump the existing Event's count instead of adding one.
 * Recording never fails nor delays the caller: Events are written in the background (a few at a time)
 * because an Event is a courtesy; the status conditions are the record.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from '../log.ts';
import { collectionPath, isNotFound, type KubeClient, objectPath, RESOURCES } from './rest.ts';

export interface InvolvedObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; uid?: string; resourceVersion?: string };
}

const DEDUP_WINDOW_MS = 10 * 60_000;
const MAX_TRACKED = 4096;

export class EventRecorder {
  private readonly client: KubeClient;
  private readonly component: string;
  private readonly instance: string;
  private readonly log: Logger;
  private readonly recent = new Map<string, { name: string; namespace: string; count: number; at: number }>();

  constructor(client: KubeClient, component: string, instance: string, log: Logger) {
    this.client = client;
    this.component = component;
    this.instance = instance;
    this.log = log;
  }

  private readonly pending: (() => Promise<void>)[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  private static readonly PARALLEL = 4;
  private static readonly MAX_PENDING = 10_000;

  /** Queues an Event; returns at once. */
  record(obj: InvolvedObject, type: 'Normal' | 'Warning', reason: string, message: string): void {
    if (this.pending.length >= EventRecorder.MAX_PENDING) return; // an API server this far behind has other problems
    this.pending.push(() => this.write(obj, type, reason, message));
    this.pump();
  }

  /** Waits for queued Events (at shutdown), at most timeoutMs. */
  async flush(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ((this.pending.length > 0 || this.inFlight.size > 0) && Date.now() < deadline) {
      await Promise.race([...this.inFlight, new Promise((r) => setTimeout(r, 50))]);
    }
  }

  private pump(): void {
    while (this.inFlight.size < EventRecorder.PARALLEL && this.pending.length > 0) {
      const job = this.pending.shift() as () => Promise<void>;
      const p = job().finally(() => {
        this.inFlight.delete(p);
        this.pump();
      });
      this.inFlight.add(p);
    }
  }

  private async write(obj: InvolvedObject, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void> {
    const namespace = obj.metadata.namespace ?? 'default';
    const key = `${obj.metadata.uid}\u0000${reason}\u0000${message}`;
    const now = new Date();
    const seen = this.recent.get(key);
    try {
      if (seen && now.getTime() - seen.at < DEDUP_WINDOW_MS) {
        seen.count++;
        seen.at = now.getTime();
        await this.client.mergePatch(objectPath(RESOURCES.event, seen.namespace, seen.name), {
          count: seen.count,
          lastTimestamp: now.toISOString().replace(/\.\d+Z$/, 'Z'),
        });
        return;
      }
    } catch (e) {
      if (!isNotFound(e)) this.log.warn('could not update event', { reason, error: String(e) });
      this.recent.delete(key);
    }
    const name = `${obj.metadata.name}.${randomBytes(8).toString('hex')}`;
    const ts = now.toISOString().replace(/\.\d+Z$/, 'Z');
    try {
      await this.client.create(collectionPath(RESOURCES.event, namespace), {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name, namespace },
        involvedObject: {
          apiVersion: obj.apiVersion,
          kind: obj.kind,
          name: obj.metadata.name,
          namespace,
          uid: obj.metadata.uid,
          resourceVersion: obj.metadata.resourceVersion,
        },
        type,
        reason,
        message: message.slice(0, 1024),
        count: 1,
        firstTimestamp: ts,
        lastTimestamp: ts,
        source: { component: this.component },
        reportingComponent: this.component,
        reportingInstance: this.instance,
      });
      if (this.recent.size >= MAX_TRACKED) this.recent.delete(this.recent.keys().next().value as string);
      this.recent.set(key, { name, namespace, count: 1, at: now.getTime() });
    } catch (e) {
      this.log.warn('could not record event', { reason, error: String(e) });
    }
  }
}
