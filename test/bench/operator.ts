/**
 * npm run bench:operator [-- --baseline]
 * The operator at scale on the local control plane: 1,000 fake GPU nodes (8 GPUs each) and 500
 * InferenceDeployments applied at once. Prints the time until all are Ready, reconcile latency
 * (p50/p99 from the operator's histogram), per-object times to first status and to Ready, and the
 * operator's peak RSS. Goals (issue 6): ≤ 30 s, p99 ≤ 1 s, ≤ 150 MB.
 *
 * --baseline creates the same children (Deployment, Service, PodDisruptionBudget) directly, without the
 * operator: the time the control plane alone (API server, controller manager, scheduler, kwok) needs on
 * this machine, the floor under the first figure.
 *
 * --services creates only the 500 ClusterIP Services (32 connections) and prints how long that took: with
 * BENCH_NODES=10, what the API server does for Services when nothing else loads the machine.
 *
 * It runs its own cluster in .cluster/bench (a running dev cluster is left alone) and stops it.
 * Environment: BENCH_NODES (1000), BENCH_CRS (500), BENCH_CONCURRENCY (operator workers, 8),
 * BENCH_OPERATOR (js: the stripped JavaScript the operator image runs, default; ts: `npm run operator`).
 */
import { spawn } from 'node:child_process';
import { readFileSync, rmSync, symlinkSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parse } from 'yaml';

const REPO = join(import.meta.dirname, '..', '..');
process.env.PAGODA_CLUSTER_DIR ??= join(REPO, '.cluster', 'bench');
// Imported after PAGODA_CLUSTER_DIR is set: the cluster module reads it when loaded.
const { startCluster, stopCluster, clientFor } = await import('../../scripts/cluster/cluster.ts');
const { collectionPath, objectPath, RESOURCES } = await import('../../operator/src/kube/rest.ts');
const { planFor } = await import('../../operator/src/plan/plan.ts');
const { buildOperatorJs } = await import('../../operator/tools/build-js.ts');

const NODES = Number(process.env.BENCH_NODES ?? 1000);
const CRS = Number(process.env.BENCH_CRS ?? 500);
const WORKERS = Number(process.env.BENCH_CONCURRENCY ?? 8);
const BASELINE = process.argv.includes('--baseline');
const SERVICES = process.argv.includes('--services');
const FLAVOUR = process.env.BENCH_OPERATOR === 'ts' ? 'ts' : 'js';
const NS = 'bench';

// biome-ignore lint/suspicious/noExplicitAny: API objects are read by path
type Obj = Record<string, any>;

const MODELS = [
  { name: 'Qwen/Qwen3-8B', maxModelLen: 32768 }, // TP 1
  { name: 'Qwen/Qwen3-32B', maxModelLen: 32768 }, // TP 2
  { name: 'meta-llama/Llama-3.1-70B-Instruct', maxModelLen: 32768 }, // TP 4
];

function crFor(i: number): Obj {
  const model = MODELS[i % MODELS.length] as (typeof MODELS)[number];
  return {
    apiVersion: 'inference.pagoda.dev/v1alpha1',
    kind: 'InferenceDeployment',
    metadata: { name: `m-${i}`, namespace: NS },
    spec: {
      model: { name: model.name, source: { hostPath: { path: `/models/${i}` } } },
      maxModelLen: model.maxModelLen,
      gpu: { product: 'NVIDIA-H100-80GB-HBM3' },
    },
  };
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

/** Quantile of a Prometheus histogram, interpolated linearly inside the bucket (as histogram_quantile). */
function histogramQuantile(metrics: string, name: string, q: number): number {
  const buckets: [number, number][] = [];
  for (const line of metrics.split('\n')) {
    const m = new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\S+)`).exec(line);
    if (m) buckets.push([m[1] === '+Inf' ? Number.POSITIVE_INFINITY : Number(m[1]), Number(m[2])]);
  }
  const rank = q * (buckets.at(-1)?.[1] ?? 0);
  let prevLe = 0;
  let prevCount = 0;
  for (const [le, count] of buckets) {
    if (count >= rank) {
      if (!Number.isFinite(le)) return prevLe;
      return prevLe + ((le - prevLe) * (rank - prevCount)) / Math.max(1, count - prevCount);
    }
    prevLe = le;
    prevCount = count;
  }
  return Number.NaN;
}

/** Peak resident memory of a process (VmHWM), Linux. */
function peakRssMiB(pid: number): number {
  const kb = Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  return kb / 1024;
}

/** CPU seconds (user + system) a process has used, Linux. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

/** Runs fn for 0..n-1 with bounded parallelism (as `kubectl apply -f dir/` of many files would). */
async function forEachParallel(n: number, parallel: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const t0 = Date.now();
console.log(
  `bench:operator${BASELINE ? ' --baseline' : ''}: ${NODES} nodes × 8 GPUs, ${CRS} InferenceDeployments` +
    `${BASELINE ? '' : `, ${WORKERS} workers, operator as ${FLAVOUR}`}; load average before: ${loadavg()[0]?.toFixed(2)}`,
);
const handle = await startCluster({ nodes: NODES, gpusPerNode: 8, product: 'NVIDIA-H100-80GB-HBM3' });
const client = clientFor(handle.kubeconfig);
console.log(`cluster up with ${NODES} Ready nodes in ${s(Date.now() - t0)}`);

try {
  const crd = parse(readFileSync(join(REPO, 'crds', 'inference.pagoda.dev_inferencedeployments.yaml'), 'utf8'));
  await client.apply(objectPath(RESOURCES.crd, undefined, crd.metadata.name), crd, 'bench');
  await client.create(collectionPath(RESOURCES.namespace), {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: NS },
  });
  for (;;) {
    try {
      await client.get(collectionPath(RESOURCES.inferenceDeployment, NS));
      await client.get(
        objectPath({ group: '', version: 'v1', plural: 'serviceaccounts', namespaced: true }, NS, 'default'),
      );
      break;
    } catch {
      await sleep(200);
    }
  }
  if (SERVICES) await servicesOnly();
  else if (BASELINE) await baseline();
  else await withOperator();
} finally {
  await stopCluster();
}

/** The children the operator would create for InferenceDeployment i, without their owner. */
function childrenFor(i: number): { deployment: Obj; service: Obj; podDisruptionBudget: Obj } {
  const r = planFor({ ...crFor(i), metadata: { ...crFor(i).metadata, uid: 'none' } } as never, { defaultImage: 'x' });
  if (!r.planned) throw new Error(r.message);
  const { deployment, service, podDisruptionBudget } = r.children;
  for (const child of [deployment, service, podDisruptionBudget]) delete (child.metadata as Obj).ownerReferences;
  return { deployment, service, podDisruptionBudget };
}

async function servicesOnly(): Promise<void> {
  const start = Date.now();
  await forEachParallel(CRS, 32, (i) => client.create(collectionPath(RESOURCES.service, NS), childrenFor(i).service));
  console.log('');
  console.log(`machine: ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB`);
  console.log(`${CRS} ClusterIP Services created in: ${s(Date.now() - start)}   (${NODES} nodes)`);
}

async function baseline(): Promise<void> {
  const start = Date.now();
  await forEachParallel(CRS, 32, async (i) => {
    const { deployment, service, podDisruptionBudget } = childrenFor(i);
    await Promise.all([
      client.create(collectionPath(RESOURCES.deployment, NS), deployment),
      client.create(collectionPath(RESOURCES.service, NS), service),
      client.create(collectionPath(RESOURCES.podDisruptionBudget, NS), podDisruptionBudget),
    ]);
  });
  const created = Date.now() - start;
  let ready = 0;
  while (ready < CRS && Date.now() - start < 600_000) {
    const list = await client.list<Obj>(collectionPath(RESOURCES.deployment, NS));
    ready = list.items.filter((d) => (d.status?.readyReplicas ?? 0) >= 1).length;
    await sleep(250);
  }
  console.log('');
  console.log(`machine: ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB`);
  console.log(`children created in:        ${s(created)}   (Deployment, Service, PodDisruptionBudget each)`);
  console.log(
    `time until all Ready:       ${s(Date.now() - start)}   (${ready}/${CRS}; control plane only, no operator)`,
  );
}

async function withOperator(): Promise<void> {
  let output = '';
  let main = join(REPO, 'operator', 'src', 'main.ts');
  if (FLAVOUR === 'js') {
    const out = join(process.env.PAGODA_CLUSTER_DIR as string, 'operator-js');
    rmSync(out, { recursive: true, force: true });
    buildOperatorJs(out);
    symlinkSync(join(REPO, 'node_modules'), join(out, 'node_modules'));
    main = join(out, 'operator', 'src', 'main.js');
  }
  const operator = spawn(
    process.execPath,
    [main, '--http-port=0', '--http-host=127.0.0.1', `--concurrency=${WORKERS}`],
    { env: { ...process.env, KUBECONFIG: handle.kubeconfig }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  operator.stdout.on('data', (d) => {
    output += d;
  });
  operator.stderr.on('data', (d) => {
    output += d;
  });
  try {
    let port = 0;
    for (let i = 0; i < 300 && !port; i++) {
      await sleep(100);
      port = Number(/"msg":"pagoda operator started".*?"http":"[^"]*:(\d+)"/.exec(output)?.[1] ?? 0);
    }
    if (!port) throw new Error(`the operator did not start: ${output}`);
    for (;;) {
      const r = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
      if (r?.status === 200) break;
      await sleep(100);
    }

    const created = new Map<string, number>();
    const start = Date.now();
    await forEachParallel(CRS, 32, async (i) => {
      await client.create(collectionPath(RESOURCES.inferenceDeployment, NS), crFor(i));
      created.set(`m-${i}`, Date.now());
    });
    const appliedMs = Date.now() - start;

    const firstStatus = new Map<string, number>();
    const ready = new Map<string, number>();
    while (ready.size < CRS && Date.now() - start < 600_000) {
      const list = await client.list<Obj>(collectionPath(RESOURCES.inferenceDeployment, NS));
      const now = Date.now();
      for (const cr of list.items) {
        const name = cr.metadata.name as string;
        if (cr.status?.observedGeneration && !firstStatus.has(name)) firstStatus.set(name, now);
        if (!ready.has(name) && cr.status?.conditions?.some((c: Obj) => c.type === 'Ready' && c.status === 'True')) {
          ready.set(name, now);
        }
      }
      await sleep(250);
    }
    const allReadyMs = Date.now() - start;
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const rss = peakRssMiB(operator.pid as number);
    const cpu = cpuSeconds(operator.pid as number);
    const lat = (m: Map<string, number>) =>
      [...m].map(([name, t]) => t - (created.get(name) ?? start)).sort((a, b) => a - b);
    const q = (name: string, p: number) => s(histogramQuantile(metrics, name, p) * 1000);

    console.log('');
    console.log(
      `machine: ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB`,
    );
    console.log(`InferenceDeployments Ready: ${ready.size}/${CRS}${ready.size < CRS ? ' (TIMED OUT)' : ''}`);
    console.log(`create calls took:          ${s(appliedMs)}`);
    console.log(`time until all Ready:       ${s(allReadyMs)}   (goal ≤ 30 s)`);
    const rec = 'pagoda_operator_reconcile_duration_seconds';
    console.log(`reconcile duration:         p50 ${q(rec, 0.5)}, p99 ${q(rec, 0.99)}   (goal p99 ≤ 1 s)`);
    const wait = 'pagoda_operator_queue_wait_seconds';
    console.log(`queue wait:                 p50 ${q(wait, 0.5)}, p99 ${q(wait, 0.99)}`);
    const toStatus = lat(firstStatus);
    const toReady = lat(ready);
    console.log(`create → first status:      p50 ${s(quantile(toStatus, 0.5))}, p99 ${s(quantile(toStatus, 0.99))}`);
    console.log(`create → Ready:             p50 ${s(quantile(toReady, 0.5))}, p99 ${s(quantile(toReady, 0.99))}`);
    const count = (re: RegExp) => metrics.match(re)?.[1] ?? '?';
    console.log(
      `reconciles:                 ${count(/^pagoda_operator_reconcile_total\{result="success"\} (\d+)/m)} ok, ` +
        `${count(/^pagoda_operator_reconcile_errors_total (\d+)/m)} failed`,
    );
    console.log(`operator peak RSS:          ${rss.toFixed(0)} MiB   (goal ≤ 150 MB)`);
    console.log(`operator CPU time:          ${cpu.toFixed(1)} s`);
    const mib = (re: RegExp) => (Number(metrics.match(re)?.[1] ?? Number.NaN) / 2 ** 20).toFixed(0);
    console.log(
      `operator heap at the end:   ${mib(/^pagoda_operator_nodejs_heap_size_used_bytes (\S+)/m)} MiB used of ` +
        `${mib(/^pagoda_operator_nodejs_heap_size_total_bytes (\S+)/m)} MiB`,
    );
    console.log(`load average after:         ${loadavg()[0]?.toFixed(2)}`);
    if (ready.size < CRS) process.exitCode = 1;
  } finally {
    operator.kill('SIGTERM');
    await new Promise((r) => operator.on('exit', r));
  }
}
