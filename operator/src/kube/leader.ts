/**
 * Leader election on a coordination.k8s.io/v1 Lease, after client-go's leaderelection package: a
 * candidate takes the Lease when it is free or its holder stopped renewing for leaseDuration (measured
 * on the local clock from when this process last saw the record change, so clock skew between machines
 * does not matter); the leader renews every retryPeriod and steps down when it could not renew for
 * renewDeadline (< leaseDuration, so it stops before anyone else may start). Writes use the Lease's
 * resourceVersion, so two candidates never both win. On stop a leader releases the Lease at once.
 */
import { collectionPath, isConflict, isNotFound, type KubeClient, objectPath, RESOURCES } from './rest.ts';

export interface LeaderElectionOptions {
  client: KubeClient;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  onStartedLeading: () => void | Promise<void>;
  onStoppedLeading: () => void | Promise<void>;
  log?: (message: string, fields?: Record<string, unknown>) => void;
}

interface LeaseSpec {
  holderIdentity?: string | null;
  leaseDurationSeconds?: number;
  acquireTime?: string | null;
  renewTime?: string | null;
  leaseTransitions?: number;
}

interface Lease {
  apiVersion: 'coordination.k8s.io/v1';
  kind: 'Lease';
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: LeaseSpec;
}

/** held: this process holds the Lease now; taken: another live holder has it; failed: unknown (retry). */
type Outcome = 'held' | 'taken' | 'failed';

/** A MicroTime: RFC 3339 with exactly six fractional digits (the API refuses a plain Date string). */
export function microTime(d: Date = new Date()): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export class LeaderElector {
  private readonly o: LeaderElectionOptions;
  private leading = false;
  private stopped = false;
  private observed: { record: string; at: number } | undefined;
  private lastRenew = 0;
  private current: Lease | undefined;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  /** When this process last completed a round trip to the API server (any answer counts). */
  lastContact = 0;
  private answered = false;

  constructor(opts: LeaderElectionOptions) {
    this.o = opts;
  }

  get isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Stops competing; a leader first stops its work, then releases the Lease. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.loop;
    if (this.leading) {
      this.leading = false;
      await this.o.onStoppedLeading();
      await this.release();
    }
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const outcome = await this.tryAcquireOrRenew().catch((e: unknown): Outcome => {
        this.o.log?.('lease update failed', { error: String(e) });
        return 'failed';
      });
      if (this.answered) this.lastContact = Date.now();
      this.answered = false;
      if (this.stopped) break;
      const now = Date.now();
      if (outcome === 'held') {
        this.lastRenew = now;
        if (!this.leading) {
          this.leading = true;
          this.o.log?.('became leader', { lease: `${this.o.namespace}/${this.o.name}`, identity: this.o.identity });
          // Not awaited: starting the work (listing every object) may take longer than the renew
          // deadline, and the Lease must keep being renewed meanwhile.
          void Promise.resolve()
            .then(() => this.o.onStartedLeading())
            .catch((e: unknown) => this.o.log?.('starting the leader work failed', { error: String(e) }));
        }
      } else if (this.leading && (outcome === 'taken' || now - this.lastRenew > this.o.renewDeadlineMs)) {
        this.leading = false;
        this.o.log?.(
          outcome === 'taken'
            ? 'lost leadership: another holder has the lease'
            : 'lost leadership: could not renew the lease in time',
          { renewDeadlineMs: this.o.renewDeadlineMs },
        );
        await this.o.onStoppedLeading();
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, this.o.retryPeriodMs * (this.leading ? 1 : 0.8 + Math.random() * 0.4));
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  private leasePath(): string {
    return objectPath(RESOURCES.lease, this.o.namespace, this.o.name);
  }

  private async tryAcquireOrRenew(): Promise<Outcome> {
    // Each Lease call is bounded so an attempt (a read, then a write) ends within renewDeadline: a leader
    // cut off from the API server must find out in time to step down before a standby may take over.
    const timeoutMs = Math.max(1000, Math.floor(this.o.renewDeadlineMs / 2));
    const now = new Date();
    const durationSeconds = Math.ceil(this.o.leaseDurationMs / 1000);
    let lease: Lease;
    try {
      lease = await this.o.client.request<Lease>('GET', this.leasePath(), { timeoutMs });
      this.answered = true;
    } catch (e) {
      if (!isNotFound(e)) throw e;
      this.answered = true;
      const fresh: Lease = {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name: this.o.name, namespace: this.o.namespace },
        spec: {
          holderIdentity: this.o.identity,
          leaseDurationSeconds: durationSeconds,
          acquireTime: microTime(now),
          renewTime: microTime(now),
          leaseTransitions: 0,
        },
      };
      try {
        this.current = await this.o.client.request<Lease>('POST', collectionPath(RESOURCES.lease, this.o.namespace), {
          body: fresh,
          timeoutMs,
        });
        return 'held';
      } catch (err) {
        if (isConflict(err)) return 'failed'; // another candidate created it first
        throw err;
      }
    }
    this.current = lease;

    const spec = lease.spec ?? {};
    const record = JSON.stringify([spec.holderIdentity, spec.renewTime, spec.leaseDurationSeconds]);
    if (this.observed?.record !== record) this.observed = { record, at: Date.now() };
    const holder = spec.holderIdentity ?? '';
    const mine = holder === this.o.identity;
    const heldFor = (spec.leaseDurationSeconds ?? durationSeconds) * 1000;
    if (holder !== '' && !mine && Date.now() < this.observed.at + heldFor) return 'taken';

    const updated: Lease = {
      ...lease,
      spec: {
        holderIdentity: this.o.identity,
        leaseDurationSeconds: durationSeconds,
        acquireTime: mine ? (spec.acquireTime ?? microTime(now)) : microTime(now),
        renewTime: microTime(now),
        leaseTransitions: mine ? (spec.leaseTransitions ?? 0) : (spec.leaseTransitions ?? 0) + 1,
      },
    };
    try {
      this.current = await this.o.client.request<Lease>('PUT', this.leasePath(), { body: updated, timeoutMs });
      return 'held';
    } catch (e) {
      if (isConflict(e)) return 'failed';
      throw e;
    }
  }

  /** Gives the Lease up so a standby takes over without waiting for it to expire. */
  private async release(): Promise<void> {
    const lease = this.current;
    if (!lease || lease.spec.holderIdentity !== this.o.identity) return;
    try {
      await this.o.client.replace(this.leasePath(), {
        ...lease,
        spec: { ...lease.spec, holderIdentity: null, leaseDurationSeconds: 1, renewTime: microTime() },
      });
      this.o.log?.('released the lease', { lease: `${this.o.namespace}/${this.o.name}` });
    } catch (e) {
      this.o.log?.('could not release the lease; it expires on its own', { error: String(e) });
    }
  }
}
