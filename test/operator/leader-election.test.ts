/**
 * Two (then three) operator processes on one Lease: exactly one leads and only it reconciles and
 * autoscales; when the
 * leader is killed the standby takes over after the lease expires; when the leader stops gracefully it
 * releases the Lease and the standby takes over at once.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { InferenceDeployment } from '../../operator/src/api/types.ts';
import { objectPath, RESOURCES } from '../../operator/src/kube/rest.ts';
import { applyMinimalCr, CLUSTER_SETUP_TIMEOUT_MS, setupCluster, type TestCluster } from './support/cluster.ts';
import { type OperatorProcess, startOperator } from './support/operator-process.ts';
import { eventually } from './support/wait.ts';

let cluster: TestCluster;
let ns: string;
const operators: OperatorProcess[] = [];
const LEASE_SECONDS = 4;

beforeAll(async () => {
  cluster = await setupCluster();
  ns = await cluster.namespace('leader');
}, CLUSTER_SETUP_TIMEOUT_MS);

afterAll(async () => {
  await Promise.all(operators.map((o) => o.stop('SIGKILL')));
  await cluster?.cleanup();
});

async function start(identity: string): Promise<OperatorProcess> {
  const op = await startOperator({
    kubeconfig: cluster.kubeconfig,
    identity,
    args: [
      `--leader-election-namespace=${ns}`,
      '--leader-election-id=pagoda-operator',
      `--lease-duration=${LEASE_SECONDS}`,
      '--renew-deadline=3',
      '--retry-period=0.5',
      '--autoscaler-interval=1',
    ],
  });
  operators.push(op);
  return op;
}

const holder = async () =>
  (await cluster.client.get<{ spec: { holderIdentity?: string } }>(objectPath(RESOURCES.lease, ns, 'pagoda-operator')))
    .spec.holderIdentity;

const applyCr = (name: string) => applyMinimalCr(cluster.client, ns, name, 'Qwen/Qwen3-0.6B');

const reconciled = (name: string) =>
  eventually(`${name} reconciled`, async () => {
    const cr = await cluster.client.get<InferenceDeployment>(objectPath(RESOURCES.inferenceDeployment, ns, name));
    return cr.status?.observedGeneration === cr.metadata.generation;
  });

const leaderMetric = (o: OperatorProcess) => o.metric('pagoda_operator_leader');
const reconciles = (o: OperatorProcess) => o.metric('pagoda_operator_reconcile_total');

it('one of two processes leads, and only the leader reconciles and autoscales', async () => {
  const [a, b] = await Promise.all([start('op-a'), start('op-b')]);
  const leaderId = await eventually('a lease holder', holder);
  const [leader, standby] = leaderId === 'op-a' ? [a, b] : [b, a];
  await eventually('leader metric', async () => (await leaderMetric(leader)) === 1);
  expect(await leaderMetric(standby)).toBe(0);

  await applyCr('first');
  await reconciled('first');
  // The status is written before the reconcile ends (and its counter moves), so wait for the counter.
  await eventually('the leader counted a reconcile', async () => (await reconciles(leader)) > 0, { timeoutMs: 5000 });
  expect(await reconciles(standby), `standby:\n${standby.logs()}`).toBe(0);
  // The built-in autoscaler runs on the leader only.
  const passes = (o: OperatorProcess) => o.metric('pagoda_operator_autoscaler_pass_duration_seconds_count');
  await eventually('the leader ran autoscaler passes', async () => (await passes(leader)) > 0, { timeoutMs: 5000 });
  expect(await passes(standby)).toBe(0);
  // A standby reports ready (it can take over) once it has talked to the API server.
  await eventually('standby ready', () => standby.ready(), { timeoutMs: 5000 });
});

it('the standby takes over after the leader is killed (lease expiry)', async () => {
  const leaderId = await holder();
  const leader = operators.find((o) => o.identity === leaderId) as OperatorProcess;
  const standby = operators.find((o) => o.identity !== leaderId) as OperatorProcess;
  const killedAt = Date.now();
  await leader.stop('SIGKILL');
  await eventually('standby holds the lease', async () => (await holder()) === standby.identity, { timeoutMs: 30_000 });
  const takeoverMs = Date.now() - killedAt;
  // It may not take over before the lease expires, and should soon after.
  expect(takeoverMs).toBeGreaterThanOrEqual(LEASE_SECONDS * 1000 - 1000);
  expect(takeoverMs).toBeLessThan(LEASE_SECONDS * 1000 + 5000);
  await applyCr('second');
  await reconciled('second');
  await eventually('the new leader counted a reconcile', async () => (await reconciles(standby)) > 0, {
    timeoutMs: 5000,
  });
});

it('a graceful stop releases the lease and the next process takes over at once', async () => {
  const leader = operators.find((o) => o.identity === 'op-a' || o.identity === 'op-b') as OperatorProcess;
  const live = operators.filter((o) => o.child.exitCode === null && o.child.signalCode === null);
  const current = live.find((o) => o.identity === leader.identity) ?? (live[0] as OperatorProcess);
  const next = await start('op-c');
  await eventually('op-c is a standby', () => next.ready());
  const stoppedAt = Date.now();
  expect(await current.stop('SIGTERM')).toBe(0);
  expect(current.logs()).toContain('released the lease');
  await eventually('op-c holds the lease', async () => (await holder()) === 'op-c', { timeoutMs: 10_000 });
  expect(Date.now() - stoppedAt).toBeLessThan(LEASE_SECONDS * 1000);
  await applyCr('third');
  await reconciled('third');
});
