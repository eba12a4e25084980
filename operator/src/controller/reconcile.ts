/**
 * One reconcile of one InferenceDeployment: read it and its children from the informer caches, plan,
 * server-side-apply the children (one field manager, controller owner references), then write status
 * and record Events for the decisions that changed. Level-triggered and idempotent: it looks only at the
 * current state, so running it again changes nothing.
 */
import { createHash } from 'node:crypto';
import {
  API_VERSION,
  type Condition,
  type InferenceDeployment,
  type InferenceDeploymentStatus,
  KIND,
  type ObjectMeta,
} from '../api/types.ts';
import type { EventRecorder } from '../kube/events.ts';
import { isConflict, isNotFound, type KubeClient, objectPath, RESOURCES, type Resource } from '../kube/rest.ts';
import type { Logger } from '../log.ts';
import { FIELD_MANAGER } from '../plan/names.ts';
import { type Children, type KubeObject, type PlanOptions, planFor } from '../plan/plan.ts';
import type { QueueResult } from './queue.ts';
import { computeStatus, type DeploymentView, type PodView, reconcilerStatus, sameJson } from './status.ts';

export interface ChildObject {
  metadata: ObjectMeta;
}

export interface Cache<T> {
  get(name: string, namespace?: string): T | undefined;
  list(namespace?: string): readonly T[];
}

export interface ReconcileDeps {
  client: KubeClient;
  crs: Cache<InferenceDeployment>;
  deployments: Cache<ChildObject & DeploymentView>;
  services: Cache<ChildObject>;
  podDisruptionBudgets: Cache<ChildObject>;
  horizontalPodAutoscalers: Cache<ChildObject>;
  pods: Cache<PodView & { metadata: { labels?: Record<string, string> } }>;
  events: EventRecorder;
  planOptions: PlanOptions;
  log: Logger;
  /** What was last applied per child, to skip applies that would change nothing (see AppliedMemo). */
  memo: AppliedMemo;
}

/** A child that exists but belongs to someone else: refuse to take it over. */
class NameConflict extends Error {}

/**
 * Applying an unchanged object is a no-op for the API server but still a request; with hundreds of
 * InferenceDeployments and a reconcile per pod event they add up. The memo remembers, per child, the
 * hash of what was applied and a marker of the object right after (generation where the kind has one
 * that moves on spec changes, else resourceVersion). The apply is skipped while both still match the
 * cache: any change by someone else moves the marker and the next reconcile applies again. A periodic
 * resync clears the memo to heal drift a marker cannot see (labels, annotations).
 */
export class AppliedMemo {
  private readonly entries = new Map<string, { hash: string; marker: string }>();
  matches(key: string, hash: string, marker: string | undefined): boolean {
    const e = this.entries.get(key);
    return !!e && marker !== undefined && e.hash === hash && e.marker === marker;
  }
  set(key: string, hash: string, marker: string | undefined): void {
    if (marker !== undefined) this.entries.set(key, { hash, marker });
  }
  forget(prefix: string): void {
    for (const k of this.entries.keys()) if (k.startsWith(prefix)) this.entries.delete(k);
  }
  clear(): void {
    this.entries.clear();
  }
}

interface ChildSpec {
  kind: 'Deployment' | 'Service' | 'PodDisruptionBudget' | 'HorizontalPodAutoscaler';
  resource: Resource;
  cache: Cache<ChildObject>;
  desired: KubeObject;
  marker: (o: ChildObject) => string | undefined;
}

const byGeneration = (o: ChildObject) =>
  o.metadata.generation !== undefined ? `g${o.metadata.generation}` : undefined;
const byResourceVersion = (o: ChildObject) => o.metadata.resourceVersion;

function childSpecs(deps: ReconcileDeps, children: Children): ChildSpec[] {
  const hpa: ChildSpec[] = children.horizontalPodAutoscaler
    ? [
        {
          kind: 'HorizontalPodAutoscaler',
          resource: RESOURCES.horizontalPodAutoscaler,
          cache: deps.horizontalPodAutoscalers,
          desired: children.horizontalPodAutoscaler,
          marker: byGeneration,
        },
      ]
    : [];
  return [
    {
      kind: 'Deployment',
      resource: RESOURCES.deployment,
      cache: deps.deployments,
      desired: children.deployment,
      marker: byGeneration,
    },
    {
      kind: 'Service',
      resource: RESOURCES.service,
      cache: deps.services,
      desired: children.service,
      marker: byResourceVersion,
    },
    {
      kind: 'PodDisruptionBudget',
      resource: RESOURCES.podDisruptionBudget,
      cache: deps.podDisruptionBudgets,
      desired: children.podDisruptionBudget,
      marker: byGeneration,
    },
    ...hpa,
  ];
}

/**
 * The HorizontalPodAutoscaler exists only in autoscaling mode hpa: when the mode changes (or autoscaling
 * is removed) the operator deletes the one it made, else it would keep scaling.
 */
async function removeStaleHpa(deps: ReconcileDeps, cr: InferenceDeployment, children: Children): Promise<boolean> {
  if (children.horizontalPodAutoscaler) return false;
  const { name, namespace } = cr.metadata;
  const hpa = deps.horizontalPodAutoscalers.get(name, namespace);
  if (!hpa || !controlledBy(hpa, cr)) return false;
  try {
    // Only the one we saw (uid precondition), never a same-named HPA someone created since.
    await deps.client.request('DELETE', objectPath(RESOURCES.horizontalPodAutoscaler, namespace, name), {
      body: { apiVersion: 'v1', kind: 'DeleteOptions', preconditions: { uid: hpa.metadata.uid } },
    });
  } catch (e) {
    if (!isNotFound(e) && !isConflict(e)) throw e;
  }
  deps.memo.forget(`${namespace}/${name}/HorizontalPodAutoscaler`);
  return true;
}

function controlledBy(obj: ChildObject, cr: InferenceDeployment): boolean {
  return !!obj.metadata.ownerReferences?.some((r) => r.controller && r.uid === cr.metadata.uid);
}

/**
 * Applies one child unless the memo says it is unchanged; returns the object as the server has it, and
 * whether this apply created it.
 */
async function ensureChild(
  deps: ReconcileDeps,
  cr: InferenceDeployment,
  c: ChildSpec,
): Promise<{ obj: ChildObject; created: boolean }> {
  const { name, namespace } = c.desired.metadata;
  const memoKey = `${namespace}/${cr.metadata.name}/${c.kind}`;
  const hash = createHash('sha256').update(JSON.stringify(c.desired)).digest('hex');
  const current = c.cache.get(name, namespace);
  if (current && !controlledBy(current, cr)) {
    throw new NameConflict(`a ${c.kind} named ${name} exists and is not controlled by this InferenceDeployment`);
  }
  if (current && deps.memo.matches(memoKey, hash, c.marker(current))) return { obj: current, created: false };
  const path = objectPath(c.resource, namespace, name);
  let res: { status: number; body: ChildObject };
  if (current) {
    // Ours: force, so fields someone else changed (kubectl edit, scale) return to the plan.
    res = await deps.client.apply<ChildObject>(path, c.desired, FIELD_MANAGER, true);
  } else {
    // Not in our cache, which holds only our labelled children: usually it does not exist yet. Apply
    // without force, so a same-named object made by someone else conflicts instead of being taken over.
    try {
      res = await deps.client.apply<ChildObject>(path, c.desired, FIELD_MANAGER, false);
    } catch (e) {
      if (!isConflict(e)) throw e;
      const existing = await deps.client.get<ChildObject>(path);
      if (!controlledBy(existing, cr)) {
        throw new NameConflict(`a ${c.kind} named ${name} exists and is not controlled by this InferenceDeployment`);
      }
      res = await deps.client.apply<ChildObject>(path, c.desired, FIELD_MANAGER, true);
    }
  }
  deps.memo.set(memoKey, hash, c.marker(res.body));
  // 201: the apply created it (first reconcile, or the child had been deleted).
  return { obj: res.body, created: res.status === 201 };
}

function conditionOf(status: InferenceDeploymentStatus | undefined, type: Condition['type']): Condition | undefined {
  return status?.conditions?.find((c) => c.type === type);
}

/** Events for decisions: a new or changed plan, a refused plan, becoming ready, new problems. */
function recordTransitions(
  deps: ReconcileDeps,
  cr: InferenceDeployment,
  before: InferenceDeploymentStatus | undefined,
  after: InferenceDeploymentStatus,
): void {
  const was = (t: Condition['type']) => conditionOf(before, t);
  const now = (t: Condition['type']) => conditionOf(after, t);
  const planned = now('Planned');
  const prevPlanned = was('Planned');
  if (planned && (planned.status !== prevPlanned?.status || planned.reason !== prevPlanned?.reason)) {
    if (planned.status === 'True') deps.events.record(cr, 'Normal', 'Planned', planned.message);
    else deps.events.record(cr, 'Warning', planned.reason, planned.message);
  } else if (planned?.status === 'True' && before?.plan?.tensorParallelSize !== after.plan?.tensorParallelSize) {
    deps.events.record(cr, 'Normal', 'Replanned', planned.message);
  }
  const degraded = now('Degraded');
  const prevDegraded = was('Degraded');
  if (
    degraded?.status === 'True' &&
    degraded.reason !== planned?.reason &&
    (prevDegraded?.status !== 'True' || prevDegraded.reason !== degraded.reason)
  ) {
    deps.events.record(cr, 'Warning', degraded.reason, degraded.message);
  }
  const ready = now('Ready');
  if (ready?.status === 'True' && was('Ready')?.status !== 'True') {
    deps.events.record(cr, 'Normal', 'Ready', ready.message);
  }
}

export async function reconcile(deps: ReconcileDeps, key: string): Promise<QueueResult | undefined> {
  const [namespace, name] = key.split('/') as [string, string];
  const cr = deps.crs.get(name, namespace);
  if (!cr) {
    // Deleted: the garbage collector removes the children through their owner references.
    deps.memo.forget(`${namespace}/${name}/`);
    return undefined;
  }
  if (cr.metadata.deletionTimestamp) return undefined;

  const plan = planFor(cr, deps.planOptions);
  let deployment: (ChildObject & DeploymentView) | undefined = deps.deployments.get(name, namespace);
  let applyError: { reason: string; message: string } | undefined;
  let failure: unknown;
  if (plan.planned) {
    try {
      const specs = childSpecs(deps, plan.children);
      const results = await Promise.all(specs.map((c) => ensureChild(deps, cr, c)));
      // The applied Deployment is fresher than the cache (its spec is ours, its status the last known).
      if (results[0]) deployment = results[0].obj as ChildObject & DeploymentView;
      const created = specs.filter((_, i) => results[i]?.created).map((c) => c.kind);
      // One Event for what one reconcile created: three per new InferenceDeployment would be noise.
      if (created.length) deps.events.record(cr, 'Normal', 'Created', `Created ${created.join(', ')} ${name}`);
      if (await removeStaleHpa(deps, cr, plan.children)) {
        deps.events.record(
          cr,
          'Normal',
          'Deleted',
          `Deleted HorizontalPodAutoscaler ${name}: autoscaling mode is not hpa`,
        );
      }
    } catch (e) {
      failure = e;
      applyError = {
        reason: e instanceof NameConflict ? 'NameConflict' : 'ApplyFailed',
        message: e instanceof Error ? e.message : String(e),
      };
    }
  }
  if (deployment && !controlledBy(deployment, cr)) deployment = undefined;

  const pods = deps.pods.list(namespace).filter((p) => p.metadata.labels?.['inference.pagoda.dev/name'] === name);
  const status = computeStatus({ cr, plan, deployment, pods, applyError, now: new Date() });
  if (!sameJson(status, reconcilerStatus(cr.status))) {
    try {
      await deps.client.apply(
        objectPath(RESOURCES.inferenceDeployment, namespace, name, 'status'),
        { apiVersion: API_VERSION, kind: KIND, metadata: { name, namespace }, status },
        FIELD_MANAGER,
      );
    } catch (e) {
      if (isNotFound(e)) return undefined; // deleted meanwhile
      throw e;
    }
    recordTransitions(deps, cr, cr.status, status);
  }
  if (failure) throw failure;
  return undefined;
}
