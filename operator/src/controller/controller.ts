/**
 * The InferenceDeployment controller: informers on the CRs and on everything they own feed a per-key
 * queue; workers run reconcile. start() builds fresh informers, so a controller can be stopped (lost
 * leadership) and started again (leadership regained) within one process.
 */
import type { InferenceDeployment } from '../api/types.ts';
import { Autoscaler } from '../autoscaler/autoscaler.ts';
import type { HpaView } from '../autoscaler/hpa-status.ts';
import type { TargetResolver } from '../autoscaler/targets.ts';
import type { EventRecorder } from '../kube/events.ts';
import { type EventType, ResilientInformer } from '../kube/informer.ts';
import { ApiError, collectionPath, type KubeClient, RESOURCES, type Resource } from '../kube/rest.ts';
import type { Logger } from '../log.ts';
import type { OperatorMetrics } from '../metrics.ts';
import { MANAGED_BY, NAME_LABEL } from '../plan/names.ts';
import type { PlanOptions } from '../plan/plan.ts';
import { WorkQueue } from './queue.ts';
import { AppliedMemo, type ChildObject, type ReconcileDeps, reconcile } from './reconcile.ts';
import { type DeploymentView, type PodView, reconcilerStatus, sameJson } from './status.ts';
import { trimCustomResource, trimDeployment, trimHorizontalPodAutoscaler, trimPod, trimToMetadata } from './trim.ts';

export interface ControllerOptions {
  client: KubeClient;
  log: Logger;
  metrics: OperatorMetrics;
  events: EventRecorder;
  planOptions: PlanOptions;
  /** Watch one namespace; undefined watches all. */
  namespace?: string | undefined;
  concurrency: number;
  /** Re-check every InferenceDeployment this often, events or not. */
  resyncMs?: number;
  /** The built-in autoscaler (runs while the controller does, i.e. on the leader). */
  autoscaler: { intervalMs: number; targets: TargetResolver };
}

type Labelled = ChildObject & { metadata: { labels?: Record<string, string> } };
const CHILD_SELECTOR = `app.kubernetes.io/managed-by=${MANAGED_BY}`;

export class Controller {
  private readonly o: ControllerOptions;
  private readonly memo = new AppliedMemo();
  private queue: WorkQueue | undefined;
  private informers: ResilientInformer<never>[] = [];
  private crs: ResilientInformer<InferenceDeployment & Labelled> | undefined;
  private resync: NodeJS.Timeout | undefined;
  private autoscaler: Autoscaler | undefined;
  private running = false;

  constructor(opts: ControllerOptions) {
    this.o = opts;
  }

  /** True while running with every cache in sync. */
  get synced(): boolean {
    return this.running && this.informers.every((i) => i.synced);
  }

  get queueDepth(): number {
    return this.queue?.depth ?? 0;
  }

  private informer<T extends Labelled>(
    name: string,
    resource: Resource,
    toKey: (obj: T, type: EventType, old?: T) => string | undefined,
    transform: (obj: T) => T,
    labelSelector?: string,
  ): ResilientInformer<T> {
    const { log, metrics } = this.o;
    const inf: ResilientInformer<T> = new ResilientInformer<T>({
      name,
      client: this.o.client,
      path: collectionPath(resource, this.o.namespace),
      ...(labelSelector ? { labelSelector } : {}),
      transform,
      onEvent: (type, obj, old) => {
        const key = toKey(obj, type, old);
        if (key) this.queue?.add(key);
      },
      onResync: () => {
        // After a (re)start events may have been missed: check every object's owner again.
        for (const obj of inf.list()) {
          const key = toKey(obj, 'update');
          if (key) this.queue?.add(key);
        }
      },
      onRestart: (error, retryInMs) => {
        metrics.informerRestarts.inc({ resource: name });
        const missingCrd =
          resource === RESOURCES.inferenceDeployment && error instanceof ApiError && error.status === 404;
        log.warn(
          missingCrd
            ? 'the InferenceDeployment CRD is not installed (kubectl apply --server-side -f crds/); retrying'
            : 'informer failed; restarting',
          { resource: name, error: String(error), retryInMs },
        );
      },
    });
    this.informers.push(inf as unknown as ResilientInformer<never>);
    return inf;
  }

  async start(): Promise<void> {
    if (this.running) return;
    const { log, metrics } = this.o;
    this.informers = [];
    this.memo.clear();
    const queue = new WorkQueue({
      concurrency: this.o.concurrency,
      handler: async (key) => {
        const end = metrics.reconcileDuration.startTimer();
        try {
          const result = await reconcile(deps, key);
          metrics.reconciles.inc({ result: 'success' });
          return result;
        } catch (e) {
          metrics.reconciles.inc({ result: 'error' });
          metrics.reconcileErrors.inc();
          throw e;
        } finally {
          end();
        }
      },
      onError: (key, error, retryInMs) =>
        log.warn('reconcile failed; retrying', { key, error: String(error), retryInMs }),
      onDepth: (n) => metrics.queueDepth.set(n),
      onStart: (_key, waitedMs) => metrics.queueWait.observe(waitedMs / 1000),
    });
    this.queue = queue;

    const ownerKey = (obj: Labelled) => {
      const name = obj.metadata.labels?.[NAME_LABEL];
      return name && obj.metadata.namespace ? `${obj.metadata.namespace}/${name}` : undefined;
    };
    const crs = this.informer<InferenceDeployment & Labelled>(
      'inferencedeployments',
      RESOURCES.inferenceDeployment,
      crEventKey,
      trimCustomResource,
    );
    this.crs = crs;
    const deployments = this.informer<Labelled & DeploymentView>(
      'deployments',
      RESOURCES.deployment,
      ownerKey,
      trimDeployment,
      CHILD_SELECTOR,
    );
    const services = this.informer<Labelled>('services', RESOURCES.service, ownerKey, trimToMetadata, CHILD_SELECTOR);
    const pdbs = this.informer<Labelled>(
      'poddisruptionbudgets',
      RESOURCES.podDisruptionBudget,
      ownerKey,
      trimToMetadata,
      CHILD_SELECTOR,
    );
    const hpas = this.informer<Labelled & HpaView>(
      'horizontalpodautoscalers',
      RESOURCES.horizontalPodAutoscaler,
      ownerKey,
      trimHorizontalPodAutoscaler,
      CHILD_SELECTOR,
    );
    const pods = this.informer<Labelled & PodView>('pods', RESOURCES.pod, ownerKey, trimPod, CHILD_SELECTOR);

    const deps: ReconcileDeps = {
      client: this.o.client,
      crs,
      deployments,
      services,
      podDisruptionBudgets: pdbs,
      horizontalPodAutoscalers: hpas,
      pods,
      events: this.o.events,
      planOptions: this.o.planOptions,
      log,
      memo: this.memo,
    };

    this.running = true;
    log.info('starting informers', { namespace: this.o.namespace ?? '(all)' });
    await Promise.all(this.informers.map((i) => i.start()));
    if (!this.running) return; // stopped while syncing
    log.info('caches synced; starting workers', { concurrency: this.o.concurrency });
    queue.start();
    this.autoscaler = new Autoscaler({
      client: this.o.client,
      crs,
      pods,
      hpas,
      events: this.o.events,
      log: log.with({ component: 'autoscaler' }),
      metrics,
      targets: this.o.autoscaler.targets,
      intervalMs: this.o.autoscaler.intervalMs,
    });
    this.autoscaler.start();
    const resyncMs = this.o.resyncMs ?? 10 * 60_000;
    this.resync = setInterval(() => {
      this.memo.clear();
      for (const cr of crs.list()) if (cr.metadata.namespace) queue.add(`${cr.metadata.namespace}/${cr.metadata.name}`);
    }, resyncMs);
    this.resync.unref();
  }

  /** Stops the workers (waiting for running reconciles) and the informers. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    if (this.resync) clearInterval(this.resync);
    // Take this run's queue and informers: a start() (leadership regained) may replace them meanwhile.
    const { queue, informers, autoscaler } = this;
    await autoscaler?.stop();
    await queue?.stop();
    queue?.clear();
    await Promise.all(informers.map((i) => i.stop()));
    this.o.log.info('controller stopped');
  }

  /** Counts of cached InferenceDeployments by Ready status, for the gauge. */
  readyCounts(): Record<string, number> {
    const counts: Record<string, number> = { True: 0, False: 0, Unknown: 0 };
    for (const cr of this.crs?.list() ?? []) {
      const s = cr.status?.conditions?.find((c) => c.type === 'Ready')?.status ?? 'Unknown';
      counts[s] = (counts[s] ?? 0) + 1;
    }
    return counts;
  }
}

/**
 * Which CR events need a reconcile: spec changes (generation), the start of deletion, and changes to
 * the reconciler's own status. The last are mostly our writes coming back (a no-op reconcile then), but
 * a reconcile compares what it computes with the cache: if the cache still showed an older status, an
 * equal-looking decision was not written, and only this event brings the CR back to be fixed.
 * Autoscaler-only status changes do not.
 */
export function crEventKey(obj: InferenceDeployment, type: EventType, old?: InferenceDeployment): string | undefined {
  if (type === 'update' && old && old.metadata.generation === obj.metadata.generation) {
    const deletionStarted = !!obj.metadata.deletionTimestamp && !old.metadata.deletionTimestamp;
    const ourStatusChanged = !sameJson(reconcilerStatus(old.status), reconcilerStatus(obj.status));
    if (!deletionStarted && !ourStatusChanged) return undefined;
  }
  return obj.metadata.namespace ? `${obj.metadata.namespace}/${obj.metadata.name}` : undefined;
}
