/**
 * One autoscaling decision, pure: the policy, the replicas now, the windowed load, the pods Pending for
 * lack of GPUs and the recommendation history in; the replicas to write, the new history and the reason
 * out. The steps follow the Kubernetes HPA:
 *
 *   1. recommendation = ceil(total / target)      total = the metric summed over the Ready pods (the HPA's
 *                                                  ceil(currentReplicas × currentValue / target));
 *      unchanged while |total / (replicas × target) − 1| ≤ tolerance. Ready pods that could not be scraped
 *      count as 0 when that would scale up, and as at target when it would scale down (so a missing pod
 *      never causes a scale-down, nor an unmeasured one a scale-up).
 *   2. stabilization: scale up only to the lowest recommendation of the scale-up window, down only to the
 *      highest of the scale-down window (the history holds one entry per change of recommendation; an
 *      entry counts until the next one begins).
 *   3. limits: clamp to [minReplicas, maxReplicas].
 *   4. GPUs: while pods are Pending for lack of GPUs, never go above the current replicas (more pods would
 *      only wait too); minReplicas still applies, being the user's floor.
 *
 * Without a measurement (no Ready pod answered in the window) nothing is recommended and only the limits
 * apply, as the HPA does when its metrics fail.
 */
import type { Policy } from './policy.ts';
import type { Load } from './window.ts';

export interface Recommendation {
  replicas: number;
  /** Milliseconds since the epoch. */
  since: number;
}

export interface DecisionInput {
  policy: Policy;
  /** spec.replicas now. */
  current: number;
  load: Load | undefined;
  /** Pods of this object Pending because no node has enough free GPUs. */
  podsShortOfGpus: number;
  history: readonly Recommendation[];
  now: number;
}

export type DecisionReason =
  | 'ScaledUp'
  | 'ScaledDown'
  | 'WithinTolerance'
  | 'ScaleUpStabilizing'
  | 'ScaleDownStabilizing'
  | 'NoMetrics'
  | 'TooManyReplicas'
  | 'TooFewReplicas'
  | 'InsufficientGPUs';

export type LimitReason = 'DesiredWithinRange' | 'TooManyReplicas' | 'TooFewReplicas' | 'InsufficientGPUs';

export interface Decision {
  /** Replicas to have: a change when different from current. */
  desired: number;
  /** What the metric alone asks for (before windows and limits); undefined without a measurement. */
  recommendation: number | undefined;
  history: Recommendation[];
  reason: DecisionReason;
  message: string;
  /** The ScalingLimited condition. */
  limited: { status: 'True' | 'False'; reason: LimitReason; message: string };
}

/** At most this many history entries (the CRD's maxItems): the oldest go first. */
export const MAX_HISTORY = 128;

const METRIC_WORDS = { requests: 'requests (running + waiting)', kvCacheUsage: 'KV-cache usage' } as const;

export function formatValue(x: number): string {
  return Number.isInteger(x) ? String(x) : x.toFixed(Math.abs(x) < 1 ? 3 : 2).replace(/\.?0+$/, '');
}

/** Step 1: the metric's recommendation. */
function recommend(policy: Policy, current: number, load: Load): number {
  const { target, tolerance } = policy;
  if (current <= 0) return Math.ceil(load.total / target); // scaled to zero by hand: any load counts
  const up = load.total / (current * target);
  if (up > 1 + tolerance) return Math.max(current + 1, Math.ceil(load.total / target));
  const down = (load.total + load.missing * target) / (current * target);
  if (down < 1 - tolerance) return Math.min(current, Math.ceil((load.total + load.missing * target) / target));
  return current;
}

/** Appends rec at now if it differs from the last entry; drops entries older than keepMs and beyond the cap. */
function record(history: readonly Recommendation[], rec: number, now: number, keepMs: number): Recommendation[] {
  const out = [...history];
  if (out.at(-1)?.replicas !== rec) out.push({ replicas: rec, since: now });
  // An entry lasts until the next begins: it is within the window while the next began after the cutoff.
  let first = 0;
  while (first < out.length - 1 && (out[first + 1] as Recommendation).since <= now - keepMs) first++;
  first = Math.max(first, out.length - MAX_HISTORY);
  return out.slice(first);
}

/** The entries whose time overlaps (now − windowMs, now]. */
function within(history: readonly Recommendation[], now: number, windowMs: number): Recommendation[] {
  return history.filter((_r, i) => {
    const next = history[i + 1];
    return next === undefined || next.since > now - windowMs;
  });
}

/** When the highest entry above `level` leaves the scale-down window. */
function holdUntil(history: readonly Recommendation[], level: number, windowMs: number): number | undefined {
  let end: number | undefined;
  history.forEach((r, i) => {
    const next = history[i + 1];
    if (r.replicas > level && next) end = Math.max(end ?? 0, next.since);
  });
  return end === undefined ? undefined : end + windowMs;
}

export function decide(input: DecisionInput): Decision {
  const { policy, current, load, podsShortOfGpus, now } = input;
  const { minReplicas: min, maxReplicas: max } = policy;
  let history = [...input.history];
  let recommendation: number | undefined;
  let stabilized = current;
  let held: DecisionReason | undefined; // what kept the replicas where they are, if anything
  let seen: string;
  const notes: string[] = [];

  if (!load) {
    seen = `no Ready pod answered /metrics in the last ${policy.metricWindowMs / 1000} s`;
    held = 'NoMetrics';
  } else {
    recommendation = recommend(policy, current, load);
    history = record(history, recommendation, now, Math.max(policy.scaleUpWindowMs, policy.scaleDownWindowMs));
    const upLimit = Math.min(...within(history, now, policy.scaleUpWindowMs).map((r) => r.replicas));
    const downLimit = Math.max(...within(history, now, policy.scaleDownWindowMs).map((r) => r.replicas));
    if (stabilized < upLimit) stabilized = upLimit;
    if (stabilized > downLimit) stabilized = downLimit;
    seen =
      `${METRIC_WORDS[policy.metric]} ${formatValue(load.perPod)} per pod over ${load.answered} pod(s), ` +
      `${formatValue(load.total)} in all (mean of ${policy.metricWindowMs / 1000} s); target ${formatValue(policy.target)}`;
    if (recommendation === current) {
      notes.push(`within the tolerance (${formatValue(policy.tolerance)})`);
      held = 'WithinTolerance';
    } else {
      notes.push(`the metric asks for ${recommendation}`);
    }
    if (recommendation < current && stabilized > recommendation) {
      const until = holdUntil(history, recommendation, policy.scaleDownWindowMs);
      notes.push(
        `the scale-down window (${policy.scaleDownWindowMs / 1000} s) keeps ${stabilized}` +
          (until !== undefined ? ` until ${new Date(until).toISOString()} if the load stays low` : ''),
      );
      held = 'ScaleDownStabilizing';
    } else if (recommendation > current && stabilized < recommendation) {
      notes.push(`the scale-up window (${policy.scaleUpWindowMs / 1000} s) allows ${stabilized} for now`);
      held = 'ScaleUpStabilizing';
    }
  }

  let desired = Math.min(Math.max(stabilized, min), max);
  let limited: Decision['limited'] = {
    status: 'False',
    reason: 'DesiredWithinRange',
    message: `the desired count is within [${min}, ${max}]`,
  };
  if (stabilized > max) {
    limited = { status: 'True', reason: 'TooManyReplicas', message: `${stabilized} is above maxReplicas ${max}` };
  } else if (stabilized < min) {
    limited = { status: 'True', reason: 'TooFewReplicas', message: `${stabilized} is below minReplicas ${min}` };
  }
  if (podsShortOfGpus > 0 && desired > current) {
    const capped = Math.max(current, min);
    limited = {
      status: 'True',
      reason: 'InsufficientGPUs',
      message:
        `${podsShortOfGpus} pod(s) Pending for lack of GPUs: not adding replicas (holding ${capped} of the ${desired} ` +
        'wanted); scaling up resumes when the Pending pods are scheduled: free GPUs or add GPU nodes',
    };
    desired = capped;
  }
  if (limited.status === 'True') {
    notes.push(limited.message);
    if (desired === current && stabilized !== current) held = limited.reason as DecisionReason;
  }
  let reason: DecisionReason;
  let message: string;
  if (desired !== current) {
    reason = desired > current ? 'ScaledUp' : 'ScaledDown';
    message = `${seen}; ${notes.join('; ')}: ${current} → ${desired} replicas`;
  } else {
    reason = held ?? 'WithinTolerance';
    message = `${[seen, ...notes].join('; ')}: staying at ${current}`;
  }
  return { desired, recommendation, history, reason, message, limited };
}
