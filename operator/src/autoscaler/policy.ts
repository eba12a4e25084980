/**
 * spec.autoscaling with its defaults filled in. The CRD defaults the same values; the operator applies
 * them again because an object may come from an older CRD or a test without defaulting.
 */
import type { AutoscalingMetric, AutoscalingMode, InferenceDeployment } from '../api/types.ts';

export interface Policy {
  metric: AutoscalingMetric;
  minReplicas: number;
  maxReplicas: number;
  /** Target value of the metric per replica. */
  target: number;
  /** No change while |ratio − 1| ≤ tolerance. */
  tolerance: number;
  metricWindowMs: number;
  scaleUpWindowMs: number;
  scaleDownWindowMs: number;
}

export const DEFAULTS = {
  mode: 'builtin',
  minReplicas: 1,
  metric: 'requests',
  tolerance: 0.1,
  metricWindowSeconds: 30,
  scaleUpStabilizationSeconds: 0,
  scaleDownStabilizationSeconds: 300,
} as const;

/** The autoscaling mode of a CR: none when spec.autoscaling is absent. */
export function autoscalingMode(cr: InferenceDeployment): AutoscalingMode {
  const a = cr.spec.autoscaling;
  return a ? (a.mode ?? DEFAULTS.mode) : 'none';
}

/** The policy, or why there is none (mode none, or a spec the CRD would have refused). */
export function policyOf(cr: InferenceDeployment): Policy | string {
  const a = cr.spec.autoscaling;
  if (!a || autoscalingMode(cr) === 'none') return 'autoscaling is off';
  if (a.maxReplicas === undefined || a.target === undefined || !(a.target > 0)) {
    return 'autoscaling.maxReplicas and autoscaling.target are required';
  }
  const minReplicas = a.minReplicas ?? DEFAULTS.minReplicas;
  if (minReplicas < 1 || minReplicas > a.maxReplicas) return 'autoscaling.minReplicas must be 1 to maxReplicas';
  return {
    metric: a.metric ?? DEFAULTS.metric,
    minReplicas,
    maxReplicas: a.maxReplicas,
    target: a.target,
    tolerance: a.tolerance ?? DEFAULTS.tolerance,
    metricWindowMs: (a.metricWindowSeconds ?? DEFAULTS.metricWindowSeconds) * 1000,
    scaleUpWindowMs: (a.scaleUp?.stabilizationWindowSeconds ?? DEFAULTS.scaleUpStabilizationSeconds) * 1000,
    scaleDownWindowMs: (a.scaleDown?.stabilizationWindowSeconds ?? DEFAULTS.scaleDownStabilizationSeconds) * 1000,
  };
}
