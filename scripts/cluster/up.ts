/**
 * npm run cluster:up [-- --nodes N --gpus-per-node G --product P]
 * Builds (first time) and starts the local control plane with fake GPU nodes; writes .cluster/kubeconfig.
 * Environment: PAGODA_CLUSTER_NODES, PAGODA_CLUSTER_GPUS_PER_NODE, PAGODA_CLUSTER_GPU_PRODUCT.
 */
import { parseArgs } from 'node:util';
import { DEFAULT_OPTIONS, startCluster } from './cluster.ts';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string' },
    'gpus-per-node': { type: 'string' },
    product: { type: 'string' },
  },
});

function int(flag: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) {
    console.error(`cluster:up: --${flag} must be a non-negative integer, got "${raw}"`);
    process.exit(2);
  }
  return n;
}

try {
  const handle = await startCluster({
    nodes: int('nodes', values.nodes ?? process.env.PAGODA_CLUSTER_NODES, DEFAULT_OPTIONS.nodes),
    gpusPerNode: int(
      'gpus-per-node',
      values['gpus-per-node'] ?? process.env.PAGODA_CLUSTER_GPUS_PER_NODE,
      DEFAULT_OPTIONS.gpusPerNode,
    ),
    product: values.product ?? process.env.PAGODA_CLUSTER_GPU_PRODUCT ?? DEFAULT_OPTIONS.product,
  });
  console.log(`\nexport KUBECONFIG=${handle.kubeconfig}`);
  console.log(`kubectl: ${handle.state.tools.kubectl}`);
} catch (e) {
  console.error(`cluster:up failed: ${(e as Error).message}`);
  process.exit(1);
}
