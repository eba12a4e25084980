/**
 * hpa mode: status.autoscaling mirrors the HorizontalPodAutoscaler the operator created (its desired
 * replicas, last scale, current metric and the condition that explains it), so `kubectl get infd -o yaml`
 * answers "why this many replicas" in both modes. Pure.
 */
import type { AutoscalingStatus } from '../api/types.ts';

export interface HpaView {
  metadata: { name: string; namespace?: string };
  status?: {
    currentReplicas?: number;
    desiredReplicas?: number;
    lastScaleTime?: string;
    currentMetrics?: { type: string; pods?: { current?: { averageValue?: string } } }[] | null;
    conditions?: { type: string; status: string; reason?: string; message?: string }[];
  };
}

const SUFFIX: Record<string, number> = {
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  '': 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
};

/** A Kubernetes quantity ("2500m", "3", "1k") as a number, or undefined. */
export function parseQuantity(q: string | undefined): number | undefined {
  const m = q === undefined ? null : /^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(n|u|m|k|M|G|T|Ki|Mi|Gi)?$/.exec(q);
  if (!m) return undefined;
  return Number(m[1]) * (SUFFIX[m[2] ?? ''] ?? 1);
}

/** A number as a quantity the API server keeps as written: whole numbers plain, others in milli-units. */
export function toQuantity(x: number): string {
  return Number.isInteger(x) ? String(x) : `${Math.round(x * 1000)}m`;
}

export function hpaStatus(name: string, hpa: HpaView | undefined): AutoscalingStatus {
  const base: AutoscalingStatus = { mode: 'hpa', horizontalPodAutoscaler: name };
  if (!hpa) return { ...base, reason: 'Creating', message: `waiting for the HorizontalPodAutoscaler ${name}` };
  const s = hpa.status ?? {};
  const out: AutoscalingStatus = { ...base };
  if (s.currentReplicas !== undefined) out.currentReplicas = s.currentReplicas;
  if (s.desiredReplicas !== undefined) out.desiredReplicas = s.desiredReplicas;
  if (s.lastScaleTime) out.lastScaleTime = s.lastScaleTime;
  const value = parseQuantity(s.currentMetrics?.[0]?.pods?.current?.averageValue);
  if (value !== undefined) out.currentValue = value;
  const conds = s.conditions ?? [];
  // The condition that explains the most: a failing one first, then a limit, then the active one.
  const explain =
    conds.find((c) => (c.type === 'AbleToScale' || c.type === 'ScalingActive') && c.status === 'False') ??
    conds.find((c) => c.type === 'ScalingLimited' && c.status === 'True') ??
    conds.find((c) => c.type === 'ScalingActive');
  if (explain) {
    out.reason = explain.reason ?? explain.type;
    out.message = `HorizontalPodAutoscaler ${name}: ${explain.message ?? ''}`.trim();
  } else {
    out.reason = 'Pending';
    out.message = `the HorizontalPodAutoscaler ${name} has not reported yet`;
  }
  return out;
}
