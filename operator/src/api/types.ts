/**
 * TypeScript view of the InferenceDeployment resource. The CRD in crds/ is the source of truth (schema,
 * defaults, CEL); these types follow it. Fields with CRD defaults are still optional here, because an
 * object built in a test or by hand may lack them.
 */

export const GROUP = 'inference.pagoda.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const KIND = 'InferenceDeployment';
export const PLURAL = 'inferencedeployments';

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  ownerReferences?: OwnerReference[];
}

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface Architecture {
  parameters: number;
  layers: number;
  hiddenSize: number;
  attentionHeads: number;
  kvHeads: number;
  headDim: number;
  vocabSize?: number;
  maxPositionEmbeddings?: number;
}

export interface ModelSource {
  pvc?: { claimName: string; subPath?: string };
  hostPath?: { path: string };
  huggingFace?: {
    repo: string;
    revision?: string;
    tokenSecretRef?: { name: string; key?: string };
    storageSizeLimit?: string | number;
  };
}

export interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: Record<string, unknown>;
}

export interface Toleration {
  key?: string;
  operator?: 'Exists' | 'Equal';
  value?: string;
  effect?: 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute';
  tolerationSeconds?: number;
}

export interface InferenceDeploymentSpec {
  model: { name: string; source: ModelSource; architecture?: Architecture };
  maxModelLen?: number;
  parallelism?: { tensor?: number };
  gpu?: { resourceName?: string; product?: string; memoryGiB?: number; perNode?: number };
  replicas?: number;
  runtime?: {
    image?: string;
    imagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never';
    gpuMemoryUtilization?: number;
    maxNumSeqs?: number;
    drainTimeoutSeconds?: number;
    startupTimeoutSeconds?: number;
    extraArgs?: string[];
    env?: EnvVar[];
    resources?: { requests?: Record<string, string | number>; limits?: Record<string, string | number> };
  };
  podTemplate?: {
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    nodeSelector?: Record<string, string>;
    tolerations?: Toleration[];
    affinity?: Record<string, unknown>;
    priorityClassName?: string;
    runtimeClassName?: string;
    serviceAccountName?: string;
    imagePullSecrets?: { name: string }[];
  };
}

export type ConditionType = 'Planned' | 'Progressing' | 'Ready' | 'Degraded';
export type ConditionStatus = 'True' | 'False' | 'Unknown';

export interface Condition {
  type: ConditionType;
  status: ConditionStatus;
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

export interface PlanStatus {
  tensorParallelSize: number;
  tensorParallelSource: 'Spec' | 'Computed';
  gpusPerReplica: number;
  totalGpus: number;
  maxModelLen: number;
  gpuMemoryGiB: number;
  usableGiBPerGpu: number;
  weightsGiB: number;
  weightsGiBPerGpu: number;
  overheadGiBPerGpu: number;
  kvCacheGiBPerGpu: number;
  kvBytesPerToken: number;
  maxKvTokens: number;
  reason: string;
}

export interface InferenceDeploymentStatus {
  observedGeneration?: number;
  replicas?: number;
  readyReplicas?: number;
  updatedReplicas?: number;
  availableReplicas?: number;
  selector?: string;
  endpoint?: string;
  plan?: PlanStatus;
  conditions?: Condition[];
}

export interface InferenceDeployment {
  apiVersion: typeof API_VERSION;
  kind: typeof KIND;
  metadata: ObjectMeta;
  spec: InferenceDeploymentSpec;
  status?: InferenceDeploymentStatus;
}
