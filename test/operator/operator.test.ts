/**
 * The operator process against the local control plane (kwok GPU nodes): an example becomes a
 * Deployment with the planned GPUs whose pods bind to GPU nodes and run, status Ready with the plan;
 * updates roll; deleted children come back; deleting the CR garbage-collects them; unfit models get
 * Planned=False and no pods; too few GPUs leave pods Pending with a condition saying so; kubectl shows
 * the columns and scales through the scale subresource.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Condition, InferenceDeployment } from '../../operator/src/api/types.ts';
import { collectionPath, isNotFound, objectPath, RESOURCES } from '../../operator/src/kube/rest.ts';
import { REPO_ROOT } from '../../scripts/cluster/cluster.ts';
import { createGpuNodes, deleteGpuNodes, readyNodes } from '../../scripts/cluster/nodes.ts';
import { CLUSTER_SETUP_TIMEOUT_MS, readYaml, setupCluster, type TestCluster } from './support/cluster.ts';
import { type OperatorProcess, startOperator } from './support/operator-process.ts';
import { eventually } from './support/wait.ts';

let cluster: TestCluster;
let operator: OperatorProcess;
let ns: string;

// biome-ignore lint/suspicious/noExplicitAny: the tests read nested fields of Kubernetes objects
type Obj = Record<string, any>;

beforeAll(async () => {
  cluster = await setupCluster();
  ns = await cluster.namespace('infd');
  operator = await startOperator({
    kubeconfig: cluster.kubeconfig,
    identity: 'operator-test',
    args: [`--leader-election-id=pagoda-operator-${ns}`, '--runtime-image=registry.example/pagoda-runtime:test'],
  });
}, CLUSTER_SETUP_TIMEOUT_MS);

afterAll(async () => {
  const code = await operator?.stop();
  if (code !== 0 && operator) console.error(operator.logs());
  await cluster?.cleanup();
});

const crPath = (name: string) => objectPath(RESOURCES.inferenceDeployment, ns, name);
const getCr = (name: string) => cluster.client.get<InferenceDeployment>(crPath(name));
const condition = (cr: InferenceDeployment, type: Condition['type']) =>
  cr.status?.conditions?.find((c) => c.type === type);

async function applyCr(doc: Obj): Promise<void> {
  const body = { ...doc, metadata: { ...doc.metadata, namespace: ns } };
  await cluster.client.apply(crPath(doc.metadata.name), body, 'pagoda-tests');
}

function crDoc(name: string, spec: Obj): Obj {
  return { apiVersion: 'inference.pagoda.dev/v1alpha1', kind: 'InferenceDeployment', metadata: { name }, spec };
}

async function waitCondition(
  name: string,
  type: Condition['type'],
  status: string,
  reason?: string,
  timeoutMs = 60_000,
) {
  return eventually(
    `${name} ${type}=${status}${reason ? ` (${reason})` : ''}`,
    async () => {
      const cr = await getCr(name);
      const c = condition(cr, type);
      return c?.status === status &&
        (!reason || c.reason === reason) &&
        cr.status?.observedGeneration === cr.metadata.generation
        ? cr
        : undefined;
    },
    { timeoutMs },
  );
}

async function podsOf(name: string): Promise<Obj[]> {
  const list = await cluster.client.list<Obj>(collectionPath(RESOURCES.pod, ns), {
    labelSelector: `inference.pagoda.dev/name=${name}`,
  });
  return list.items.filter((p) => !p.metadata.deletionTimestamp);
}

describe('an example InferenceDeployment', () => {
  const name = 'qwen3-32b';

  it('becomes a Deployment with the planned GPUs, Running pods on GPU nodes, and Ready status with the plan', async () => {
    const [example] = readYaml(join(REPO_ROOT, 'crds', 'examples', 'qwen3-32b-explicit-tp.yaml'));
    await applyCr({ ...(example as Obj), spec: { ...(example as Obj).spec, replicas: 2 } });

    const cr = await waitCondition(name, 'Ready', 'True');
    expect(cr.status?.plan).toMatchObject({
      tensorParallelSize: 4,
      gpusPerReplica: 4,
      totalGpus: 8,
      tensorParallelSource: 'Spec',
    });
    expect(condition(cr, 'Planned')).toMatchObject({ status: 'True', reason: 'PlanComputed' });
    expect(condition(cr, 'Degraded')).toMatchObject({ status: 'False' });
    expect(cr.status).toMatchObject({ readyReplicas: 2, replicas: 2, endpoint: `http://${name}.${ns}.svc:8000/v1` });

    const dep = await cluster.client.get<Obj>(objectPath(RESOURCES.deployment, ns, name));
    const container = dep.spec.template.spec.containers[0];
    expect(container.resources.limits['nvidia.com/gpu']).toBe('4');
    expect(container.image).toBe('registry.example/pagoda-runtime:test');
    expect(container.args).toContain('--tensor-parallel-size');
    expect(dep.metadata.ownerReferences[0]).toMatchObject({ kind: 'InferenceDeployment', name, controller: true });
    expect(dep.metadata.managedFields.map((f: Obj) => f.manager)).toContain('pagoda-operator');

    const pods = await podsOf(name);
    expect(pods).toHaveLength(2);
    for (const p of pods) {
      expect(p.status.phase).toBe('Running');
      expect(p.spec.nodeName).toMatch(/^gpu-node-\d+$/);
    }
    const svc = await cluster.client.get<Obj>(objectPath(RESOURCES.service, ns, name));
    expect(svc.spec.ports[0]).toMatchObject({ name: 'http', port: 8000 });
    await cluster.client.get(objectPath(RESOURCES.podDisruptionBudget, ns, name));
  });

  it('rolls the pods when the tensor-parallel size changes', async () => {
    const before = new Set((await podsOf(name)).map((p) => p.metadata.name));
    await cluster.client.mergePatch(crPath(name), { spec: { parallelism: { tensor: 2 } } });
    await eventually('pods replaced with TP=2 pods', async () => {
      const pods = await podsOf(name);
      return (
        pods.length === 2 &&
        pods.every(
          (p) =>
            !before.has(p.metadata.name) &&
            p.status.phase === 'Running' &&
            p.spec.containers[0].resources.limits['nvidia.com/gpu'] === '2',
        )
      );
    });
    const cr = await waitCondition(name, 'Progressing', 'False', 'RolloutComplete');
    expect(cr.status?.plan?.tensorParallelSize).toBe(2);
    expect(condition(cr, 'Ready')?.status).toBe('True');
  });

  it('rolls the pods when the model changes', async () => {
    const hashOf = async () =>
      (await cluster.client.get<Obj>(objectPath(RESOURCES.deployment, ns, name))).spec.template.metadata.annotations[
        'inference.pagoda.dev/config-hash'
      ];
    const oldHash = await hashOf();
    await cluster.client.mergePatch(crPath(name), {
      spec: { model: { name: 'Qwen/Qwen3-14B', source: { hostPath: { path: '/mnt/models/Qwen3-14B' } } } },
    });
    await eventually('pods serving Qwen3-14B', async () => {
      const pods = await podsOf(name);
      return (
        pods.length === 2 &&
        pods.every((p) => p.status.phase === 'Running' && p.spec.containers[0].args.includes('Qwen/Qwen3-14B'))
      );
    });
    expect(await hashOf()).not.toBe(oldHash);
    await waitCondition(name, 'Progressing', 'False', 'RolloutComplete');
  });

  it('recreates a deleted child', async () => {
    for (const r of [RESOURCES.service, RESOURCES.podDisruptionBudget, RESOURCES.deployment]) {
      const old = await cluster.client.get<Obj>(objectPath(r, ns, name));
      await cluster.client.delete(objectPath(r, ns, name));
      await eventually(`${r.plural} recreated`, async () => {
        const now = await cluster.client.get<Obj>(objectPath(r, ns, name)).catch(() => undefined);
        return now && now.metadata.uid !== old.metadata.uid;
      });
    }
    // Ready can still read True from before the Deployment was deleted: wait for the new one's pods.
    await eventually('the recreated Deployment ready', async () => {
      const dep = await cluster.client.get<Obj>(objectPath(RESOURCES.deployment, ns, name));
      return dep.status?.readyReplicas === 2;
    });
    await waitCondition(name, 'Ready', 'True');
  });

  it('kubectl get infd shows the columns', async () => {
    await waitCondition(name, 'Ready', 'True');
    const out = await cluster.kubectl(['get', 'infd', name, '-n', ns]);
    const [header, row] = out.trim().split('\n');
    expect(header?.split(/\s+/)).toEqual(['NAME', 'MODEL', 'TP', 'GPUS', 'REPLICAS', 'READY', 'AGE']);
    expect(row?.split(/\s+/).slice(0, 6)).toEqual([name, 'Qwen/Qwen3-14B', '2', '4', '2', 'True']);
    const wide = await cluster.kubectl(['get', 'infd', name, '-n', ns, '-o', 'wide']);
    expect(wide).toContain('READY-REPLICAS');
    expect(wide).toContain('ReplicasReady');
  });

  it('kubectl scale infd/x --replicas 3 works through the scale subresource', async () => {
    await cluster.kubectl(['scale', `infd/${name}`, '-n', ns, '--replicas', '3']);
    const cr = await eventually('3 ready replicas', async () => {
      const c = await getCr(name);
      return c.status?.readyReplicas === 3 && condition(c, 'Ready')?.status === 'True' ? c : undefined;
    });
    expect(cr.spec.replicas).toBe(3);
    expect(cr.status?.plan?.totalGpus).toBe(6);
    const scale = await cluster.client.get<Obj>(objectPath(RESOURCES.inferenceDeployment, ns, name, 'scale'));
    expect(scale.status).toMatchObject({ replicas: 3, selector: `inference.pagoda.dev/name=${name}` });
    const dep = await cluster.client.get<Obj>(objectPath(RESOURCES.deployment, ns, name));
    expect(dep.spec.replicas).toBe(3);
  });

  it('records Events for its decisions', async () => {
    // Events are written asynchronously, after the decisions they report.
    await eventually('Planned, Created, Ready and Replanned Events', async () => {
      const events = await cluster.client.list<Obj>(collectionPath(RESOURCES.event, ns), {
        fieldSelector: `involvedObject.name=${name},involvedObject.kind=InferenceDeployment`,
      });
      const reasons = new Set(events.items.map((e) => e.reason));
      return ['Planned', 'Created', 'Ready', 'Replanned'].every((r) => reasons.has(r));
    });
  });

  it('garbage-collects the children when the CR is deleted', async () => {
    await cluster.client.delete(crPath(name));
    for (const r of [RESOURCES.deployment, RESOURCES.service, RESOURCES.podDisruptionBudget]) {
      await eventually(`${r.plural} deleted`, async () => {
        try {
          await cluster.client.get(objectPath(r, ns, name));
          return false;
        } catch (e) {
          return isNotFound(e);
        }
      });
    }
    await eventually('pods deleted', async () => (await podsOf(name)).length === 0);
  });
});

describe('refusals and shortages', () => {
  it('an unfit model gets Planned=False with what would fit, and no pods', async () => {
    await applyCr(
      crDoc('too-big', {
        model: { name: 'meta-llama/Llama-3.1-70B-Instruct', source: { hostPath: { path: '/m/llama' } } },
        gpu: { product: 'NVIDIA-L4' },
      }),
    );
    const cr = await waitCondition('too-big', 'Planned', 'False', 'DoesNotFit');
    expect(condition(cr, 'Planned')?.message).toContain('Would fit:');
    expect(condition(cr, 'Degraded')).toMatchObject({ status: 'True', reason: 'DoesNotFit' });
    expect(condition(cr, 'Ready')?.status).toBe('False');
    await expect(cluster.client.get(objectPath(RESOURCES.deployment, ns, 'too-big'))).rejects.toMatchObject({
      status: 404,
    });
    expect(await podsOf('too-big')).toHaveLength(0);
    await eventually('a DoesNotFit Warning Event', async () => {
      const events = await cluster.client.list<Obj>(collectionPath(RESOURCES.event, ns), {
        fieldSelector: 'involvedObject.name=too-big',
      });
      return events.items.some((e) => e.type === 'Warning' && e.reason === 'DoesNotFit');
    });
  });

  it('does not take over a same-named object it does not own', async () => {
    await cluster.client.create(collectionPath(RESOURCES.service, ns), {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'taken' },
      spec: { selector: { app: 'someone-else' }, ports: [{ name: 'web', port: 80 }] },
    });
    await applyCr(
      crDoc('taken', {
        model: { name: 'Qwen/Qwen3-0.6B', source: { hostPath: { path: '/m/qwen' } } },
        gpu: { product: 'NVIDIA-H100-80GB-HBM3' },
      }),
    );
    const cr = await waitCondition('taken', 'Degraded', 'True', 'NameConflict');
    expect(condition(cr, 'Degraded')?.message).toContain('a Service named taken exists and is not controlled by this');
    const svc = await cluster.client.get<Obj>(objectPath(RESOURCES.service, ns, 'taken'));
    expect(svc.spec.selector).toEqual({ app: 'someone-else' });
    expect(svc.metadata.ownerReferences).toBeUndefined();
    await cluster.client.delete(crPath('taken'));
  });

  it('too few free GPUs leave pods Pending and say so in a condition', async () => {
    // Two dedicated nodes with 2 L40S each; 3 replicas × TP=2 need 6 GPUs, 4 exist.
    const prefix = `l40s-${ns}`;
    await createGpuNodes(cluster.client, { prefix, count: 2, gpusPerNode: 2, product: 'NVIDIA-L40S' });
    try {
      await eventually('L40S nodes ready', async () => (await readyNodes(cluster.client, prefix)).length === 2);
      await applyCr(
        crDoc('short', {
          model: { name: 'Qwen/Qwen3-14B', source: { hostPath: { path: '/m/qwen' } } },
          maxModelLen: 32768,
          parallelism: { tensor: 2 },
          gpu: { product: 'NVIDIA-L40S', perNode: 2 },
          replicas: 3,
        }),
      );
      const cr = await waitCondition('short', 'Degraded', 'True', 'InsufficientGPUs');
      expect(cr.status?.plan?.tensorParallelSize).toBe(2);
      expect(condition(cr, 'Degraded')?.message).toContain('Insufficient nvidia.com/gpu');
      expect(condition(cr, 'Ready')).toMatchObject({ status: 'False', reason: 'InsufficientGPUs' });
      // The condition can be set while kwok is still starting the two pods that did fit.
      const pods = await eventually('2 pods Running, 1 Pending', async () => {
        const now = await podsOf('short');
        return now.filter((p) => p.status.phase === 'Running').length === 2 ? now : undefined;
      });
      expect(pods.filter((p) => p.status.phase === 'Pending')).toHaveLength(1);
      expect(pods.filter((p) => p.status.phase === 'Running')).toHaveLength(2);

      await cluster.client.mergePatch(crPath('short'), { spec: { replicas: 2 } });
      const fixed = await waitCondition('short', 'Ready', 'True');
      expect(condition(fixed, 'Degraded')?.status).toBe('False');
    } finally {
      await cluster.client.delete(crPath('short')).catch(() => undefined);
      await deleteGpuNodes(cluster.client, prefix);
    }
  });
});

it('serves metrics and readiness', async () => {
  expect(await operator.ready()).toBe(true);
  expect(await operator.metric('pagoda_operator_reconcile_total', 'result="success"')).toBeGreaterThan(0);
  expect(await operator.metric('pagoda_operator_leader')).toBe(1);
  const text = await (await fetch(`http://127.0.0.1:${operator.port}/metrics`)).text();
  for (const m of [
    'pagoda_operator_reconcile_duration_seconds_bucket',
    'pagoda_operator_queue_depth',
    'pagoda_operator_process_resident_memory_bytes',
  ]) {
    expect(text).toContain(m);
  }
});
