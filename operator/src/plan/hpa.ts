/**
 * hpa mode: an autoscaling/v2 HorizontalPodAutoscaler of the same name on the InferenceDeployment's scale
 * subresource, with one Pods metric per spec.autoscaling.metric. The HPA reads pod metrics through the
 * custom metrics API, so the cluster needs an adapter serving them (e.g. prometheus-adapter with the rule
 * in docs/operator.md): kvCacheUsage is the runtime's pagoda_kv_cache_usage_ratio as it is; requests is
 * pagoda_num_requests, which the adapter rule sums from pagoda_num_requests_running and
 * pagoda_num_requests_waiting (the HPA cannot add two metrics itself: it takes the largest of their
 * recommendations). Pure.
 */
import type { AutoscalingMetric, InferenceDeployment } from '../api/types.ts';
import { API_VERSION, KIND } from '../api/types.ts';
import { toQuantity } from '../autoscaler/hpa-status.ts';
import { autoscalingMode, policyOf } from '../autoscaler/policy.ts';
import type { KubeObject } from './plan.ts';

/** The custom-metrics name the HPA asks the adapter for. */
export const HPA_METRIC_NAMES: Record<AutoscalingMetric, string> = {
  requests: 'pagoda_num_requests',
  kvCacheUsage: 'pagoda_kv_cache_usage_ratio',
};

export function horizontalPodAutoscaler(
  cr: InferenceDeployment,
  metadata: KubeObject['metadata'],
): KubeObject | undefined {
  if (autoscalingMode(cr) !== 'hpa') return undefined;
  const policy = policyOf(cr);
  if (typeof policy === 'string') return undefined;
  return {
    apiVersion: 'autoscaling/v2',
    kind: 'HorizontalPodAutoscaler',
    metadata,
    spec: {
      scaleTargetRef: { apiVersion: API_VERSION, kind: KIND, name: cr.metadata.name },
      minReplicas: policy.minReplicas,
      maxReplicas: policy.maxReplicas,
      metrics: [
        {
          type: 'Pods',
          pods: {
            metric: { name: HPA_METRIC_NAMES[policy.metric] },
            target: { type: 'AverageValue', averageValue: toQuantity(policy.target) },
          },
        },
      ],
      behavior: {
        scaleUp: { stabilizationWindowSeconds: policy.scaleUpWindowMs / 1000 },
        scaleDown: { stabilizationWindowSeconds: policy.scaleDownWindowMs / 1000 },
      },
    },
  };
}
