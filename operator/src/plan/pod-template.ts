/**
 * The runtime pod: `pagoda serve` with the planned flags, GPU limits, probes, volumes, security context
 * and scheduling. Pure: a function of the spec and the plan.
 */
import type { InferenceDeploymentSpec } from '../api/types.ts';
import { GPU_PRODUCT_LABEL, HTTP_PORT, MODEL_MOUNT } from './names.ts';
import type { Budget } from './sizing.ts';

/** preStop pause, so endpoints drop the pod before the runtime stops accepting (kube-proxy lag). */
export const PRESTOP_SLEEP_SECONDS = 5;
/** Margin over the drain timeout before the kubelet sends SIGKILL. */
export const TERMINATION_MARGIN_SECONDS = 15;
export const DEFAULT_DRAIN_TIMEOUT_SECONDS = 30;
/** Model load time allowance: a floor, plus time to read weights at a pessimistic ~50 MiB/s. */
export const MIN_STARTUP_SECONDS = 600;
export const STARTUP_SECONDS_PER_WEIGHT_GIB = 20;
const STARTUP_PERIOD_SECONDS = 10;
const RUNTIME_UID = 1000;

export interface PodInputs {
  spec: InferenceDeploymentSpec;
  budget: Budget;
  maxModelLen: number;
  image: string;
}

export function startupSeconds(spec: InferenceDeploymentSpec, budget: Budget): number {
  return (
    spec.runtime?.startupTimeoutSeconds ??
    Math.max(MIN_STARTUP_SECONDS, Math.ceil(budget.weightsGiB * STARTUP_SECONDS_PER_WEIGHT_GIB))
  );
}

/** Path of the model folder inside the container, and the flags of `pagoda serve`. */
function modelPath(spec: InferenceDeploymentSpec): string {
  return spec.model.source.huggingFace ? `${MODEL_MOUNT}/${spec.model.name}` : MODEL_MOUNT;
}

export function serveArgs(inputs: PodInputs): string[] {
  const { spec, budget } = inputs;
  const rt = spec.runtime ?? {};
  return [
    'serve',
    '--model',
    modelPath(spec),
    '--served-model-name',
    spec.model.name,
    '--host',
    '0.0.0.0',
    '--port',
    String(HTTP_PORT),
    '--device',
    'cuda',
    '--tensor-parallel-size',
    String(budget.tensorParallelSize),
    '--max-model-len',
    String(inputs.maxModelLen),
    '--max-num-seqs',
    String(rt.maxNumSeqs ?? 256),
    '--gpu-memory-utilization',
    String(rt.gpuMemoryUtilization ?? 0.9),
    '--drain-timeout',
    String(rt.drainTimeoutSeconds ?? DEFAULT_DRAIN_TIMEOUT_SECONDS),
    ...(rt.extraArgs ?? []),
  ];
}

const containerSecurity = {
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  runAsNonRoot: true,
  capabilities: { drop: ['ALL'] },
};

function modelVolume(spec: InferenceDeploymentSpec, budget: Budget): Record<string, unknown> {
  const src = spec.model.source;
  if (src.pvc) return { name: 'model', persistentVolumeClaim: { claimName: src.pvc.claimName, readOnly: true } };
  if (src.hostPath) return { name: 'model', hostPath: { path: src.hostPath.path, type: 'Directory' } };
  const limit = src.huggingFace?.storageSizeLimit ?? `${Math.ceil(budget.weightsGiB * 1.25 + 1)}Gi`;
  return { name: 'model', emptyDir: { sizeLimit: limit } };
}

function downloadContainer(inputs: PodInputs): Record<string, unknown>[] {
  const hf = inputs.spec.model.source.huggingFace;
  if (!hf) return [];
  const token = hf.tokenSecretRef
    ? [
        {
          name: 'HF_TOKEN',
          valueFrom: { secretKeyRef: { name: hf.tokenSecretRef.name, key: hf.tokenSecretRef.key ?? 'token' } },
        },
      ]
    : [];
  return [
    {
      name: 'download',
      image: inputs.image,
      ...(inputs.spec.runtime?.imagePullPolicy ? { imagePullPolicy: inputs.spec.runtime.imagePullPolicy } : {}),
      command: ['pagoda'],
      args: [
        'download',
        '--repo',
        hf.repo,
        '--revision',
        hf.revision ?? 'main',
        '--dir',
        `${MODEL_MOUNT}/${inputs.spec.model.name}`,
      ],
      env: [...token, { name: 'HOME', value: '/tmp' }],
      volumeMounts: [
        { name: 'model', mountPath: MODEL_MOUNT },
        { name: 'tmp', mountPath: '/tmp' },
      ],
      securityContext: containerSecurity,
    },
  ];
}

function gpuResources(spec: InferenceDeploymentSpec, tp: number): Record<string, unknown> {
  const gpu = spec.gpu?.resourceName ?? 'nvidia.com/gpu';
  const res = spec.runtime?.resources ?? {};
  return {
    requests: { ...res.requests, [gpu]: String(tp) },
    limits: { ...res.limits, [gpu]: String(tp) },
  };
}

function probe(path: string, periodSeconds: number, failureThreshold: number): Record<string, unknown> {
  return { httpGet: { path, port: 'http' }, periodSeconds, failureThreshold, timeoutSeconds: 5 };
}

/** The pod template, without the config-hash annotation (the caller hashes this). */
export function podTemplate(
  inputs: PodInputs,
  labels: Record<string, string>,
  annotations: Record<string, string>,
): Record<string, unknown> {
  const { spec, budget } = inputs;
  const pt = spec.podTemplate ?? {};
  const rt = spec.runtime ?? {};
  const tp = budget.tensorParallelSize;
  const drain = rt.drainTimeoutSeconds ?? DEFAULT_DRAIN_TIMEOUT_SECONDS;
  const gpuResource = spec.gpu?.resourceName ?? 'nvidia.com/gpu';
  const product = spec.gpu?.product;
  const nodeSelector = { ...pt.nodeSelector, ...(product ? { [GPU_PRODUCT_LABEL]: product } : {}) };

  const runtime = {
    name: 'runtime',
    image: inputs.image,
    ...(rt.imagePullPolicy ? { imagePullPolicy: rt.imagePullPolicy } : {}),
    command: ['pagoda'],
    args: serveArgs(inputs),
    ports: [{ name: 'http', containerPort: HTTP_PORT, protocol: 'TCP' }],
    env: [{ name: 'HOME', value: '/tmp' }, ...(rt.env ?? [])],
    resources: gpuResources(spec, tp),
    volumeMounts: [
      {
        name: 'model',
        mountPath: MODEL_MOUNT,
        readOnly: true,
        ...(spec.model.source.pvc?.subPath ? { subPath: spec.model.source.pvc.subPath } : {}),
      },
      { name: 'dshm', mountPath: '/dev/shm' },
      { name: 'tmp', mountPath: '/tmp' },
    ],
    // Startup gates the other probes until the weights are loaded and warmed; readiness then follows
    // /health/ready (503 while draining), liveness only asks whether the process answers.
    startupProbe: probe(
      '/health/ready',
      STARTUP_PERIOD_SECONDS,
      Math.ceil(startupSeconds(spec, budget) / STARTUP_PERIOD_SECONDS),
    ),
    readinessProbe: probe('/health/ready', 5, 3),
    livenessProbe: probe('/health', 10, 6),
    lifecycle: { preStop: { sleep: { seconds: PRESTOP_SLEEP_SECONDS } } },
    securityContext: containerSecurity,
  };

  return {
    metadata: { labels, annotations },
    spec: {
      ...(pt.serviceAccountName ? { serviceAccountName: pt.serviceAccountName } : {}),
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      ...(pt.priorityClassName ? { priorityClassName: pt.priorityClassName } : {}),
      ...(pt.runtimeClassName ? { runtimeClassName: pt.runtimeClassName } : {}),
      ...(pt.imagePullSecrets?.length ? { imagePullSecrets: pt.imagePullSecrets } : {}),
      terminationGracePeriodSeconds: drain + PRESTOP_SLEEP_SECONDS + TERMINATION_MARGIN_SECONDS,
      securityContext: {
        runAsNonRoot: true,
        runAsUser: RUNTIME_UID,
        runAsGroup: RUNTIME_UID,
        fsGroup: RUNTIME_UID,
        seccompProfile: { type: 'RuntimeDefault' },
      },
      ...(Object.keys(nodeSelector).length ? { nodeSelector } : {}),
      tolerations: [{ key: gpuResource, operator: 'Exists', effect: 'NoSchedule' }, ...(pt.tolerations ?? [])],
      ...(pt.affinity ? { affinity: pt.affinity } : {}),
      ...(spec.model.source.huggingFace ? { initContainers: downloadContainer(inputs) } : {}),
      containers: [runtime],
      volumes: [
        modelVolume(spec, budget),
        // NCCL moves tensors between the TP ranks through shared memory; the container default is 64 MiB.
        { name: 'dshm', emptyDir: { medium: 'Memory', sizeLimit: `${1 + tp}Gi` } },
        { name: 'tmp', emptyDir: {} },
      ],
    },
  };
}
