/**
 * kube-apiserver restarts; the operator recovers in the same process. Two operators, each watching its
 * own namespace, cover both paths: one with a long lease keeps leadership through the outage and
 * restarts its failed informers; one with a short lease loses leadership (stops its controller), then
 * regains it and starts the controller afresh.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { InferenceDeployment } from '../../operator/src/api/types.ts';
import { objectPath, RESOURCES } from '../../operator/src/kube/rest.ts';
import { restartComponent } from '../../scripts/cluster/cluster.ts';
import { applyMinimalCr, CLUSTER_SETUP_TIMEOUT_MS, setupCluster, type TestCluster } from './support/cluster.ts';
import { type OperatorProcess, startOperator } from './support/operator-process.ts';
import { eventually } from './support/wait.ts';

let cluster: TestCluster;
const ops: { ns: string; op: OperatorProcess }[] = [];

beforeAll(async () => {
  cluster = await setupCluster();
  for (const [name, lease] of [
    ['keeps', ['--lease-duration=60', '--renew-deadline=40', '--retry-period=2']],
    ['loses', ['--lease-duration=4', '--renew-deadline=3', '--retry-period=0.5']],
  ] as const) {
    const ns = await cluster.namespace(`restart-${name}`);
    const op = await startOperator({
      kubeconfig: cluster.kubeconfig,
      identity: `op-${name}`,
      args: [`--namespace=${ns}`, `--leader-election-namespace=${ns}`, ...lease],
    });
    ops.push({ ns, op });
  }
}, CLUSTER_SETUP_TIMEOUT_MS);

afterAll(async () => {
  await Promise.all(ops.map(({ op }) => op.stop('SIGKILL')));
  await cluster?.cleanup();
});

const applyCr = (ns: string, name: string) => applyMinimalCr(cluster.client, ns, name, 'Qwen/Qwen3-1.7B');

const ready = (ns: string, name: string) =>
  eventually(
    `${ns}/${name} Ready`,
    async () => {
      const cr = await cluster.client.get<InferenceDeployment>(objectPath(RESOURCES.inferenceDeployment, ns, name));
      return cr.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
    },
    { timeoutMs: 90_000 },
  );

it('recovers from a kube-apiserver restart without restarting', async () => {
  for (const { ns } of ops) await applyCr(ns, 'before');
  for (const { ns } of ops) await ready(ns, 'before');
  const pids = ops.map(({ op }) => op.child.pid);

  await restartComponent('kube-apiserver', 3000);

  for (const { ns } of ops) await applyCr(ns, 'after');
  for (const { ns } of ops) await ready(ns, 'after');
  for (const [i, { op }] of ops.entries()) {
    expect(op.child.exitCode, op.logs()).toBeNull();
    expect(op.child.pid).toBe(pids[i]);
    await eventually(`${op.identity} ready`, () => op.ready());
    expect(await op.metric('pagoda_operator_leader')).toBe(1);
  }
  const [keeps, loses] = ops.map(({ op }) => op) as [OperatorProcess, OperatorProcess];
  expect(await keeps.metric('pagoda_operator_informer_restarts_total'), keeps.logs()).toBeGreaterThan(0);
  expect(keeps.logs()).not.toContain('lost leadership');
  expect(loses.logs()).toContain('lost leadership');
  expect(loses.logs().match(/became leader/g)?.length).toBe(2);

  // Both still act on changes to existing objects: a deleted child comes back.
  for (const { ns } of ops) {
    await cluster.client.delete(objectPath(RESOURCES.service, ns, 'before'));
    await eventually('service recreated', async () => {
      await cluster.client.get(objectPath(RESOURCES.service, ns, 'before'));
      return true;
    });
  }
});
