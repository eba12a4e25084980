/**
 * The local control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok with
 * fake GPU nodes, all from the pinned binaries (tools.ts), started as detached processes whose ids,
 * ports and arguments are kept in .cluster/state.json. `cluster:up` reuses a healthy running cluster.
 *
 * Authentication is a static admin token (system:masters) for users and components alike: this cluster
 * exists for tests and trying Pagoda on one machine, never for anything shared.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { collectionPath, KubeClient, objectPath, RESOURCES } from '../../operator/src/kube/rest.ts';
import { createGpuNodes, type GpuNodeGroup, readyNodes } from './nodes.ts';
import { freePort, isAlive, probe, startDetached, stopProcess, waitFor } from './processes.ts';
import { ensureTools, type ToolPaths, withLock } from './tools.ts';

export const REPO_ROOT = join(import.meta.dirname, '..', '..');
export const CLUSTER_DIR = process.env.PAGODA_CLUSTER_DIR || join(REPO_ROOT, '.cluster');
export const KUBECONFIG_PATH = join(CLUSTER_DIR, 'kubeconfig');
const STATE_PATH = join(CLUSTER_DIR, 'state.json');

export const COMPONENTS = ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kwok'] as const;
export type Component = (typeof COMPONENTS)[number];

export interface ClusterOptions {
  nodes: number;
  gpusPerNode: number;
  product: string;
  log?: (message: string) => void;
}

export const DEFAULT_OPTIONS: ClusterOptions = { nodes: 4, gpusPerNode: 8, product: 'NVIDIA-H100-80GB-HBM3' };
export const NODE_PREFIX = 'gpu-node';
/** One untainted node without GPUs, for everything else (the operator itself, when installed by helm). */
export const CPU_NODE_PREFIX = 'cpu-node';

interface ProcessState {
  pid: number;
  binary: string;
  args: string[];
  log: string;
}

export interface ClusterState {
  server: string;
  token: string;
  kubeconfig: string;
  processes: Record<Component, ProcessState>;
  tools: ToolPaths;
}

export interface ClusterHandle {
  kubeconfig: string;
  state: ClusterState;
  /** False when a cluster was already running and was reused. */
  startedByUs: boolean;
}

export function readState(): ClusterState | undefined {
  if (!existsSync(STATE_PATH)) return undefined;
  try {
    return JSON.parse(readFileSync(STATE_PATH, 'utf8')) as ClusterState;
  } catch {
    return undefined;
  }
}

async function apiserverReady(state: Pick<ClusterState, 'server' | 'token'>): Promise<boolean> {
  const r = await probe(`${state.server}/readyz`, { Authorization: `Bearer ${state.token}` });
  return r.status === 200;
}

export async function isHealthy(state: ClusterState | undefined = readState()): Promise<boolean> {
  if (!state) return false;
  if (!COMPONENTS.every((c) => isAlive(state.processes[c].pid))) return false;
  return apiserverReady(state).catch(() => false);
}

function kubeconfigYaml(server: string, token: string, caPem: string): string {
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: pagoda-local',
    '  cluster:',
    `    server: ${server}`,
    `    certificate-authority-data: ${Buffer.from(caPem).toString('base64')}`,
    'users:',
    '- name: admin',
    '  user:',
    `    token: ${token}`,
    'contexts:',
    '- name: pagoda-local',
    '  context:',
    '    cluster: pagoda-local',
    '    user: admin',
    '    namespace: default',
    'current-context: pagoda-local',
    '',
  ].join('\n');
}

export function clientFor(kubeconfig: string): KubeClient {
  return KubeClient.load(kubeconfig);
}

function start(state: ClusterState, c: Component): void {
  const p = state.processes[c];
  p.pid = startDetached(p.binary, p.args, p.log);
}

async function waitReady(state: ClusterState, c: Component): Promise<void> {
  const p = state.processes[c];
  const opts = { timeoutMs: 120_000, pid: p.pid, logFile: p.log };
  if (c === 'etcd') {
    const url = p.args.find((a) => a.startsWith('--advertise-client-urls='))?.split('=')[1];
    await waitFor('etcd', async () => (await probe(`${url}/health`)).body.includes('"health":"true"'), opts);
  } else if (c === 'kube-apiserver') {
    await waitFor('kube-apiserver /readyz', () => apiserverReady(state), opts);
  } else {
    const port = p.args.find((a) => a.startsWith('--secure-port='))?.split('=')[1];
    if (port)
      await waitFor(
        `${c} /healthz`,
        async () => (await probe(`https://127.0.0.1:${port}/healthz`)).status === 200,
        opts,
      );
  }
}

async function launch(tools: ToolPaths, opts: ClusterOptions): Promise<ClusterState> {
  const log = opts.log ?? (() => {});
  for (const d of ['pki', 'etcd', 'logs']) mkdirSync(join(CLUSTER_DIR, d), { recursive: true });
  const pki = join(CLUSTER_DIR, 'pki');
  const token = randomBytes(24).toString('hex');
  writeFileSync(join(pki, 'tokens.csv'), `${token},admin,admin,"system:masters"\n`, { mode: 0o600 });
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  writeFileSync(join(pki, 'sa.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  writeFileSync(join(pki, 'sa.pub'), publicKey.export({ type: 'spki', format: 'pem' }));

  const [etcdClient, etcdPeer, apiPort, kcmPort, schedPort, kwokPort] = await Promise.all(
    Array.from({ length: 6 }, () => freePort()),
  );
  const server = `https://127.0.0.1:${apiPort}`;
  const logs = join(CLUSTER_DIR, 'logs');
  const componentKubeconfig = join(pki, 'admin.kubeconfig');
  const proc = (binary: string, args: string[], name: string): ProcessState => ({
    pid: 0,
    binary,
    args,
    log: join(logs, `${name}.log`),
  });

  const schedulerConfig = join(pki, 'scheduler.yaml');
  writeFileSync(
    schedulerConfig,
    [
      'apiVersion: kubescheduler.config.k8s.io/v1',
      'kind: KubeSchedulerConfiguration',
      'clientConnection:',
      `  kubeconfig: ${componentKubeconfig}`,
      '  qps: 5000',
      '  burst: 10000',
      'leaderElection:',
      '  leaderElect: false',
      '',
    ].join('\n'),
  );
  const kwokStages = join(tools.kwok, '..', 'stages.yaml');

  const state: ClusterState = {
    server,
    token,
    kubeconfig: KUBECONFIG_PATH,
    tools,
    processes: {
      etcd: proc(
        tools.etcd,
        [
          '--name=default',
          `--data-dir=${join(CLUSTER_DIR, 'etcd')}`,
          `--listen-client-urls=http://127.0.0.1:${etcdClient}`,
          `--advertise-client-urls=http://127.0.0.1:${etcdClient}`,
          `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
          `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
          `--initial-cluster=default=http://127.0.0.1:${etcdPeer}`,
          // A throwaway cluster: durability is not worth an fsync per write on a shared disk.
          '--unsafe-no-fsync',
          '--log-level=warn',
        ],
        'etcd',
      ),
      'kube-apiserver': proc(
        tools['kube-apiserver'],
        [
          `--etcd-servers=http://127.0.0.1:${etcdClient}`,
          `--cert-dir=${join(pki, 'serving')}`,
          `--secure-port=${apiPort}`,
          '--bind-address=127.0.0.1',
          '--advertise-address=127.0.0.1',
          // Loopback addresses may not back the kubernetes Service's endpoints; nothing in-cluster needs them.
          '--endpoint-reconciler-type=none',
          '--service-cluster-ip-range=10.96.0.0/16',
          '--authorization-mode=RBAC',
          `--token-auth-file=${join(pki, 'tokens.csv')}`,
          '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
          `--service-account-key-file=${join(pki, 'sa.pub')}`,
          `--service-account-signing-key-file=${join(pki, 'sa.key')}`,
          '--allow-privileged=true',
          // One user, many fake nodes: no request throttling (as kwokctl does for benchmarks).
          '--max-requests-inflight=0',
          '--max-mutating-requests-inflight=0',
          '--enable-priority-and-fairness=false',
        ],
        'kube-apiserver',
      ),
      'kube-controller-manager': proc(
        tools['kube-controller-manager'],
        [
          `--kubeconfig=${componentKubeconfig}`,
          `--authentication-kubeconfig=${componentKubeconfig}`,
          `--authorization-kubeconfig=${componentKubeconfig}`,
          `--secure-port=${kcmPort}`,
          '--bind-address=127.0.0.1',
          '--leader-elect=false',
          `--service-account-private-key-file=${join(pki, 'sa.key')}`,
          '--use-service-account-credentials=false',
          '--kube-api-qps=5000',
          '--kube-api-burst=10000',
          '--concurrent-deployment-syncs=20',
          '--concurrent-replicaset-syncs=20',
        ],
        'kube-controller-manager',
      ),
      'kube-scheduler': proc(
        tools['kube-scheduler'],
        [
          `--config=${schedulerConfig}`,
          `--authentication-kubeconfig=${componentKubeconfig}`,
          `--authorization-kubeconfig=${componentKubeconfig}`,
          `--secure-port=${schedPort}`,
          '--bind-address=127.0.0.1',
        ],
        'kube-scheduler',
      ),
      kwok: proc(
        tools.kwok,
        [
          `--kubeconfig=${componentKubeconfig}`,
          `--config=${kwokStages}`,
          '--manage-all-nodes=false',
          '--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake',
          '--cidr=10.244.0.1/16',
          '--node-ip=10.0.0.1',
          `--server-address=127.0.0.1:${kwokPort}`,
          '--node-lease-duration-seconds=40',
        ],
        'kwok',
      ),
    },
  };

  log('starting etcd');
  start(state, 'etcd');
  writeState(state); // from here on, cluster:down can clean up a half-started cluster (pid 0: not started)
  await waitReady(state, 'etcd');
  log('starting kube-apiserver');
  start(state, 'kube-apiserver');
  writeState(state);
  await waitReady(state, 'kube-apiserver');

  // The apiserver wrote its self-signed serving certificate and CA into --cert-dir; clients trust that.
  const ca = readFileSync(join(pki, 'serving', 'apiserver.crt'), 'utf8');
  writeFileSync(componentKubeconfig, kubeconfigYaml(server, token, ca), { mode: 0o600 });
  writeFileSync(KUBECONFIG_PATH, kubeconfigYaml(server, token, ca), { mode: 0o600 });

  for (const c of ['kube-controller-manager', 'kube-scheduler', 'kwok'] as const) {
    log(`starting ${c}`);
    start(state, c);
  }
  writeState(state);
  await Promise.all((['kube-controller-manager', 'kube-scheduler'] as const).map((c) => waitReady(state, c)));

  const client = clientFor(KUBECONFIG_PATH);
  // Pods need their namespace's default ServiceAccount, which the controller manager creates.
  await waitFor(
    'the default ServiceAccount (kube-controller-manager)',
    async () => {
      await client.get(
        objectPath({ group: '', version: 'v1', plural: 'serviceaccounts', namespaced: true }, 'default', 'default'),
      );
      return true;
    },
    { timeoutMs: 60_000, logFile: state.processes['kube-controller-manager'].log },
  );
  log(`creating ${opts.nodes} fake GPU nodes with ${opts.gpusPerNode} × ${opts.product}, and 1 CPU node`);
  const group: GpuNodeGroup = {
    prefix: NODE_PREFIX,
    count: opts.nodes,
    gpusPerNode: opts.gpusPerNode,
    product: opts.product,
  };
  await createGpuNodes(client, group);
  await createGpuNodes(client, { prefix: CPU_NODE_PREFIX, count: 1, gpusPerNode: 0, product: '' });
  const kwok = { timeoutMs: 120_000, pid: state.processes.kwok.pid, logFile: state.processes.kwok.log };
  await waitFor(
    'fake GPU nodes Ready (kwok)',
    async () => (await readyNodes(client, NODE_PREFIX)).length >= opts.nodes,
    kwok,
  );
  await waitFor('the CPU node Ready (kwok)', async () => (await readyNodes(client, CPU_NODE_PREFIX)).length >= 1, kwok);
  return state;
}

function writeState(state: ClusterState): void {
  writeFileSync(STATE_PATH, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
}

/** Starts the cluster, or reuses the running one. */
export async function startCluster(options: Partial<ClusterOptions> = {}): Promise<ClusterHandle> {
  const opts = { ...DEFAULT_OPTIONS, ...options };
  const log = opts.log ?? ((m: string) => console.log(`cluster: ${m}`));
  mkdirSync(CLUSTER_DIR, { recursive: true });
  return withLock(join(CLUSTER_DIR, 'up.lock'), async () => {
    const existing = readState();
    if (existing && (await isHealthy(existing))) {
      log(`reusing the running cluster (${existing.server})`);
      return { kubeconfig: KUBECONFIG_PATH, state: existing, startedByUs: false };
    }
    if (existing) {
      log('cleaning up a stopped or broken cluster');
      await stopState(existing);
    }
    const tools = await ensureTools(log);
    const started = Date.now();
    try {
      const state = await launch(tools, { ...opts, log });
      log(`ready in ${((Date.now() - started) / 1000).toFixed(1)} s; KUBECONFIG=${KUBECONFIG_PATH}`);
      return { kubeconfig: KUBECONFIG_PATH, state, startedByUs: true };
    } catch (e) {
      const partial = readState();
      if (partial) await stopState(partial);
      throw e;
    }
  });
}

async function stopState(state: ClusterState): Promise<void> {
  for (const c of [...COMPONENTS].reverse()) {
    const p = state.processes[c];
    if (p?.pid) await stopProcess(p.pid);
  }
  rmSync(join(CLUSTER_DIR, 'etcd'), { recursive: true, force: true });
  rmSync(join(CLUSTER_DIR, 'pki'), { recursive: true, force: true });
  rmSync(STATE_PATH, { force: true });
  rmSync(KUBECONFIG_PATH, { force: true });
}

/** Stops every process of the cluster and deletes its data (logs stay in .cluster/logs). */
export async function stopCluster(): Promise<boolean> {
  const state = readState();
  if (!state) return false;
  await stopState(state);
  return true;
}

/** Stops one component and starts it again with the same flags (tests of recovery). */
export async function restartComponent(c: Component, downMs = 0): Promise<void> {
  const state = readState();
  if (!state) throw new Error('no cluster is running');
  await stopProcess(state.processes[c].pid);
  if (downMs > 0) await new Promise((r) => setTimeout(r, downMs));
  start(state, c);
  writeState(state);
  await waitReady(state, c);
}

/** True once every node of the default group reports Ready. */
export async function nodesReady(count: number): Promise<boolean> {
  const state = readState();
  if (!state) return false;
  return (await readyNodes(clientFor(state.kubeconfig), NODE_PREFIX)).length >= count;
}

export { collectionPath, RESOURCES };
