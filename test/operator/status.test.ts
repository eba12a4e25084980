/** Conditions from what the cluster shows (pure): a table of situations and the status they produce. */
import { describe, expect, it } from 'vitest';
import type { InferenceDeployment } from '../../operator/src/api/types.ts';
import { crEventKey } from '../../operator/src/controller/controller.ts';
import { computeStatus, type DeploymentView, type PodView, sameJson } from '../../operator/src/controller/status.ts';
import { planFor } from '../../operator/src/plan/plan.ts';

const now = new Date('2026-11-29T12:00:00Z');

function cr(
  spec: Partial<InferenceDeployment['spec']> = {},
  status?: InferenceDeployment['status'],
): InferenceDeployment {
  return {
    apiVersion: 'inference.pagoda.dev/v1alpha1',
    kind: 'InferenceDeployment',
    metadata: { name: 'chat', namespace: 'ml', uid: 'u', generation: 2 },
    spec: {
      model: { name: 'Qwen/Qwen3-8B', source: { hostPath: { path: '/m' } } },
      gpu: { product: 'NVIDIA-H100-80GB-HBM3' },
      replicas: 2,
      ...spec,
    },
    ...(status ? { status } : {}),
  };
}

const dep = (s: NonNullable<DeploymentView['status']>, generation = 3): DeploymentView => ({
  metadata: { generation },
  status: s,
});
const healthy = dep({ observedGeneration: 3, replicas: 2, updatedReplicas: 2, readyReplicas: 2, availableReplicas: 2 });
const pending = (message: string): PodView => ({
  metadata: { name: 'p1' },
  status: {
    phase: 'Pending',
    conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message }],
  },
});

function status(c: InferenceDeployment, deployment: DeploymentView | undefined, pods: PodView[] = []) {
  const s = computeStatus({ cr: c, plan: planFor(c, { defaultImage: 'img' }), deployment, pods, now });
  const cond = Object.fromEntries((s.conditions ?? []).map((x) => [x.type, `${x.status}/${x.reason}`]));
  return { s, cond };
}

describe('conditions', () => {
  it.each([
    [
      'a new CR, before the Deployment exists',
      cr(),
      undefined,
      [],
      {
        Planned: 'True/PlanComputed',
        Progressing: 'True/Creating',
        Ready: 'False/Creating',
        Degraded: 'False/AsExpected',
      },
    ],
    [
      'a rollout the Deployment controller has not observed yet',
      cr(),
      dep({ observedGeneration: 2, replicas: 2, updatedReplicas: 2, readyReplicas: 2, availableReplicas: 2 }),
      [],
      { Progressing: 'True/RollingOut', Ready: 'True/ReplicasReady' },
    ],
    [
      'all replicas ready',
      cr(),
      healthy,
      [],
      {
        Planned: 'True/PlanComputed',
        Progressing: 'False/RolloutComplete',
        Ready: 'True/ReplicasReady',
        Degraded: 'False/AsExpected',
      },
    ],
    [
      'a pod short of GPUs',
      cr(),
      dep({ observedGeneration: 3, replicas: 2, updatedReplicas: 2, readyReplicas: 1, availableReplicas: 1 }),
      [pending('0/4 nodes are available: 4 Insufficient nvidia.com/gpu.')],
      { Ready: 'False/InsufficientGPUs', Degraded: 'True/InsufficientGPUs', Progressing: 'True/RollingOut' },
    ],
    [
      'a pod unschedulable for another reason',
      cr(),
      dep({ observedGeneration: 3, replicas: 2, updatedReplicas: 2, readyReplicas: 1, availableReplicas: 1 }),
      [pending('0/4 nodes are available: persistentvolumeclaim "w" not found.')],
      { Degraded: 'True/Unschedulable', Ready: 'False/Unschedulable' },
    ],
    [
      'a crash-looping container',
      cr(),
      dep({ observedGeneration: 3, replicas: 2, updatedReplicas: 2, readyReplicas: 1, availableReplicas: 1 }),
      [
        {
          metadata: { name: 'p2' },
          status: {
            phase: 'Running',
            containerStatuses: [
              { name: 'runtime', state: { waiting: { reason: 'CrashLoopBackOff', message: 'back-off 5m' } } },
            ],
          },
        },
      ],
      { Degraded: 'True/PodsFailing', Ready: 'False/PodsFailing' },
    ],
    [
      'a stalled rollout',
      cr(),
      dep({
        observedGeneration: 3,
        replicas: 3,
        updatedReplicas: 1,
        readyReplicas: 2,
        availableReplicas: 2,
        conditions: [
          { type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded', message: 'timed out' },
        ],
      }),
      [],
      {
        Degraded: 'True/ProgressDeadlineExceeded',
        Progressing: 'False/ProgressDeadlineExceeded',
        Ready: 'True/ReplicasReady',
      },
    ],
    [
      'scaled to zero',
      cr({ replicas: 0 }),
      dep({ observedGeneration: 3, replicas: 0 }),
      [],
      { Ready: 'False/ScaledToZero', Progressing: 'False/RolloutComplete' },
    ],
    [
      'an unfit plan for a new CR',
      cr({
        model: { name: 'meta-llama/Llama-3.1-70B-Instruct', source: { hostPath: { path: '/m' } } },
        gpu: { product: 'NVIDIA-L4' },
      }),
      undefined,
      [],
      {
        Planned: 'False/DoesNotFit',
        Progressing: 'False/DoesNotFit',
        Ready: 'False/DoesNotFit',
        Degraded: 'True/DoesNotFit',
      },
    ],
  ] as [string, InferenceDeployment, DeploymentView | undefined, PodView[], Record<string, string>][])(
    '%s',
    (_what, c, deployment, pods, want) => {
      const { cond } = status(c, deployment, pods);
      expect(cond).toMatchObject(want);
    },
  );
});

describe('status fields', () => {
  it('reports replicas, the selector, the endpoint and the plan', () => {
    const { s } = status(cr(), healthy);
    expect(s).toMatchObject({
      observedGeneration: 2,
      replicas: 2,
      readyReplicas: 2,
      selector: 'inference.pagoda.dev/name=chat',
      endpoint: 'http://chat.ml.svc:8000/v1',
      plan: { tensorParallelSize: 1, totalGpus: 2 },
    });
  });

  it('an unfit change keeps the plan the running pods use, and says they keep serving', () => {
    const running = status(cr(), healthy).s;
    const unfit = cr({ parallelism: { tensor: 8 }, gpu: { product: 'NVIDIA-H100-80GB-HBM3', perNode: 4 } }, running);
    const { s } = status(unfit, healthy);
    expect(s.plan).toEqual(running.plan);
    expect(s.conditions?.find((c) => c.type === 'Degraded')?.message).toContain(
      'The running pods keep the last valid plan.',
    );
  });

  it('no plan and no Deployment: no plan, no endpoint', () => {
    const { s } = status(cr({ model: { name: 'acme/x', source: { hostPath: { path: '/m' } } } }), undefined);
    expect(s.plan).toBeUndefined();
    expect(s.endpoint).toBeUndefined();
  });

  it('keeps lastTransitionTime while a condition holds, and moves it when it flips', () => {
    const before = computeStatus({
      cr: cr(),
      plan: planFor(cr(), { defaultImage: 'i' }),
      deployment: healthy,
      pods: [],
      now: new Date('2026-01-01T00:00:00Z'),
    });
    const later = cr({}, before);
    const same = computeStatus({
      cr: later,
      plan: planFor(later, { defaultImage: 'i' }),
      deployment: healthy,
      pods: [],
      now,
    });
    expect(sameJson(same, before)).toBe(true);
    const notReady = dep({
      observedGeneration: 3,
      replicas: 2,
      updatedReplicas: 2,
      readyReplicas: 1,
      availableReplicas: 1,
    });
    const flipped = computeStatus({
      cr: later,
      plan: planFor(later, { defaultImage: 'i' }),
      deployment: notReady,
      pods: [],
      now,
    });
    const ready = flipped.conditions?.find((c) => c.type === 'Ready');
    expect(ready?.status).toBe('False');
    expect(ready?.lastTransitionTime).toBe('2026-11-29T12:00:00Z');
    expect(flipped.conditions?.find((c) => c.type === 'Planned')?.lastTransitionTime).toBe('2026-01-01T00:00:00Z');
  });

  it('sameJson ignores key order and undefined fields', () => {
    expect(sameJson({ a: 1, b: { c: [1, 2] }, d: undefined }, { b: { c: [1, 2] }, a: 1 })).toBe(true);
    expect(sameJson({ a: [1, 2] }, { a: [2, 1] })).toBe(false);
  });
});

describe('which CR events bring a reconcile', () => {
  const ready = (status: 'True' | 'False'): InferenceDeployment['status'] => ({
    observedGeneration: 2,
    conditions: [
      {
        type: 'Ready',
        status,
        reason: status === 'True' ? 'ReplicasReady' : 'ReplicasNotReady',
        message: '',
        lastTransitionTime: now.toISOString(),
      },
    ],
  });
  it('spec changes, deletion and changes to the reconciler status do; autoscaler-only status changes do not', () => {
    const base = cr({}, ready('True'));
    expect(crEventKey(base, 'add')).toBe('ml/chat');
    expect(crEventKey({ ...base, metadata: { ...base.metadata, generation: 3 } }, 'update', base)).toBe('ml/chat');
    expect(
      crEventKey({ ...base, metadata: { ...base.metadata, deletionTimestamp: now.toISOString() } }, 'update', base),
    ).toBe('ml/chat');
    // An older write of ours arriving late (Ready True -> False in the cache) must be looked at again.
    expect(crEventKey(cr({}, ready('False')), 'update', base)).toBe('ml/chat');
    expect(crEventKey(cr({}, ready('True')), 'update', base)).toBeUndefined();
    const scaled = cr({}, { ...ready('True'), autoscaling: { desiredReplicas: 3 } } as InferenceDeployment['status']);
    expect(crEventKey(scaled, 'update', base)).toBeUndefined();
  });
});
