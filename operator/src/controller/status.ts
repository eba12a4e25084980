/**
 * Status from what the cluster shows: the plan, the Deployment's status and the pods. Pure; the
 * reconciler writes what this returns. Conditions (each with a reason and a message):
 *   Planned      the sizing plan fits (False: why not, and what would)
 *   Progressing  a rollout or scale is under way
 *   Ready        the desired number of replicas pass /health/ready
 *   Degraded     something needs attention: no plan, pods that cannot be scheduled (e.g. too few free
 *                GPUs), crashing or unpullable containers, a stalled rollout
 */
import type {
  Condition,
  ConditionStatus,
  ConditionType,
  InferenceDeployment,
  InferenceDeploymentStatus,
} from '../api/types.ts';
import type { PlanResult } from '../plan/plan.ts';

export interface DeploymentView {
  metadata: { generation?: number };
  status?: {
    observedGeneration?: number;
    replicas?: number;
    readyReplicas?: number;
    updatedReplicas?: number;
    availableReplicas?: number;
    conditions?: { type: string; status: string; reason?: string; message?: string }[];
  };
}

interface ContainerStatusView {
  name: string;
  state?: { waiting?: { reason?: string; message?: string } };
}

export interface PodView {
  metadata: { name: string; deletionTimestamp?: string };
  status?: {
    phase?: string;
    /** Where the autoscaler scrapes /metrics. */
    podIP?: string;
    conditions?: { type: string; status: string; reason?: string; message?: string }[];
    containerStatuses?: ContainerStatusView[];
    initContainerStatuses?: ContainerStatusView[];
  };
}

/** Container waiting reasons that will not resolve by waiting. */
const FAILING_REASONS = new Set([
  'CrashLoopBackOff',
  'ImagePullBackOff',
  'ErrImagePull',
  'InvalidImageName',
  'CreateContainerConfigError',
  'CreateContainerError',
  'RunContainerError',
]);

/** The conditions the reconciler writes, in order. ScalingLimited and status.autoscaling belong to the
 *  autoscaler, which applies them under its own field manager. */
export const RECONCILER_CONDITIONS = ['Planned', 'Progressing', 'Ready', 'Degraded'] as const satisfies ConditionType[];
type ReconcilerCondition = (typeof RECONCILER_CONDITIONS)[number];

export interface StatusInput {
  cr: InferenceDeployment;
  plan: PlanResult;
  deployment: DeploymentView | undefined;
  pods: readonly PodView[];
  /** A problem applying the children (the reconcile will retry). */
  applyError?: { reason: string; message: string } | undefined;
  now: Date;
}

type Verdict = { status: ConditionStatus; reason: string; message: string };

/** Pods the scheduler cannot place because no node has enough free GPUs (by name, with its message). */
export function podsShortOfGpus(pods: readonly PodView[], gpuResource: string): { pod: string; message: string }[] {
  return podProblems(pods, gpuResource).short;
}

function podProblems(pods: readonly PodView[], gpuResource: string) {
  const unschedulable: { pod: string; message: string }[] = [];
  const failing: string[] = [];
  for (const pod of pods) {
    if (pod.metadata.deletionTimestamp) continue;
    const scheduled = pod.status?.conditions?.find((c) => c.type === 'PodScheduled');
    if (pod.status?.phase === 'Pending' && scheduled?.status === 'False' && scheduled.reason === 'Unschedulable') {
      unschedulable.push({ pod: pod.metadata.name, message: scheduled.message ?? '' });
    }
    for (const cs of [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])]) {
      const w = cs.state?.waiting;
      if (w?.reason && FAILING_REASONS.has(w.reason)) {
        failing.push(`pod ${pod.metadata.name} container ${cs.name}: ${w.reason}${w.message ? ` (${w.message})` : ''}`);
      }
    }
  }
  const short = unschedulable.filter((u) => u.message.includes(`Insufficient ${gpuResource}`));
  return { unschedulable, short, failing };
}

function degradedVerdict(input: StatusInput, gpuResource: string, gpusPerPod: number | undefined): Verdict {
  const { plan, deployment, pods, applyError } = input;
  if (!plan.planned) {
    const keep = deployment ? ' The running pods keep the last valid plan.' : ' No pods are created.';
    return { status: 'True', reason: plan.reason, message: plan.message + keep };
  }
  if (applyError) return { status: 'True', reason: applyError.reason, message: applyError.message };
  const p = podProblems(pods, gpuResource);
  if (p.short.length > 0) {
    const first = p.short[0]?.message ?? '';
    const need = gpusPerPod !== undefined ? ` Each pod needs ${gpusPerPod} ${gpuResource} on one node;` : '';
    return {
      status: 'True',
      reason: 'InsufficientGPUs',
      message:
        `${p.short.length} pod(s) Pending: not enough free ${gpuResource}.${need} free GPUs, add GPU nodes, or lower ` +
        `replicas or the tensor-parallel size. Scheduler: ${first}`,
    };
  }
  if (p.unschedulable.length > 0) {
    return {
      status: 'True',
      reason: 'Unschedulable',
      message: `${p.unschedulable.length} pod(s) Pending. Scheduler: ${p.unschedulable[0]?.message ?? ''}`,
    };
  }
  if (p.failing.length > 0) {
    return { status: 'True', reason: 'PodsFailing', message: p.failing.slice(0, 3).join('; ') };
  }
  const conds = deployment?.status?.conditions ?? [];
  const replicaFailure = conds.find((c) => c.type === 'ReplicaFailure' && c.status === 'True');
  if (replicaFailure) {
    return { status: 'True', reason: 'ReplicaFailure', message: replicaFailure.message ?? 'pods cannot be created' };
  }
  const stalled = conds.find((c) => c.type === 'Progressing' && c.reason === 'ProgressDeadlineExceeded');
  if (stalled) return { status: 'True', reason: 'ProgressDeadlineExceeded', message: stalled.message ?? '' };
  return { status: 'False', reason: 'AsExpected', message: 'no problems found' };
}

export function computeStatus(input: StatusInput): InferenceDeploymentStatus {
  const { cr, plan, deployment } = input;
  const name = cr.metadata.name;
  const desired = cr.spec.replicas ?? 1;
  const ds = deployment?.status ?? {};
  const replicas = ds.replicas ?? 0;
  const ready = ds.readyReplicas ?? 0;
  const updated = ds.updatedReplicas ?? 0;
  const available = ds.availableReplicas ?? 0;
  const gpuResource = cr.spec.gpu?.resourceName ?? 'nvidia.com/gpu';
  const planStatus = plan.planned ? plan.plan : deployment ? cr.status?.plan : undefined;

  const planned: Verdict = plan.planned
    ? { status: 'True', reason: 'PlanComputed', message: plan.plan.reason }
    : { status: 'False', reason: plan.reason, message: plan.message };

  const degraded = degradedVerdict(input, gpuResource, planStatus?.gpusPerReplica);

  const observed = !!deployment && (ds.observedGeneration ?? 0) >= (deployment.metadata.generation ?? 0);
  const rolledOut = observed && updated === desired && replicas === desired && available === desired;
  let progressing: Verdict;
  if (!deployment) {
    progressing = plan.planned
      ? { status: 'True', reason: 'Creating', message: 'creating the Deployment' }
      : { status: 'False', reason: plan.reason, message: 'no plan, nothing to roll out' };
  } else if (degraded.reason === 'ProgressDeadlineExceeded') {
    progressing = { status: 'False', reason: 'ProgressDeadlineExceeded', message: degraded.message };
  } else if (!rolledOut) {
    progressing = {
      status: 'True',
      reason: 'RollingOut',
      message: `${updated}/${desired} replicas updated, ${available} available, ${replicas} total`,
    };
  } else {
    progressing = {
      status: 'False',
      reason: 'RolloutComplete',
      message: `${desired} replicas run the current configuration`,
    };
  }

  let readyV: Verdict;
  if (desired === 0) {
    readyV = { status: 'False', reason: 'ScaledToZero', message: 'spec.replicas is 0' };
  } else if (!deployment) {
    readyV = plan.planned
      ? { status: 'False', reason: 'Creating', message: 'waiting for the Deployment' }
      : { status: 'False', reason: plan.reason, message: plan.message };
  } else if (ready >= desired) {
    readyV = { status: 'True', reason: 'ReplicasReady', message: `${ready}/${desired} replicas ready` };
  } else {
    const why = degraded.status === 'True' ? ` ${degraded.reason}: ${degraded.message}` : '';
    readyV = {
      status: 'False',
      reason: degraded.status === 'True' ? degraded.reason : 'ReplicasNotReady',
      message: `${ready}/${desired} replicas ready.${why}`,
    };
  }

  const verdicts: Record<ReconcilerCondition, Verdict> = {
    Planned: planned,
    Progressing: progressing,
    Ready: readyV,
    Degraded: degraded,
  };
  const previous = new Map((cr.status?.conditions ?? []).map((c) => [c.type, c]));
  const conditions: Condition[] = RECONCILER_CONDITIONS.map((type) => {
    const v = verdicts[type];
    const prev = previous.get(type);
    return {
      type,
      status: v.status,
      reason: v.reason,
      message: v.message.slice(0, 32_000),
      lastTransitionTime:
        prev && prev.status === v.status ? prev.lastTransitionTime : input.now.toISOString().replace(/\.\d+Z$/, 'Z'),
      observedGeneration: cr.metadata.generation ?? 0,
    };
  });

  const status: InferenceDeploymentStatus = {
    observedGeneration: cr.metadata.generation ?? 0,
    replicas,
    readyReplicas: ready,
    updatedReplicas: updated,
    availableReplicas: available,
    selector: `inference.pagoda.dev/name=${name}`,
    conditions,
  };
  if (planStatus) status.plan = planStatus;
  if (plan.planned || deployment) status.endpoint = `http://${name}.${cr.metadata.namespace ?? 'default'}.svc:8000/v1`;
  return status;
}

/** The part of a status the reconciler writes (what computeStatus returns is compared with this). */
export function reconcilerStatus(status: InferenceDeploymentStatus | undefined): InferenceDeploymentStatus | undefined {
  if (!status) return status;
  const { autoscaling: _autoscaling, conditions, ...rest } = status;
  const own = conditions?.filter((c) => (RECONCILER_CONDITIONS as readonly string[]).includes(c.type));
  return own ? { ...rest, conditions: own } : rest;
}

/** Order-insensitive deep equality of JSON values (the API server may reorder keys). */
export function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => sameJson(x, b[i]));
  const ka = Object.keys(a).filter((k) => (a as Record<string, unknown>)[k] !== undefined);
  const kb = Object.keys(b).filter((k) => (b as Record<string, unknown>)[k] !== undefined);
  return (
    ka.length === kb.length &&
    ka.every((k) => sameJson((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]))
  );
}
