/**
 * planFor: InferenceDeployment → the sizing plan and the desired children, or the reason there is none.
 * Pure (no I/O): the controller applies what this returns; tests call it with plain objects.
 */
import { createHash } from 'node:crypto';
import type { Architecture, InferenceDeployment, PlanStatus } from '../api/types.ts';
import { API_VERSION, KIND } from '../api/types.ts';
import { catalogModelNames, GPU_PRODUCTS, lookupModel } from './catalog.ts';
import { horizontalPodAutoscaler } from './hpa.ts';
import { CONFIG_HASH_ANNOTATION, commonLabels, HTTP_PORT, selectorLabels } from './names.ts';
import { podTemplate, startupSeconds } from './pod-template.ts';
import { type Budget, size } from './sizing.ts';

export interface PlanOptions {
  /** Runtime image when spec.runtime.image is empty. */
  defaultImage: string;
}

export type KubeObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string } & Record<string, unknown>;
} & Record<string, unknown>;

export interface Children {
  deployment: KubeObject;
  service: KubeObject;
  podDisruptionBudget: KubeObject;
  /** Only in autoscaling mode hpa. */
  horizontalPodAutoscaler?: KubeObject;
}

export type PlanFailureReason =
  | 'UnknownModel'
  | 'MaxModelLenUnknown'
  | 'MaxModelLenTooLong'
  | 'GpuMemoryUnknown'
  | 'InvalidTensorParallel'
  | 'DoesNotFit';

export type PlanResult =
  | { planned: true; plan: PlanStatus; children: Children; endpoint: string; selector: string }
  | { planned: false; reason: PlanFailureReason; message: string };

const round2 = (x: number): number => Math.round(x * 100) / 100;

function resolveArchitecture(cr: InferenceDeployment): Architecture | string {
  const { model } = cr.spec;
  if (model.architecture) return model.architecture;
  const byName = lookupModel(model.name);
  if (byName) return byName;
  const repo = model.source.huggingFace?.repo;
  const byRepo = repo ? lookupModel(repo) : undefined;
  if (byRepo) return byRepo;
  return (
    `model ${model.name} is not in the built-in catalog (${catalogModelNames().join(', ')}); ` +
    'set spec.model.architecture from its config.json'
  );
}

function resolveGpuMemory(cr: InferenceDeployment): number | string {
  const gpu = cr.spec.gpu ?? {};
  if (gpu.memoryGiB !== undefined) return gpu.memoryGiB;
  const known = gpu.product ? GPU_PRODUCTS[gpu.product] : undefined;
  if (known !== undefined) return known;
  const what = gpu.product ? `gpu.product ${gpu.product} is not in the built-in GPU table` : 'gpu.product is not set';
  return `${what}; set spec.gpu.memoryGiB (known products: ${Object.keys(GPU_PRODUCTS).join(', ')})`;
}

function ownerReference(cr: InferenceDeployment): Record<string, unknown> {
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    name: cr.metadata.name,
    uid: cr.metadata.uid ?? '',
    controller: true,
    blockOwnerDeletion: true,
  };
}

function hashOf(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 16);
}

function buildChildren(cr: InferenceDeployment, budget: Budget, maxModelLen: number, image: string): Children {
  const name = cr.metadata.name;
  const namespace = cr.metadata.namespace ?? 'default';
  const labels = commonLabels(name, cr.spec.model.name);
  const meta = { name, namespace, labels, ownerReferences: [ownerReference(cr)] };
  const podLabels = { ...cr.spec.podTemplate?.labels, ...labels };
  const podAnnotations = {
    ...cr.spec.podTemplate?.annotations,
    'prometheus.io/scrape': 'true',
    'prometheus.io/port': String(HTTP_PORT),
    'prometheus.io/path': '/metrics',
  };
  const template = podTemplate({ spec: cr.spec, budget, maxModelLen, image }, podLabels, podAnnotations);
  // The hash names the pod configuration in one value: kubectl shows which pods run which config, and it
  // changes whenever anything that reaches the pod does, which rolls the Deployment.
  (template.metadata as { annotations: Record<string, string> }).annotations[CONFIG_HASH_ANNOTATION] = hashOf(template);

  const hpa = horizontalPodAutoscaler(cr, meta);
  return {
    ...(hpa ? { horizontalPodAutoscaler: hpa } : {}),
    deployment: {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: meta,
      spec: {
        replicas: cr.spec.replicas ?? 1,
        selector: { matchLabels: selectorLabels(name) },
        // Never take a serving replica down before its replacement is Ready; this needs spare GPUs for the
        // surge pods (a rollout without them waits, and Degraded says so).
        strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: '25%', maxUnavailable: 0 } },
        progressDeadlineSeconds: startupSeconds(cr.spec, budget) + 300,
        revisionHistoryLimit: 5,
        template,
      },
    },
    service: {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: meta,
      spec: {
        type: 'ClusterIP',
        selector: selectorLabels(name),
        ports: [{ name: 'http', port: HTTP_PORT, targetPort: 'http', protocol: 'TCP', appProtocol: 'http' }],
      },
    },
    podDisruptionBudget: {
      apiVersion: 'policy/v1',
      kind: 'PodDisruptionBudget',
      metadata: meta,
      spec: {
        selector: { matchLabels: selectorLabels(name) },
        maxUnavailable: 1,
        // A pod still loading its model protects nothing; let node drains evict it.
        unhealthyPodEvictionPolicy: 'AlwaysAllow',
      },
    },
  };
}

export function planFor(cr: InferenceDeployment, options: PlanOptions): PlanResult {
  const { spec } = cr;
  const arch = resolveArchitecture(cr);
  if (typeof arch === 'string') return { planned: false, reason: 'UnknownModel', message: arch };

  const maxModelLen = spec.maxModelLen ?? arch.maxPositionEmbeddings;
  if (maxModelLen === undefined) {
    return {
      planned: false,
      reason: 'MaxModelLenUnknown',
      message: 'spec.maxModelLen is not set and the architecture has no maxPositionEmbeddings to default it from',
    };
  }
  if (arch.maxPositionEmbeddings !== undefined && maxModelLen > arch.maxPositionEmbeddings) {
    return {
      planned: false,
      reason: 'MaxModelLenTooLong',
      message: `maxModelLen ${maxModelLen} exceeds the ${arch.maxPositionEmbeddings}-token context of ${spec.model.name}; set maxModelLen ≤ ${arch.maxPositionEmbeddings}`,
    };
  }

  const gpuMemoryGiB = resolveGpuMemory(cr);
  if (typeof gpuMemoryGiB === 'string') return { planned: false, reason: 'GpuMemoryUnknown', message: gpuMemoryGiB };

  const sizing = size({
    modelName: spec.model.name,
    arch,
    maxModelLen,
    gpuMemoryGiB,
    gpuMemoryUtilization: spec.runtime?.gpuMemoryUtilization ?? 0.9,
    gpusPerNode: spec.gpu?.perNode ?? 8,
    tensorParallel: spec.parallelism?.tensor,
  });
  if (!sizing.ok) return { planned: false, reason: sizing.reason, message: sizing.message };

  const b = sizing.budget;
  const replicas = spec.replicas ?? 1;
  const plan: PlanStatus = {
    tensorParallelSize: b.tensorParallelSize,
    tensorParallelSource: sizing.source,
    gpusPerReplica: b.tensorParallelSize,
    totalGpus: b.tensorParallelSize * replicas,
    maxModelLen,
    gpuMemoryGiB,
    usableGiBPerGpu: round2(b.usableGiBPerGpu),
    weightsGiB: round2(b.weightsGiB),
    weightsGiBPerGpu: round2(b.weightsGiBPerGpu),
    overheadGiBPerGpu: round2(b.overheadGiBPerGpu),
    kvCacheGiBPerGpu: round2(b.kvCacheGiBPerGpu),
    kvBytesPerToken: b.kvBytesPerToken,
    maxKvTokens: b.maxKvTokens,
    reason: sizing.explanation,
  };
  const name = cr.metadata.name;
  const namespace = cr.metadata.namespace ?? 'default';
  return {
    planned: true,
    plan,
    children: buildChildren(cr, b, maxModelLen, spec.runtime?.image ?? options.defaultImage),
    endpoint: `http://${name}.${namespace}.svc:${HTTP_PORT}/v1`,
    selector: Object.entries(selectorLabels(name))
      .map(([k, v]) => `${k}=${v}`)
      .join(','),
  };
}
