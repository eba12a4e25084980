/**
 * The built-in autoscaler. Runs on the leader only (the controller starts and stops it with its
 * informers, whose caches it reads). Every interval, for each InferenceDeployment in builtin mode:
 * scrape the metric from each Ready pod's /metrics, add the sample to the object's window, decide
 * (decide.ts), write spec.replicas through the scale subresource when the decision changes it, record an
 * Event, and apply status.autoscaling and ScalingLimited. For hpa mode it mirrors the HPA's status; for
 * no autoscaling it removes its status fields.
 *
 * State that decisions depend on across time — the recommendation history of the stabilization windows
 * and the last scale time — is written to status with every change and read back when this process
 * first sees an object, so a restarted operator or a new leader continues where the last one stopped. Only
 * the metric samples are kept in memory: after a restart the average starts again from the next scrape.
 */
import { API_VERSION, type InferenceDeployment, KIND } from '../api/types.ts';
import type { Cache } from '../controller/reconcile.ts';
import { type PodView, podsShortOfGpus } from '../controller/status.ts';
import type { EventRecorder } from '../kube/events.ts';
import { ApiError, type KubeClient, objectPath, RESOURCES } from '../kube/rest.ts';
import type { Logger } from '../log.ts';
import type { OperatorMetrics } from '../metrics.ts';
import { NAME_LABEL } from '../plan/names.ts';
import { type Decision, decide, formatValue, type Recommendation } from './decide.ts';
import { type HpaView, hpaStatus } from './hpa-status.ts';
import { Limiter, measure } from './measure.ts';
import { autoscalingMode, type Policy, policyOf } from './policy.ts';
import {
  AUTOSCALER_FIELD_MANAGER,
  type AutoscalerStatusPatch,
  formatSeconds,
  historyFromStatus,
  historyToStatus,
  patchChanges,
  scalingLimitedCondition,
} from './status.ts';
import type { TargetResolver } from './targets.ts';
import { SampleWindow } from './window.ts';

type Pod = PodView & { metadata: { namespace?: string; labels?: Record<string, string> } };

export interface AutoscalerOptions {
  client: KubeClient;
  crs: Cache<InferenceDeployment>;
  pods: Cache<Pod>;
  hpas: Cache<HpaView>;
  events: EventRecorder;
  log: Logger;
  metrics: OperatorMetrics;
  targets: TargetResolver;
  intervalMs: number;
  /** Per scrape; default min(5 s, the interval). */
  scrapeTimeoutMs?: number;
  /** Scrapes in flight at once, over all objects. Default 32. */
  scrapeConcurrency?: number;
  now?: () => number;
}

interface ObjectState {
  uid: string | undefined;
  window: SampleWindow;
  history: Recommendation[];
  lastScaleTime: string | undefined;
}

const keyOf = (cr: InferenceDeployment) => `${cr.metadata.namespace}/${cr.metadata.name}`;

export class Autoscaler {
  private readonly o: AutoscalerOptions;
  private readonly states = new Map<string, ObjectState>();
  private readonly limiter: Limiter;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = true;

  constructor(opts: AutoscalerOptions) {
    this.o = opts;
    this.limiter = new Limiter(opts.scrapeConcurrency ?? 32);
  }

  private now(): number {
    return this.o.now ? this.o.now() : Date.now();
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.states.clear(); // a new term starts from what status says, not from an older term's memory
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    const due = this.now() + delayMs;
    this.timer = setTimeout(() => {
      // A pass's time is when it was due (or later, if late): timers may fire a millisecond early, and a
      // pass dated 5999 ms after the one two intervals back would still count its sample in a window of
      // two intervals.
      const started = Math.max(this.now(), due);
      this.running = this.tick(started)
        .catch((e: unknown) => this.o.log.error('autoscaler pass failed', { error: String(e) }))
        .finally(() => {
          this.running = undefined;
          // Keep the cadence: the next pass is due one interval after this one started.
          this.schedule(Math.max(0, started + this.o.intervalMs - this.now()));
        });
    }, delayMs);
    this.timer.unref();
  }

  /** One pass over every InferenceDeployment in the cache, as of `now`. */
  async tick(now: number = this.now()): Promise<void> {
    const end = this.o.metrics.autoscalerPassDuration.startTimer();
    const seen = new Set<string>();
    await Promise.all(
      this.o.crs.list().map(async (cr) => {
        if (!cr.metadata.namespace || cr.metadata.deletionTimestamp) return;
        seen.add(keyOf(cr));
        try {
          await this.one(cr, now);
        } catch (e) {
          this.o.log.warn('autoscaling failed; retrying next pass', { key: keyOf(cr), error: String(e) });
        }
      }),
    );
    for (const key of this.states.keys()) {
      if (!seen.has(key)) this.forget(key);
    }
    end();
  }

  private forget(key: string): void {
    this.states.delete(key);
    const [namespace = '', name = ''] = key.split('/');
    this.o.metrics.autoscalerDesiredReplicas.remove({ namespace, name });
    this.o.metrics.autoscalerMetricValue.remove({ namespace, name });
  }

  private async one(cr: InferenceDeployment, now: number): Promise<void> {
    const mode = autoscalingMode(cr);
    if (mode === 'builtin') {
      const policy = policyOf(cr);
      if (typeof policy !== 'string') return this.builtin(cr, policy, now);
    }
    if (this.states.has(keyOf(cr))) this.forget(keyOf(cr));
    if (mode === 'hpa') {
      const name = cr.metadata.name;
      return this.applyStatus(cr, { autoscaling: hpaStatus(name, this.o.hpas.get(name, cr.metadata.namespace)) });
    }
    // No autoscaling (or a spec the CRD should have refused): take our fields away, once.
    if (cr.status?.autoscaling || cr.status?.conditions?.some((c) => c.type === 'ScalingLimited')) {
      await this.applyStatus(cr, {});
    }
  }

  private state(cr: InferenceDeployment): ObjectState {
    const key = keyOf(cr);
    let st = this.states.get(key);
    if (!st || st.uid !== cr.metadata.uid) {
      st = {
        uid: cr.metadata.uid,
        window: new SampleWindow(),
        history: historyFromStatus(cr.status),
        lastScaleTime: cr.status?.autoscaling?.lastScaleTime,
      };
      this.states.set(key, st);
    }
    return st;
  }

  private async builtin(cr: InferenceDeployment, policy: Policy, now: number): Promise<void> {
    const namespace = cr.metadata.namespace as string;
    const name = cr.metadata.name;
    const st = this.state(cr);
    const pods = this.o.pods
      .list(namespace)
      .filter((p) => p.metadata.labels?.[NAME_LABEL] === name && !p.metadata.deletionTimestamp);
    const m = await measure({
      namespace,
      pods,
      metric: policy.metric,
      targets: this.o.targets,
      limiter: this.limiter,
      timeoutMs: this.o.scrapeTimeoutMs ?? Math.min(5000, this.o.intervalMs),
    });
    this.o.metrics.autoscalerScrapes.inc({ result: 'success' }, m.answered);
    if (m.errors.length) {
      this.o.metrics.autoscalerScrapes.inc({ result: 'error' }, m.errors.length);
      this.o.log.debug('scrapes failed', { key: keyOf(cr), errors: m.errors });
    }
    st.window.add({ at: now, total: m.total, answered: m.answered, missing: m.errors.length });
    const load = st.window.load(now, policy.metricWindowMs);
    const current = cr.spec.replicas ?? 1;
    const gpuResource = cr.spec.gpu?.resourceName ?? 'nvidia.com/gpu';
    const d = decide({
      policy,
      current,
      load,
      podsShortOfGpus: podsShortOfGpus(pods, gpuResource).length,
      history: st.history,
      now,
    });
    st.history = d.history;
    if (d.desired !== current && (await this.writeScale(cr, current, d))) st.lastScaleTime = formatSeconds(now);
    this.o.metrics.autoscalerDesiredReplicas.set({ namespace, name }, d.desired);
    if (load) this.o.metrics.autoscalerMetricValue.set({ namespace, name }, load.perPod);

    const scrapeNote = m.errors.length
      ? `; ${m.errors.length} Ready pod(s) not scraped (${m.errors[0]}${m.errors.length > 1 ? ', …' : ''})`
      : '';
    const previous = cr.status?.conditions?.find((c) => c.type === 'ScalingLimited');
    const limited = scalingLimitedCondition(cr, d, now);
    await this.applyStatus(cr, {
      autoscaling: {
        mode: 'builtin',
        metric: policy.metric,
        target: policy.target,
        ...(load ? { currentValue: Number(formatValue(load.perPod)) } : {}),
        scrapedPods: m.answered,
        currentReplicas: current,
        desiredReplicas: d.desired,
        ...(st.lastScaleTime ? { lastScaleTime: st.lastScaleTime } : {}),
        reason: d.reason,
        message: (d.message + scrapeNote).slice(0, 32_000),
        recommendations: historyToStatus(st.history),
      },
      conditions: [limited],
    });
    if (limited.status === 'True' && (previous?.status !== 'True' || previous.reason !== limited.reason)) {
      this.o.events.record(cr, 'Warning', 'ScalingLimited', `${limited.reason}: ${limited.message}`);
    }
  }

  /**
   * Sets the replicas through the scale subresource, as a compare-and-set on the replicas alone (a JSON
   * patch that tests the count the decision started from): status writes, which change the object's
   * resourceVersion all the time, do not make it fail, but a change of the replicas by someone else
   * does (422), and the next pass decides again from the new count.
   */
  private async writeScale(cr: InferenceDeployment, current: number, d: Decision): Promise<boolean> {
    const path = objectPath(RESOURCES.inferenceDeployment, cr.metadata.namespace, cr.metadata.name, 'scale');
    try {
      await this.o.client.request('PATCH', path, {
        body: [
          { op: 'test', path: '/spec/replicas', value: current },
          { op: 'replace', path: '/spec/replicas', value: d.desired },
        ],
        contentType: 'application/json-patch+json',
      });
    } catch (e) {
      if (e instanceof ApiError && e.status === 422) {
        this.o.log.info('replicas changed meanwhile; deciding again next pass', { key: keyOf(cr), from: current });
        return false;
      }
      this.o.log.warn('writing the scale subresource failed', { key: keyOf(cr), error: String(e) });
      this.o.events.record(cr, 'Warning', 'ScaleFailed', `could not set replicas to ${d.desired}: ${String(e)}`);
      return false;
    }
    const up = d.desired > current;
    this.o.metrics.autoscalerScales.inc({ direction: up ? 'up' : 'down' });
    this.o.log.info('scaled', { key: keyOf(cr), from: current, to: d.desired, reason: d.message });
    this.o.events.record(cr, 'Normal', up ? 'ScaledUp' : 'ScaledDown', d.message);
    return true;
  }

  private async applyStatus(cr: InferenceDeployment, patch: AutoscalerStatusPatch): Promise<void> {
    if (!patchChanges(cr, patch)) return;
    const { namespace, name } = cr.metadata;
    await this.o.client.apply(
      objectPath(RESOURCES.inferenceDeployment, namespace, name, 'status'),
      { apiVersion: API_VERSION, kind: KIND, metadata: { name, namespace }, status: patch },
      AUTOSCALER_FIELD_MANAGER,
    );
  }
}
