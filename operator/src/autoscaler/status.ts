/**
 * The autoscaler's part of an InferenceDeployment's status: status.autoscaling and the ScalingLimited
 * condition, applied under the autoscaler's own field manager (the reconciler owns the rest of status,
 * so neither removes the other's fields). Pure: builds the patch and says whether it changes anything.
 */
import type {
  AutoscalingStatus,
  Condition,
  InferenceDeployment,
  InferenceDeploymentStatus,
  RecommendationStatus,
} from '../api/types.ts';
import { sameJson } from '../controller/status.ts';
import type { Decision, Recommendation } from './decide.ts';

export const AUTOSCALER_FIELD_MANAGER = 'pagoda-autoscaler';

export interface AutoscalerStatusPatch {
  autoscaling?: AutoscalingStatus;
  conditions?: Condition[];
}

const seconds = (t: Date | number): string => new Date(t).toISOString().replace(/\.\d+Z$/, 'Z');
const millis = (t: number): string => new Date(t).toISOString();

export function historyToStatus(history: readonly Recommendation[]): RecommendationStatus[] {
  return history.map((r) => ({ replicas: r.replicas, since: millis(r.since) }));
}

/** The history a previous leader or process left in status (unparsable entries are skipped). */
export function historyFromStatus(status: InferenceDeploymentStatus | undefined): Recommendation[] {
  const out: Recommendation[] = [];
  for (const r of status?.autoscaling?.recommendations ?? []) {
    const since = Date.parse(r.since);
    if (Number.isFinite(since) && Number.isInteger(r.replicas)) out.push({ replicas: r.replicas, since });
  }
  return out.sort((a, b) => a.since - b.since);
}

/** ScalingLimited from a decision, keeping lastTransitionTime while its status does not change. */
export function scalingLimitedCondition(cr: InferenceDeployment, d: Decision, now: number): Condition {
  const prev = cr.status?.conditions?.find((c) => c.type === 'ScalingLimited');
  return {
    type: 'ScalingLimited',
    status: d.limited.status,
    reason: d.limited.reason,
    message: d.limited.message,
    lastTransitionTime: prev && prev.status === d.limited.status ? prev.lastTransitionTime : seconds(now),
    observedGeneration: cr.metadata.generation ?? 0,
  };
}

/** What the cached object already shows of the autoscaler's fields. */
export function currentPatch(cr: InferenceDeployment): AutoscalerStatusPatch {
  const out: AutoscalerStatusPatch = {};
  if (cr.status?.autoscaling) out.autoscaling = cr.status.autoscaling;
  const limited = cr.status?.conditions?.filter((c) => c.type === 'ScalingLimited');
  if (limited?.length) out.conditions = limited;
  return out;
}

export function patchChanges(cr: InferenceDeployment, patch: AutoscalerStatusPatch): boolean {
  return !sameJson(currentPatch(cr), patch);
}

export { seconds as formatSeconds };
