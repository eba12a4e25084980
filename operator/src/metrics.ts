/** The operator's Prometheus metrics (served on /metrics), in one registry. */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

export class OperatorMetrics {
  readonly registry = new Registry();
  readonly reconciles = new Counter({
    name: 'pagoda_operator_reconcile_total',
    help: 'Reconciles of InferenceDeployments, by result (success, error).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly reconcileErrors = new Counter({
    name: 'pagoda_operator_reconcile_errors_total',
    help: 'Reconciles that failed and were retried with backoff.',
    registers: [this.registry],
  });
  readonly reconcileDuration = new Histogram({
    name: 'pagoda_operator_reconcile_duration_seconds',
    help: 'Time one reconcile takes (plan, server-side applies, status write).',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly queueDepth = new Gauge({
    name: 'pagoda_operator_queue_depth',
    help: 'InferenceDeployment keys waiting for a reconcile.',
    registers: [this.registry],
  });
  readonly queueWait = new Histogram({
    name: 'pagoda_operator_queue_wait_seconds',
    help: 'Time a key waited in the queue before its reconcile started.',
    buckets: [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
    registers: [this.registry],
  });
  readonly leader = new Gauge({
    name: 'pagoda_operator_leader',
    help: '1 while this process holds the leader Lease (only the leader reconciles).',
    registers: [this.registry],
  });
  readonly informerRestarts = new Counter({
    name: 'pagoda_operator_informer_restarts_total',
    help: 'Informer restarts after watch or list errors, by resource.',
    labelNames: ['resource'] as const,
    registers: [this.registry],
  });
  readonly managed = new Gauge({
    name: 'pagoda_operator_inferencedeployments',
    help: 'InferenceDeployments in the cache, by Ready condition status.',
    labelNames: ['ready'] as const,
    registers: [this.registry],
  });

  readonly autoscalerPassDuration = new Histogram({
    name: 'pagoda_operator_autoscaler_pass_duration_seconds',
    help: 'Time one autoscaler pass takes (scrape every builtin-mode object, decide, write).',
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly autoscalerScrapes = new Counter({
    name: 'pagoda_operator_autoscaler_scrapes_total',
    help: "Scrapes of runtime pods' /metrics by the built-in autoscaler, by result (success, error).",
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly autoscalerScales = new Counter({
    name: 'pagoda_operator_autoscaler_scales_total',
    help: 'Replica changes written by the built-in autoscaler, by direction (up, down).',
    labelNames: ['direction'] as const,
    registers: [this.registry],
  });
  readonly autoscalerDesiredReplicas = new Gauge({
    name: 'pagoda_operator_autoscaler_desired_replicas',
    help: 'Replicas the built-in autoscaler wants, per InferenceDeployment.',
    labelNames: ['namespace', 'name'] as const,
    registers: [this.registry],
  });
  readonly autoscalerMetricValue = new Gauge({
    name: 'pagoda_operator_autoscaler_metric_value',
    help: "The autoscaling metric per pod averaged over the object's window (compare with spec.autoscaling.target).",
    labelNames: ['namespace', 'name'] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'pagoda_operator_' });
  }
}
