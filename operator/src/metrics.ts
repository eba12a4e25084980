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

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'pagoda_operator_' });
  }
}
