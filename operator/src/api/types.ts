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
  autoscaling?: AutoscalingSpec;
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

export type AutoscalingMode = 'builtin' | 'hpa' | 'none';
export type AutoscalingMetric = 'requests' | 'kvCacheUsage';

/** spec.autoscaling. The CRD fills the defaults; the operator applies the same ones (defaults.ts). */
export interface AutoscalingSpec {
  mode?: AutoscalingMode;
  minReplicas?: number;
  maxReplicas?: number;
  metric?: AutoscalingMetric;
  /** Per replica: running + waiting sequences (requests), or the KV-cache usage ratio (kvCacheUsage). */
  target?: number;
  tolerance?: number;
  metricWindowSeconds?: number;
  scaleUp?: { stabilizationWindowSeconds?: number };
  scaleDown?: { stabilizationWindowSeconds?: number };
}

/** One run of equal recommendations: `replicas` from `since` until the next entry (or now). */
export interface RecommendationStatus {
  replicas: number;
  since: string;
}

export interface AutoscalingStatus {
  mode: AutoscalingMode;
  metric?: AutoscalingMetric;
  target?: number;
  /** The metric per replica, averaged over the window (what target is compared with). */
  currentValue?: number;
  /** Ready pods whose /metrics were read in the last scrape. */
  scrapedPods?: number;
  currentReplicas?: number;
  desiredReplicas?: number;
  lastScaleTime?: string;
  reason?: string;
  message?: string;
  /** hpa mode: the HorizontalPodAutoscaler that scales this object. */
  horizontalPodAutoscaler?: string;
  /** builtin mode: recent recommendations, for the stabilization windows (survive operator restarts). */
  recommendations?: RecommendationStatus[];
}

export type ConditionType = 'Planned' | 'Progressing' | 'Ready' | 'Degraded' | 'ScalingLimited';
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
  autoscaling?: AutoscalingStatus;
  conditions?: Condition[];
}

export interface InferenceDeployment {
  apiVersion: typeof API_VERSION;
  kind: typeof KIND;
  metadata: ObjectMeta;
  spec: InferenceDeploymentSpec;
  status?: InferenceDeploymentStatus;
}
