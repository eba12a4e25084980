/**
 * Integration-test access to the local control plane: starts it (building the pinned binaries on first
 * use) or reuses a running one, installs the CRD, and stops it afterwards if this file started it.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { collectionPath, isNotFound, type KubeClient, objectPath, RESOURCES } from '../../../operator/src/kube/rest.ts';
import {
  type ClusterHandle,
  clientFor,
  REPO_ROOT,
  startCluster,
  stopCluster,
} from '../../../scripts/cluster/cluster.ts';
import { eventually } from './wait.ts';

const run = promisify(execFile);

/** Cold builds of the control plane take minutes on a small machine; later runs reuse the cache. */
export const CLUSTER_SETUP_TIMEOUT_MS = 45 * 60_000;

export const CRD_PATH = join(REPO_ROOT, 'crds', 'inference.pagoda.dev_inferencedeployments.yaml');

export interface TestCluster {
  handle: ClusterHandle;
  client: KubeClient;
  kubeconfig: string;
  kubectl(args: string[], input?: string): Promise<string>;
  helm(args: string[]): Promise<string>;
  /** A fresh namespace, deleted by cleanup(). */
  namespace(prefix: string): Promise<string>;
  cleanup(): Promise<void>;
}

export function readYaml(path: string): Record<string, unknown>[] {
  return parseAllDocuments(readFileSync(path, 'utf8'))
    .map((d) => d.toJSON() as Record<string, unknown>)
    .filter((d) => d !== null);
}

export async function installCrd(client: KubeClient): Promise<void> {
  const [crd] = readYaml(CRD_PATH);
  await client.apply(
    objectPath(RESOURCES.crd, undefined, 'inferencedeployments.inference.pagoda.dev'),
    crd,
    'pagoda-tests',
  );
  await eventually('CRD established', async () => {
    const c = await client.get<{ status?: { conditions?: { type: string; status: string }[] } }>(
      objectPath(RESOURCES.crd, undefined, 'inferencedeployments.inference.pagoda.dev'),
    );
    return c.status?.conditions?.some((x) => x.type === 'Established' && x.status === 'True') ?? false;
  });
  // Discovery of a new CRD trails its Established condition by a moment.
  await eventually('CRD served', async () => {
    await client.get(collectionPath(RESOURCES.inferenceDeployment, 'default'));
    return true;
  });
}

/** Applies a minimal InferenceDeployment (hostPath model, H100) as the tests' field manager. */
export async function applyMinimalCr(client: KubeClient, ns: string, name: string, model: string): Promise<void> {
  await client.apply(
    objectPath(RESOURCES.inferenceDeployment, ns, name),
    {
      apiVersion: 'inference.pagoda.dev/v1alpha1',
      kind: 'InferenceDeployment',
      metadata: { name, namespace: ns },
      spec: {
        model: { name: model, source: { hostPath: { path: '/m' } } },
        gpu: { product: 'NVIDIA-H100-80GB-HBM3' },
      },
    },
    'pagoda-tests',
  );
}

export async function setupCluster(): Promise<TestCluster> {
  const handle = await startCluster({ log: (m) => process.stderr.write(`cluster: ${m}\n`) });
  const client = clientFor(handle.kubeconfig);
  await installCrd(client);
  const namespaces: string[] = [];
  const env = { ...process.env, KUBECONFIG: handle.kubeconfig };
  const tools = handle.state.tools;
  return {
    handle,
    client,
    kubeconfig: handle.kubeconfig,
    async kubectl(args, input) {
      if (input === undefined) return (await run(tools.kubectl, args, { env, maxBuffer: 32 << 20 })).stdout;
      return new Promise((resolve, reject) => {
        const child = execFile(tools.kubectl, args, { env, maxBuffer: 32 << 20 }, (err, stdout, stderr) =>
          err ? reject(Object.assign(err, { stderr })) : resolve(stdout),
        );
        child.stdin?.end(input);
      });
    },
    async helm(args) {
      return (
        await run(tools.helm, args, {
          env: { ...env, HELM_CACHE_HOME: join(REPO_ROOT, '.cluster', 'helm') },
          maxBuffer: 32 << 20,
        })
      ).stdout;
    },
    async namespace(prefix) {
      const name = `${prefix}-${randomBytes(3).toString('hex')}`;
      await client.create(collectionPath(RESOURCES.namespace), {
        apiVersion: 'v1',
        kind: 'Namespace',
        metadata: { name },
      });
      namespaces.push(name);
      return name;
    },
    async cleanup() {
      for (const ns of namespaces) {
        await client.delete(objectPath(RESOURCES.namespace, undefined, ns)).catch((e) => {
          if (!isNotFound(e)) throw e;
        });
      }
      if (handle.startedByUs) await stopCluster();
    },
  };
}
