/**
 * Fake GPU nodes for kwok: Node objects with nvidia.com/gpu capacity, the NVIDIA feature-discovery
 * product label and the usual GPU NoSchedule taint. kwok (managing nodes with the fake annotation)
 * marks them Ready, keeps their leases fresh and runs the pods bound to them.
 */
import { collectionPath, isConflict, type KubeClient, RESOURCES } from '../../operator/src/kube/rest.ts';

export const FAKE_NODE_ANNOTATION = 'kwok.x-k8s.io/node';

export interface GpuNodeGroup {
  /** Node names are `${prefix}-${i}`. */
  prefix: string;
  count: number;
  gpusPerNode: number;
  product: string;
  gpuResource?: string;
  /** Also taint the nodes with `<gpuResource>:NoSchedule` (as GPU node pools usually are). Default true. */
  taint?: boolean;
}

/** A node group without GPUs (gpusPerNode 0) gets no GPU capacity, labels or taint: a CPU node. */
export function fakeGpuNode(group: GpuNodeGroup, index: number): Record<string, unknown> {
  const name = `${group.prefix}-${index}`;
  const gpu = group.gpuResource ?? 'nvidia.com/gpu';
  const hasGpus = group.gpusPerNode > 0;
  const capacity: Record<string, string> = {
    cpu: '96',
    memory: '1024Gi',
    'ephemeral-storage': '2Ti',
    pods: '110',
    ...(hasGpus ? { [gpu]: String(group.gpusPerNode) } : {}),
  };
  const gpuLabels = hasGpus
    ? {
        'nvidia.com/gpu.present': 'true',
        'nvidia.com/gpu.product': group.product,
        'nvidia.com/gpu.count': String(group.gpusPerNode),
      }
    : {};
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name,
      annotations: { [FAKE_NODE_ANNOTATION]: 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
      labels: {
        type: 'kwok',
        'kubernetes.io/hostname': name,
        'kubernetes.io/os': 'linux',
        'kubernetes.io/arch': 'amd64',
        'node.kubernetes.io/instance-type': hasGpus ? 'fake-gpu' : 'fake-cpu',
        ...gpuLabels,
      },
    },
    spec: group.taint === false || !hasGpus ? {} : { taints: [{ key: gpu, value: 'present', effect: 'NoSchedule' }] },
    status: {
      capacity,
      allocatable: capacity,
      nodeInfo: {
        architecture: 'amd64',
        operatingSystem: 'linux',
        kubeletVersion: 'fake',
        kubeProxyVersion: 'fake',
        containerRuntimeVersion: 'kwok',
        kernelVersion: '',
        osImage: '',
        machineID: '',
        systemUUID: '',
        bootID: '',
      },
    },
  };
}

/** Creates the group's nodes (existing ones are kept), with bounded concurrency. */
export async function createGpuNodes(client: KubeClient, group: GpuNodeGroup, concurrency = 16): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < group.count) {
      const i = next++;
      try {
        await client.create(collectionPath(RESOURCES.node), fakeGpuNode(group, i));
      } catch (e) {
        if (!isConflict(e)) throw e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, group.count) }, worker));
}

interface NodeLike {
  metadata: { name: string; labels?: Record<string, string> };
  status?: { conditions?: { type: string; status: string }[] };
}

/** Names of nodes whose name starts with prefix and that report Ready. */
export async function readyNodes(client: KubeClient, prefix: string): Promise<string[]> {
  const list = await client.list<NodeLike>(collectionPath(RESOURCES.node));
  return list.items
    .filter((n) => n.metadata.name.startsWith(`${prefix}-`))
    .filter((n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))
    .map((n) => n.metadata.name);
}

export async function deleteGpuNodes(client: KubeClient, prefix: string): Promise<void> {
  const list = await client.list<NodeLike>(collectionPath(RESOURCES.node));
  await Promise.all(
    list.items
      .filter((n) => n.metadata.name.startsWith(`${prefix}-`))
      .map((n) => client.delete(`${collectionPath(RESOURCES.node)}/${n.metadata.name}`).catch(() => undefined)),
  );
}
