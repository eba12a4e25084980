/**
 * The built-in autoscaler end to end: the operator process on the local control plane, with real
 * `pagoda serve` processes (CPU, the default model) as the metric sources under generated load.
 *
 * How the operator reaches real processes: kwok pods have no containers and unroutable IPs, so the
 * operator runs with --metrics-target-map, its pluggable scrape-target resolution, and the test maps each
 * Ready pod to a runtime process it started on localhost (support/runtime-load.ts). The rest is the
 * production path: pods from the informer cache, HTTP scrapes of the runtime's own /metrics, the
 * window, the decision, PUT /scale, the reconciler rolling the Deployment, the scheduler placing pods.
 *
 * Scenario (scrapes every 3 s, a 6 s metric window, target 2 requests per replica, 20 s scale-down
 * window, GPUs for 2 replicas):
 *   - 6 clients in a closed loop → replicas rise to ceil(6 / 2) = 3 within two scrape intervals;
 *   - the third pod is Pending for lack of GPUs; 10 clients → still 3, ScalingLimited=InsufficientGPUs;
 *   - load stops, the operator restarts meanwhile → replicas stay until the scale-down window has passed
 *     (the new process reads the recommendation history from status), then fall to minReplicas.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Condition, InferenceDeployment } from '../../operator/src/api/types.ts';
import { collectionPath, objectPath, RESOURCES } from '../../operator/src/kube/rest.ts';
import { createGpuNodes, deleteGpuNodes, readyNodes } from '../../scripts/cluster/nodes.ts';
import type { ServeProcess } from '../helpers/server.ts';
import { CLUSTER_SETUP_TIMEOUT_MS, setupCluster, type TestCluster } from './support/cluster.ts';
import { type OperatorProcess, startOperator } from './support/operator-process.ts';
import { ClosedLoopLoad, inFlight, PodTargetMap, startRuntimes, stopRuntimes } from './support/runtime-load.ts';
import { eventually } from './support/wait.ts';

const INTERVAL_S = 3;
const WINDOW_S = 6;
const SCALE_DOWN_S = 20;
const TARGET = 2;
const NAME = 'smol';
/**
 * Time the scrapes, the API server and the test's own polling may add to a decision on a busy, shared
 * 2-core machine. The count of autoscaler passes is checked exactly besides.
 */
const GRACE_MS = 2500;
const PASSES = 'pagoda_operator_autoscaler_pass_duration_seconds_count';

// biome-ignore lint/suspicious/noExplicitAny: the tests read nested fields of Kubernetes objects
type Obj = Record<string, any>;

let cluster: TestCluster;
let ns: string;
let nodePrefix: string;
let runtimes: ServeProcess[] = [];
let targets: PodTargetMap;
let load: ClosedLoopLoad;
let operator: OperatorProcess;
let mapDir: string;
let mapPath: string;

const operatorArgs = () => [
  `--leader-election-id=pagoda-operator-${ns}`,
  `--namespace=${ns}`,
  `--autoscaler-interval=${INTERVAL_S}`,
  `--metrics-target-map=${mapPath}`,
];

beforeAll(async () => {
  cluster = await setupCluster();
  ns = await cluster.namespace('autoscale');
  // GPUs for exactly two replicas, on nodes only this test's pods select (a product name of its own).
  nodePrefix = `as-${ns}`;
  await createGpuNodes(cluster.client, { prefix: nodePrefix, count: 2, gpusPerNode: 1, product: `TEST-${ns}` });
  await eventually('GPU nodes ready', async () => (await readyNodes(cluster.client, nodePrefix)).length === 2);
  runtimes = await startRuntimes(2, ['--max-num-seqs', '2']);
  mapDir = mkdtempSync(join(tmpdir(), 'pagoda-autoscale-'));
  mapPath = join(mapDir, 'targets.json');
  targets = new PodTargetMap({
    client: cluster.client,
    namespace: ns,
    name: NAME,
    path: mapPath,
    pool: runtimes.map((r) => r.url),
  });
  targets.start();
  load = new ClosedLoopLoad(() => targets.urls());
  operator = await startOperator({ kubeconfig: cluster.kubeconfig, identity: 'autoscaler-a', args: operatorArgs() });
}, CLUSTER_SETUP_TIMEOUT_MS);

afterAll(async () => {
  await load?.stop();
  await targets?.stop();
  const code = await operator?.stop();
  if (code !== 0 && operator) console.error(operator.logs());
  await stopRuntimes(runtimes);
  if (mapDir) rmSync(mapDir, { recursive: true, force: true });
  if (nodePrefix) await deleteGpuNodes(cluster.client, nodePrefix);
  await cluster?.cleanup();
});

const crPath = () => objectPath(RESOURCES.inferenceDeployment, ns, NAME);
const getCr = () => cluster.client.get<InferenceDeployment>(crPath());
const condition = (cr: InferenceDeployment, type: Condition['type']) =>
  cr.status?.conditions?.find((c) => c.type === type);
const replicas = async () => (await getCr()).spec.replicas;

/** The sum the autoscaler should see, read from the processes themselves. */
const totalInFlight = async () => (await Promise.all(runtimes.map((r) => inFlight(r.url)))).reduce((a, b) => a + b);

describe('built-in autoscaler on real runtime metrics', () => {
  it('starts at minReplicas with one Ready pod mapped to a runtime process', async () => {
    await cluster.client.create(collectionPath(RESOURCES.inferenceDeployment, ns), {
      apiVersion: 'inference.pagoda.dev/v1alpha1',
      kind: 'InferenceDeployment',
      metadata: { name: NAME, namespace: ns },
      spec: {
        model: { name: 'HuggingFaceTB/SmolLM2-135M-Instruct', source: { hostPath: { path: '/models/smollm2' } } },
        gpu: { product: `TEST-${ns}`, memoryGiB: 24 },
        autoscaling: {
          minReplicas: 1,
          maxReplicas: 4,
          metric: 'requests',
          target: TARGET,
          metricWindowSeconds: WINDOW_S,
          scaleDown: { stabilizationWindowSeconds: SCALE_DOWN_S },
        },
      },
    });
    const cr = await eventually('Ready with status.autoscaling', async () => {
      const c = await getCr();
      return condition(c, 'Ready')?.status === 'True' && c.status?.autoscaling?.scrapedPods === 1 ? c : undefined;
    });
    expect(cr.spec.replicas).toBe(1);
    expect(cr.status?.autoscaling).toMatchObject({
      mode: 'builtin',
      metric: 'requests',
      target: TARGET,
      currentValue: 0,
      currentReplicas: 1,
      desiredReplicas: 1,
    });
    expect(targets.urls()).toHaveLength(1);
  });

  it(`load up: 6 clients → ${Math.ceil(6 / TARGET)} replicas within two scrape intervals`, async () => {
    load.setConcurrency(6);
    await eventually('6 requests in flight on the runtime processes', async () => (await totalInFlight()) === 6, {
      intervalMs: 50,
    });
    const loaded = Date.now();
    const passesBefore = await operator.metric(PASSES);
    await eventually('3 replicas', async () => (await replicas()) === 3, {
      timeoutMs: 2 * INTERVAL_S * 1000 + GRACE_MS,
      intervalMs: 100,
    });
    const tookMs = Date.now() - loaded;
    const passes = (await operator.metric(PASSES)) - passesBefore;
    const passSeconds = await operator.metric('pagoda_operator_autoscaler_pass_duration_seconds_sum');
    console.log(
      `scale-up to 3 replicas: ${tookMs} ms and ${passes} completed autoscaler pass(es) after the load reached 6 ` +
        `(scrape interval ${INTERVAL_S} s; a pass took ${((passSeconds / (await operator.metric(PASSES))) * 1000).toFixed(0)} ms on average)`,
    );
    // Two passes that started after the load was there, plus the one that may have been running then.
    expect(passes).toBeLessThanOrEqual(3);
    expect(tookMs).toBeLessThanOrEqual(2 * INTERVAL_S * 1000 + GRACE_MS);

    const dep = await cluster.client.get<Obj>(objectPath(RESOURCES.deployment, ns, NAME));
    await eventually('the Deployment follows', async () => {
      const d = await cluster.client.get<Obj>(objectPath(RESOURCES.deployment, ns, NAME));
      return d.spec.replicas === 3;
    });
    expect(dep.metadata.name).toBe(NAME);
    const cr = await getCr();
    expect(cr.status?.autoscaling?.lastScaleTime).toBeDefined();
    // Events are written after the decision they report, asynchronously: wait for it.
    await eventually('a ScaledUp Event saying → 3', async () => {
      const events = await cluster.client.list<Obj>(collectionPath(RESOURCES.event, ns), {
        fieldSelector: `involvedObject.name=${NAME},reason=ScaledUp`,
      });
      return events.items.some((e) => String(e.message).includes('→ 3 replicas'));
    });
  });

  it('the third pod is Pending for lack of GPUs: more load adds no replica, ScalingLimited says why', async () => {
    await eventually('one pod Pending, two Ready and scraped', async () => {
      const c = await getCr();
      return c.status?.autoscaling?.scrapedPods === 2 && condition(c, 'Degraded')?.reason === 'InsufficientGPUs';
    });
    load.setConcurrency(10);
    const cr = await eventually(
      'ScalingLimited=True InsufficientGPUs',
      async () => {
        const c = await getCr();
        return condition(c, 'ScalingLimited')?.reason === 'InsufficientGPUs' ? c : undefined;
      },
      { timeoutMs: 3 * INTERVAL_S * 1000 + GRACE_MS },
    );
    expect(condition(cr, 'ScalingLimited')?.status).toBe('True');
    expect(condition(cr, 'ScalingLimited')?.message).toContain('Pending for lack of GPUs: not adding replicas');
    // The metric asks for 5 (10 / 2); it stays at 3 for several more decisions.
    await sleep(3 * INTERVAL_S * 1000);
    const held = await getCr();
    expect(held.spec.replicas).toBe(3);
    expect(held.status?.autoscaling?.reason).toBe('InsufficientGPUs');
    expect(held.status?.autoscaling?.currentValue).toBeGreaterThan(TARGET);
    const warnings = await cluster.client.list<Obj>(collectionPath(RESOURCES.event, ns), {
      fieldSelector: `involvedObject.name=${NAME},reason=ScalingLimited`,
    });
    expect(warnings.items.some((e) => e.type === 'Warning')).toBe(true);
  });

  it('load stops, the operator restarts: replicas stay for the scale-down window, then fall', async () => {
    await load.stop();
    const stopped = Date.now();
    await eventually('no requests in flight', async () => (await totalInFlight()) === 0, { intervalMs: 50 });
    // Restart in the middle of the scale-down delay. A process that kept its history only in memory would
    // scale down on its first pass, since the load is gone.
    expect(await operator.stop('SIGTERM')).toBe(0);
    operator = await startOperator({ kubeconfig: cluster.kubeconfig, identity: 'autoscaler-b', args: operatorArgs() });
    // The new process's own gauge proves the decision is its own: it saw no load and kept 3.
    await eventually('the new operator decided', async () => {
      const scraped = await operator.metric('pagoda_operator_autoscaler_scrapes_total', 'result="success"');
      const desired = await operator.metric(
        'pagoda_operator_autoscaler_desired_replicas',
        `namespace="${ns}",name="${NAME}"`,
      );
      return scraped > 0 && desired === 3;
    });
    const cr = await eventually('status from the new process', async () => {
      const c = await getCr();
      return c.status?.autoscaling?.reason === 'ScaleDownStabilizing' && c.status.autoscaling.currentValue === 0
        ? c
        : undefined;
    });
    expect(cr.spec.replicas).toBe(3);
    expect(Date.now() - stopped).toBeLessThan((SCALE_DOWN_S - INTERVAL_S) * 1000);

    const fell = await eventually(
      'replicas back to 1',
      async () => ((await replicas()) === 1 ? Date.now() : undefined),
      { timeoutMs: (SCALE_DOWN_S + WINDOW_S + 2 * INTERVAL_S) * 1000 + GRACE_MS, intervalMs: 100 },
    );
    const afterMs = fell - stopped;
    console.log(`scale-down came ${afterMs} ms after the load stopped (scale-down window ${SCALE_DOWN_S} s)`);
    // The last recommendation of 3 or more was made at most one interval before the load stopped.
    expect(afterMs).toBeGreaterThanOrEqual((SCALE_DOWN_S - INTERVAL_S) * 1000);
    // Events are written after the decision they report, asynchronously: wait for it.
    await eventually('a ScaledDown Event saying 3 → 1', async () => {
      const events = await cluster.client.list<Obj>(collectionPath(RESOURCES.event, ns), {
        fieldSelector: `involvedObject.name=${NAME},reason=ScaledDown`,
      });
      return events.items.some((e) => String(e.message).includes('3 → 1 replicas'));
    });
    // The Pending pod went first; nothing is short of GPUs any more.
    await eventually('ScalingLimited no longer InsufficientGPUs, Degraded=False', async () => {
      const c = await getCr();
      return (
        condition(c, 'ScalingLimited')?.reason !== 'InsufficientGPUs' && condition(c, 'Degraded')?.status === 'False'
      );
    });
    expect(load.errors).toBe(0);
  });
});
