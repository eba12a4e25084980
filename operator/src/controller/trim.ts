/**
 * What the informer caches keep of each kind: only the fields the reconciler reads. managedFields
 * alone is often larger than the rest of an object; Deployment and Pod specs are not read at all.
 */

type Meta = Record<string, unknown> & { name: string };
type Loose = { metadata: Meta } & Record<string, unknown>;
interface Named {
  metadata: { name: string };
}

const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';

function meta(m: Meta): Meta {
  const { managedFields: _managed, ...rest } = m;
  const annotations = rest.annotations as Record<string, string> | undefined;
  if (annotations?.[LAST_APPLIED]) {
    const { [LAST_APPLIED]: _last, ...others } = annotations;
    rest.annotations = others;
  }
  return rest as Meta;
}

/** InferenceDeployments: everything but managedFields and kubectl's last-applied copy. */
export function trimCustomResource<T extends Named>(obj: T): T {
  const o = obj as unknown as Loose;
  return { ...o, metadata: meta(o.metadata) } as unknown as T;
}

/** Deployments: metadata and status (the reconciler applies the spec, it never reads it back). */
export function trimDeployment<T extends Named>(obj: T): T {
  const o = obj as unknown as Loose;
  return { apiVersion: o.apiVersion, kind: o.kind, metadata: meta(o.metadata), status: o.status } as unknown as T;
}

/** HorizontalPodAutoscalers: metadata and status too (status.autoscaling mirrors it in hpa mode). */
export const trimHorizontalPodAutoscaler = trimDeployment;

/** Services and PodDisruptionBudgets: only whether they exist and who controls them. */
export function trimToMetadata<T extends Named>(obj: T): T {
  const o = obj as unknown as Loose;
  return { apiVersion: o.apiVersion, kind: o.kind, metadata: meta(o.metadata) } as unknown as T;
}

interface PodStatus {
  phase?: string;
  podIP?: string;
  conditions?: { type: string; status: string; reason?: string; message?: string }[];
  containerStatuses?: { name: string; state?: { waiting?: unknown } }[];
  initContainerStatuses?: { name: string; state?: { waiting?: unknown } }[];
}

/** Pods: name, labels, deletion, phase, IP (the autoscaler's scrape target), conditions and waiting reasons
 *  (scheduling and crash signals). */
export function trimPod<T extends Named>(obj: T): T {
  const o = obj as unknown as Loose;
  const m = o.metadata;
  const s = (o.status ?? {}) as PodStatus;
  const containers = (list: PodStatus['containerStatuses']) =>
    list?.map((c) => ({ name: c.name, ...(c.state?.waiting ? { state: { waiting: c.state.waiting } } : {}) }));
  return {
    metadata: {
      name: m.name,
      namespace: m.namespace,
      labels: m.labels,
      resourceVersion: m.resourceVersion,
      ...(m.deletionTimestamp ? { deletionTimestamp: m.deletionTimestamp } : {}),
    },
    status: {
      phase: s.phase,
      ...(s.podIP ? { podIP: s.podIP } : {}),
      conditions: s.conditions?.map(({ type, status, reason, message }) => ({ type, status, reason, message })),
      containerStatuses: containers(s.containerStatuses),
      initContainerStatuses: containers(s.initContainerStatuses),
    },
  } as unknown as T;
}
