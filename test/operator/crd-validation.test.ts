/**
 * The CRD against the real API server: schema and CEL rules reject invalid InferenceDeployments with
 * user-facing messages (a table of cases), transition rules guard immutable fields, valid examples and
 * updates pass, and `kubectl explain` reads from the descriptions.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError, collectionPath, objectPath, RESOURCES } from '../../operator/src/kube/rest.ts';
import { REPO_ROOT } from '../../scripts/cluster/cluster.ts';
import { CLUSTER_SETUP_TIMEOUT_MS, readYaml, setupCluster, type TestCluster } from './support/cluster.ts';

type Spec = Record<string, unknown> & { model: Record<string, unknown> };

let cluster: TestCluster;
let ns: string;

beforeAll(async () => {
  cluster = await setupCluster();
  ns = await cluster.namespace('cel');
}, CLUSTER_SETUP_TIMEOUT_MS);

afterAll(async () => {
  await cluster?.cleanup();
});

function base(): Spec {
  return {
    model: { name: 'Qwen/Qwen3-8B', source: { hostPath: { path: '/models/qwen3-8b' } } },
    gpu: { product: 'NVIDIA-H100-80GB-HBM3' },
  };
}

function cr(name: string, spec: Spec) {
  return {
    apiVersion: 'inference.pagoda.dev/v1alpha1',
    kind: 'InferenceDeployment',
    metadata: { name, namespace: ns },
    spec,
  };
}

async function createError(name: string, spec: Spec): Promise<string | undefined> {
  try {
    await cluster.client.request('POST', collectionPath(RESOURCES.inferenceDeployment, ns), {
      body: cr(name, spec),
      query: { dryRun: 'All' },
    });
    return undefined;
  } catch (e) {
    if (e instanceof ApiError && e.status === 422) return e.message;
    throw e;
  }
}

const mutate = (f: (s: Spec) => void): Spec => {
  const s = base();
  f(s);
  return s;
};

describe('CEL and schema rules reject invalid specs with their message', () => {
  const cases: [string, Spec, string, string?][] = [
    [
      'no model source',
      mutate((s) => (s.model.source = {})),
      'exactly one of model.source.pvc, model.source.hostPath or model.source.huggingFace must be set',
    ],
    [
      'two model sources',
      mutate((s) => (s.model.source = { hostPath: { path: '/m' }, pvc: { claimName: 'w' } })),
      'exactly one of model.source.pvc, model.source.hostPath or model.source.huggingFace must be set',
    ],
    ['tensor parallel 3', mutate((s) => (s.parallelism = { tensor: 3 })), 'parallelism.tensor must be 1, 2, 4 or 8'],
    ['tensor parallel 16', mutate((s) => (s.parallelism = { tensor: 16 })), 'parallelism.tensor must be 1, 2, 4 or 8'],
    [
      'tensor parallel above GPUs per node',
      mutate((s) => {
        s.parallelism = { tensor: 8 };
        s.gpu = { product: 'NVIDIA-L4', perNode: 4 };
      }),
      'parallelism.tensor cannot exceed gpu.perNode: the GPUs of one replica must be on one node',
    ],
    [
      'relative hostPath',
      mutate((s) => (s.model.source = { hostPath: { path: 'models/x' } })),
      'model.source.hostPath.path must be an absolute path',
    ],
    [
      'subPath escaping the volume',
      mutate((s) => (s.model.source = { pvc: { claimName: 'w', subPath: 'a/../../etc' } })),
      "model.source.pvc.subPath must be a relative path without '..'",
    ],
    [
      'Hugging Face repo without owner',
      mutate((s) => (s.model.source = { huggingFace: { repo: 'qwen3' } })),
      'model.source.huggingFace.repo must look like <owner>/<name>',
    ],
    [
      'kv heads not dividing attention heads',
      mutate(
        (s) =>
          (s.model.architecture = {
            parameters: 1e9,
            layers: 8,
            hiddenSize: 1024,
            attentionHeads: 8,
            kvHeads: 3,
            headDim: 128,
          }),
      ),
      'model.architecture.attentionHeads must be a multiple of kvHeads',
    ],
    [
      'extraArgs overriding --port',
      mutate((s) => (s.runtime = { extraArgs: ['--port=9000'] })),
      'runtime.extraArgs must not set --model',
    ],
    [
      'extraArgs overriding --tensor-parallel-size',
      mutate((s) => (s.runtime = { extraArgs: ['--tensor-parallel-size', '2'] })),
      'use the matching spec field',
    ],
    [
      'too many extraArgs',
      mutate((s) => (s.runtime = { extraArgs: Array.from({ length: 65 }, (_, i) => `--x${i}`) })),
      'must have at most 64 items',
    ],
    [
      'GPU in runtime.resources',
      mutate((s) => (s.runtime = { resources: { limits: { 'nvidia.com/gpu': 2 } } })),
      'runtime.resources must not request GPUs; the operator sets the GPU count from the plan',
    ],
    [
      'reserved pod label',
      mutate((s) => (s.podTemplate = { labels: { 'app.kubernetes.io/name': 'x' } })),
      'podTemplate.labels must not use the inference.pagoda.dev/ or app.kubernetes.io/ prefixes',
    ],
    [
      'env with value and valueFrom',
      mutate(
        (s) =>
          (s.runtime = { env: [{ name: 'A', value: '1', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }] }),
      ),
      'an env entry sets either value or valueFrom, not both',
    ],
    [
      'GPU memory utilisation above 0.99',
      mutate((s) => (s.runtime = { gpuMemoryUtilization: 1.5 })),
      'should be less than or equal to 0.99',
    ],
    ['negative replicas', mutate((s) => (s.replicas = -1)), 'should be greater than or equal to 0'],
    ['missing model name', mutate((s) => delete s.model.name), 'spec.model.name: Required value'],
    [
      'unknown pull policy',
      mutate((s) => (s.runtime = { imagePullPolicy: 'Sometimes' })),
      'Unsupported value: "Sometimes"',
    ],
    [
      'autoscaling without maxReplicas',
      mutate((s) => (s.autoscaling = { target: 8 })),
      'autoscaling.maxReplicas and autoscaling.target are required unless autoscaling.mode is none',
    ],
    [
      'autoscaling without target',
      mutate((s) => (s.autoscaling = { mode: 'hpa', maxReplicas: 4 })),
      'autoscaling.maxReplicas and autoscaling.target are required unless autoscaling.mode is none',
    ],
    [
      'autoscaling min above max',
      mutate((s) => (s.autoscaling = { minReplicas: 5, maxReplicas: 4, target: 8 })),
      'autoscaling.minReplicas must not exceed autoscaling.maxReplicas',
    ],
    [
      'autoscaling min 2 with max 1',
      mutate((s) => (s.autoscaling = { minReplicas: 2, maxReplicas: 1, target: 8 })),
      'autoscaling.minReplicas must not exceed autoscaling.maxReplicas',
    ],
    [
      'KV-cache target above 1',
      mutate((s) => (s.autoscaling = { metric: 'kvCacheUsage', maxReplicas: 4, target: 80 })),
      'autoscaling.target for metric kvCacheUsage is the fraction of the KV cache in use per replica',
    ],
    [
      'autoscaling target 0',
      mutate((s) => (s.autoscaling = { maxReplicas: 4, target: 0 })),
      'spec.autoscaling.target: Invalid value: 0: spec.autoscaling.target in body should be greater than 0',
    ],
    [
      'autoscaling to zero replicas',
      mutate((s) => (s.autoscaling = { minReplicas: 0, maxReplicas: 4, target: 8 })),
      'spec.autoscaling.minReplicas in body should be greater than or equal to 1',
    ],
    [
      'unknown autoscaling mode',
      mutate((s) => (s.autoscaling = { mode: 'keda', maxReplicas: 4, target: 8 })),
      'spec.autoscaling.mode: Unsupported value: "keda"',
    ],
    [
      'unknown autoscaling metric',
      mutate((s) => (s.autoscaling = { metric: 'gpuUtilization', maxReplicas: 4, target: 8 })),
      'spec.autoscaling.metric: Unsupported value: "gpuUtilization"',
    ],
    [
      'scale-down window above an hour',
      mutate((s) => (s.autoscaling = { maxReplicas: 4, target: 8, scaleDown: { stabilizationWindowSeconds: 7200 } })),
      'spec.autoscaling.scaleDown.stabilizationWindowSeconds in body should be less than or equal to 3600',
    ],
    [
      'negative tolerance',
      mutate((s) => (s.autoscaling = { maxReplicas: 4, target: 8, tolerance: -0.1 })),
      'spec.autoscaling.tolerance in body should be greater than or equal to 0',
    ],
    [
      'name that cannot name a Service',
      base(),
      'metadata.name must be a DNS-1035 label of at most 63 characters',
      '1st-model',
    ],
  ];

  it.each(cases)('%s', async (_what, spec, message, name = 'x') => {
    const err = await createError(name, spec);
    expect(err, 'the API server accepted it').toBeDefined();
    expect(err).toContain(message);
  });

  it('accepts the base spec and fills the defaults', async () => {
    const created = await cluster.client.create<{ spec: Record<string, Record<string, unknown>> }>(
      collectionPath(RESOURCES.inferenceDeployment, ns),
      cr('defaults', base()),
    );
    expect(created.spec.gpu).toMatchObject({ resourceName: 'nvidia.com/gpu', perNode: 8 });
    expect(created.spec.runtime).toMatchObject({ gpuMemoryUtilization: 0.9, maxNumSeqs: 256, drainTimeoutSeconds: 30 });
    expect(created.spec.replicas).toBe(1);
  });

  it('fills the autoscaling defaults (builtin, min 1, requests, 30 s window, 5 min scale-down delay)', async () => {
    const created = await cluster.client.create<{ spec: Record<string, Record<string, unknown>> }>(
      collectionPath(RESOURCES.inferenceDeployment, ns),
      cr(
        'autoscaling-defaults',
        mutate((s) => (s.autoscaling = { maxReplicas: 4, target: 8 })),
      ),
    );
    expect(created.spec.autoscaling).toEqual({
      mode: 'builtin',
      minReplicas: 1,
      maxReplicas: 4,
      metric: 'requests',
      target: 8,
      tolerance: 0.1,
      metricWindowSeconds: 30,
      scaleUp: { stabilizationWindowSeconds: 0 },
      scaleDown: { stabilizationWindowSeconds: 300 },
    });
  });

  it.each([
    ['mode none without limits', { mode: 'none' }],
    ['a KV-cache target of 0.8', { metric: 'kvCacheUsage', target: 0.8, maxReplicas: 2 }],
    ['min equal to max', { minReplicas: 3, maxReplicas: 3, target: 4 }],
    ['hpa mode', { mode: 'hpa', maxReplicas: 10, target: 32, scaleDown: { stabilizationWindowSeconds: 0 } }],
  ])('accepts autoscaling: %s', async (_what, autoscaling) => {
    expect(
      await createError(
        'ok',
        mutate((s) => (s.autoscaling = autoscaling)),
      ),
    ).toBeUndefined();
  });

  it('accepts every example in crds/examples', async () => {
    const dir = join(REPO_ROOT, 'crds', 'examples');
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.yaml'))) {
      for (const doc of readYaml(join(dir, file))) {
        const meta = doc.metadata as Record<string, unknown>;
        await cluster.client.request('POST', collectionPath(RESOURCES.inferenceDeployment, ns), {
          body: { ...doc, metadata: { ...meta, namespace: ns } },
          query: { dryRun: 'All' },
        });
      }
    }
  });
});

describe('updates', () => {
  const path = () => objectPath(RESOURCES.inferenceDeployment, ns, 'mutable');
  beforeAll(async () => {
    await cluster.client.create(collectionPath(RESOURCES.inferenceDeployment, ns), cr('mutable', base()));
  });

  it.each([
    ['the model', { model: { name: 'Qwen/Qwen3-14B' } }],
    ['the tensor-parallel size', { parallelism: { tensor: 2 } }],
    ['the replicas', { replicas: 3 }],
    ['the GPU product', { gpu: { product: 'NVIDIA-H200' } }],
  ])('may change %s', async (_what, patch) => {
    await cluster.client.mergePatch(path(), { spec: patch });
  });

  it('refuses to change gpu.resourceName (immutable)', async () => {
    const err: unknown = await cluster.client
      .mergePatch(path(), { spec: { gpu: { resourceName: 'amd.com/gpu' } } })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).message).toContain('gpu.resourceName is immutable');
  });
});

it('kubectl explain reads the field descriptions', async () => {
  const out = await cluster.kubectl(['explain', 'infd.spec.parallelism.tensor']);
  expect(out).toContain('Tensor-parallel size = GPUs per replica');
  const window = await cluster.kubectl(['explain', 'infd.spec.autoscaling.scaleDown.stabilizationWindowSeconds']);
  expect(window).toContain('Default 5 minutes');
  const top = await cluster.kubectl(['explain', 'inferencedeployment']);
  expect(top).toContain('InferenceDeployment serves one model with the Pagoda runtime on GPU nodes');
});
