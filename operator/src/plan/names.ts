/** Labels, annotations and well-known values the operator puts on what it creates. */

export const FIELD_MANAGER = 'pagoda-operator';

/** The selector label: every child and pod of an InferenceDeployment carries it with the CR's name. */
export const NAME_LABEL = 'inference.pagoda.dev/name';
export const MODEL_LABEL = 'inference.pagoda.dev/model';
export const CONFIG_HASH_ANNOTATION = 'inference.pagoda.dev/config-hash';
export const MANAGED_BY = 'pagoda-operator';

/** Node label of NVIDIA GPU feature discovery that names the GPU model. */
export const GPU_PRODUCT_LABEL = 'nvidia.com/gpu.product';

export const HTTP_PORT = 8000;
export const MODEL_MOUNT = '/models';
export const DEFAULT_RUNTIME_IMAGE_REPO = 'ghcr.io/pagoda-ai/pagoda-runtime';

export function selectorLabels(name: string): Record<string, string> {
  return { [NAME_LABEL]: name };
}

/** A label value from a model id: '/' and other characters labels refuse become '-', at most 63 chars. */
export function modelLabelValue(model: string): string {
  return model
    .replace(/[^A-Za-z0-9._-]/g, '-')
    .slice(0, 63)
    .replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '');
}

export function commonLabels(name: string, model: string): Record<string, string> {
  return {
    'app.kubernetes.io/name': 'pagoda-runtime',
    'app.kubernetes.io/instance': name,
    'app.kubernetes.io/component': 'inference',
    'app.kubernetes.io/managed-by': MANAGED_BY,
    [NAME_LABEL]: name,
    [MODEL_LABEL]: modelLabelValue(model),
  };
}
