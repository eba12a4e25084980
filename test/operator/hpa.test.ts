/**
 * hpa mode and the scale subresource with HPAs, on the local control plane: the operator emits an
 * autoscaling/v2 HorizontalPodAutoscaler that the API server accepts; the real HPA controller of
 * kube-controller-manager resolves the InferenceDeployment's scale subresource and writes it (raising
 * replicas to minReplicas; there is no custom metrics adapter here, so it reports that it cannot read
 * the Pods metric, and status.autoscaling says so); `kubectl scale` and a PATCH of /scale change the
 * Deployment; switching to builtin deletes the HPA; the documented own-HPA example is valid.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import type { InferenceDeployment } from '../../operator/src/api/types.ts';
import { collectionPath, isNotFound, objectPath, RESOURCES } from '../../operator/src/kube/rest.ts';
import { REPO_ROOT } from '../../scripts/cluster/cluster.ts';
import { CLUSTER_SETUP_TIMEOUT_MS, readYaml, setupCluster, type TestCluster } from './support/cluster.ts';
import { type OperatorProcess, startOperator } from './support/operator-process.ts';
import { eventually } from './support/wait.ts';

// biome-ignore lint/suspicious/noExplicitAny: the tests read nested fields of Kubernetes objects
type Obj = Record<string, any>;

const NAME = 'qwen3-8b';
const EXAMPLES = join(REPO_ROOT, 'docs', 'examples', 'autoscaling');
/** kube-controller-manager syncs each HPA every 15 s. */
const HPA_SYNC_MS = 15_000;

let cluster: TestCluster;
let operator: OperatorProcess;
let ns: string;

beforeAll(async () => {
  cluster = await setupCluster();
  ns = await cluster.namespace('hpa');
  operator = await startOperator({
    kubeconfig: cluster.kubeconfig,
    identity: 'hpa-test',
    // A short autoscaler interval for the builtin-mode steps below (the default is 15 s).
    args: [`--leader-election-id=pagoda-operator-${ns}`, `--namespace=${ns}`, '--autoscaler-interval=2'],
  });
}, CLUSTER_SETUP_TIMEOUT_MS);

afterAll(async () => {
  const code = await operator?.stop();
  if (code !== 0 && operator) console.error(operator.logs());
  await cluster?.cleanup();
});

const crPath = () => objectPath(RESOURCES.inferenceDeployment, ns, NAME);
const hpaPath = () => objectPath(RESOURCES.horizontalPodAutoscaler, ns, NAME);
const getCr = () => cluster.client.get<InferenceDeployment>(crPath());
const deploymentReplicas = async () =>
  (await cluster.client.get<Obj>(objectPath(RESOURCES.deployment, ns, NAME))).spec.replicas as number;

describe('hpa mode', () => {
  it('creates an autoscaling/v2 HPA on the scale subresource, accepted by the API server', async () => {
    await cluster.client.create(collectionPath(RESOURCES.inferenceDeployment, ns), {
      apiVersion: 'inference.pagoda.dev/v1alpha1',
      kind: 'InferenceDeployment',
      metadata: { name: NAME, namespace: ns },
      spec: {
        model: { name: 'Qwen/Qwen3-8B', source: { hostPath: { path: '/models/qwen3-8b' } } },
        gpu: { product: 'NVIDIA-H100-80GB-HBM3' },
        autoscaling: {
          mode: 'hpa',
          minReplicas: 2,
          maxReplicas: 4,
          metric: 'requests',
          target: 16,
          scaleDown: { stabilizationWindowSeconds: 120 },
        },
      },
    });
    const hpa = await eventually('the HPA', () => cluster.client.get<Obj>(hpaPath()).catch(() => undefined));
    expect(hpa.spec).toMatchObject({
      scaleTargetRef: { apiVersion: 'inference.pagoda.dev/v1alpha1', kind: 'InferenceDeployment', name: NAME },
      minReplicas: 2,
      maxReplicas: 4,
      metrics: [
        {
          type: 'Pods',
          pods: { metric: { name: 'pagoda_num_requests' }, target: { type: 'AverageValue', averageValue: '16' } },
        },
      ],
    });
    expect(hpa.spec.behavior.scaleDown.stabilizationWindowSeconds).toBe(120);
    expect(hpa.metadata.ownerReferences[0]).toMatchObject({
      kind: 'InferenceDeployment',
      name: NAME,
      controller: true,
    });
    const row = await cluster.kubectl(['get', 'hpa', NAME, '-n', ns, '--no-headers']);
    expect(row).toContain(`InferenceDeployment/${NAME}`);
  });

  it("the cluster's HPA controller writes the scale subresource: replicas rise to minReplicas, the Deployment follows", async () => {
    await eventually('spec.replicas = minReplicas (2)', async () => (await getCr()).spec.replicas === 2, {
      timeoutMs: 4 * HPA_SYNC_MS,
    });
    await eventually('Deployment replicas 2', async () => (await deploymentReplicas()) === 2);
    // On its next sync (replicas now at minReplicas) it turns to the metric; without a metrics adapter in
    // this cluster it reports that it cannot read the Pods metric, and status.autoscaling mirrors that.
    const cr = await eventually(
      'status.autoscaling mirrors the HPA',
      async () => {
        const c = await getCr();
        return c.status?.autoscaling?.reason === 'FailedGetPodsMetric' ? c : undefined;
      },
      { timeoutMs: 3 * HPA_SYNC_MS },
    );
    const hpa = await cluster.client.get<Obj>(hpaPath());
    const cond = (type: string) => hpa.status.conditions.find((c: Obj) => c.type === type);
    expect(cond('AbleToScale')).toMatchObject({ status: 'True' }); // it reads the scale subresource
    expect(cond('ScalingActive')).toMatchObject({ status: 'False', reason: 'FailedGetPodsMetric' });
    const events = await cluster.client.list<Obj>(collectionPath(RESOURCES.event, ns), {
      fieldSelector: `involvedObject.kind=HorizontalPodAutoscaler,involvedObject.name=${NAME},reason=SuccessfulRescale`,
    });
    expect(events.items.map((e) => e.message).join('\n')).toContain('New size: 2');
    expect(cr.status?.autoscaling).toMatchObject({ mode: 'hpa', horizontalPodAutoscaler: NAME, desiredReplicas: 2 });
    expect(cr.status?.autoscaling?.message).toContain('pagoda_num_requests');
    expect(cr.status?.conditions?.some((c) => c.type === 'ScalingLimited')).toBe(false);
  });

  it('kubectl scale and a PATCH of /scale change the Deployment', async () => {
    await cluster.kubectl(['scale', `infd/${NAME}`, '-n', ns, '--replicas', '3']);
    await eventually('Deployment replicas 3', async () => (await deploymentReplicas()) === 3);
    const scalePath = objectPath(RESOURCES.inferenceDeployment, ns, NAME, 'scale');
    const scale = await cluster.client.get<Obj>(scalePath);
    expect(scale.status.selector).toBe(`inference.pagoda.dev/name=${NAME}`);
    await cluster.client.mergePatch(scalePath, { spec: { replicas: 4 } });
    await eventually('Deployment replicas 4', async () => (await deploymentReplicas()) === 4);
    await eventually('4 ready replicas', async () => (await getCr()).status?.readyReplicas === 4);
  });

  it('switching to builtin mode deletes the HPA; the builtin autoscaler reports pods it cannot reach', async () => {
    await cluster.client.mergePatch(crPath(), { spec: { autoscaling: { mode: 'builtin' } } });
    await eventually('the HPA deleted', async () => {
      try {
        await cluster.client.get(hpaPath());
        return false;
      } catch (e) {
        return isNotFound(e);
      }
    });
    // kwok pod IPs route nowhere and this operator has no target map: every scrape fails, nothing scales.
    const cr = await eventually(
      'builtin status',
      async () => {
        const c = await getCr();
        return c.status?.autoscaling?.mode === 'builtin' && c.status.autoscaling.reason === 'NoMetrics' ? c : undefined;
      },
      { timeoutMs: 30_000 },
    );
    expect(cr.status?.autoscaling?.message).toContain('4 Ready pod(s) not scraped');
    expect(cr.status?.autoscaling?.horizontalPodAutoscaler).toBeUndefined();
    expect(cr.spec.replicas).toBe(4);
  });

  it('removing spec.autoscaling removes status.autoscaling and ScalingLimited', async () => {
    await cluster.client.request('PATCH', crPath(), {
      body: [{ op: 'remove', path: '/spec/autoscaling' }],
      contentType: 'application/json-patch+json',
    });
    await eventually('status.autoscaling gone', async () => {
      const c = await getCr();
      return !c.status?.autoscaling && !c.status?.conditions?.some((x) => x.type === 'ScalingLimited');
    });
    const cr = await getCr();
    expect(cr.status?.conditions?.map((c) => c.type)).toEqual(['Planned', 'Progressing', 'Ready', 'Degraded']);
  });
});

it('the documented own-HPA example is valid against the API server', async () => {
  const [hpa] = readYaml(join(EXAMPLES, 'hpa.yaml')) as Obj[];
  await cluster.client.request('POST', collectionPath(RESOURCES.horizontalPodAutoscaler, ns), {
    body: { ...hpa, metadata: { ...hpa?.metadata, namespace: ns } },
    query: { dryRun: 'All' },
  });
  // The KEDA and adapter examples are for components this cluster does not run: check they parse.
  for (const f of ['keda-scaledobject.yaml', 'prometheus-adapter-rules.yaml']) {
    const docs = parseAllDocuments(readFileSync(join(EXAMPLES, f), 'utf8'));
    expect(docs.every((d) => d.errors.length === 0)).toBe(true);
  }
});
