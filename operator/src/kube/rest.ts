/**
 * A small JSON client for the Kubernetes API on top of @kubernetes/client-node's KubeConfig (auth, TLS)
 * and HTTP library. The generated typed clients convert objects through their model classes (Dates,
 * dropped unknown fields) and cannot server-side-apply a subresource; the operator needs plain JSON,
 * SSA on /status and optimistic-concurrency PUTs, so it speaks REST directly.
 */
import { HttpMethod, IsomorphicFetchHttpLibrary, type KubeConfig, RequestContext } from '@kubernetes/client-node';

/** A failed API call, with the HTTP status and the server's Status reason and message. */
export class ApiError extends Error {
  readonly status: number;
  readonly reason: string;
  readonly body: unknown;
  constructor(method: string, path: string, status: number, body: unknown) {
    const s = (body ?? {}) as { message?: string; reason?: string };
    super(`${method} ${path}: ${status}${s.reason ? ` ${s.reason}` : ''}${s.message ? `: ${s.message}` : ''}`);
    this.name = 'ApiError';
    this.status = status;
    this.reason = s.reason ?? '';
    this.body = body;
  }
}

export const isNotFound = (e: unknown): boolean => e instanceof ApiError && e.status === 404;
export const isConflict = (e: unknown): boolean => e instanceof ApiError && e.status === 409;

/** Where a kind lives in the API. */
export interface Resource {
  group: string; // '' for the core group
  version: string;
  plural: string;
  namespaced: boolean;
}

export const RESOURCES = {
  deployment: { group: 'apps', version: 'v1', plural: 'deployments', namespaced: true },
  service: { group: '', version: 'v1', plural: 'services', namespaced: true },
  pod: { group: '', version: 'v1', plural: 'pods', namespaced: true },
  node: { group: '', version: 'v1', plural: 'nodes', namespaced: false },
  namespace: { group: '', version: 'v1', plural: 'namespaces', namespaced: false },
  event: { group: '', version: 'v1', plural: 'events', namespaced: true },
  secret: { group: '', version: 'v1', plural: 'secrets', namespaced: true },
  podDisruptionBudget: { group: 'policy', version: 'v1', plural: 'poddisruptionbudgets', namespaced: true },
  lease: { group: 'coordination.k8s.io', version: 'v1', plural: 'leases', namespaced: true },
  crd: { group: 'apiextensions.k8s.io', version: 'v1', plural: 'customresourcedefinitions', namespaced: false },
  inferenceDeployment: {
    group: 'inference.pagoda.dev',
    version: 'v1alpha1',
    plural: 'inferencedeployments',
    namespaced: true,
  },
} as const satisfies Record<string, Resource>;

export function collectionPath(r: Resource, namespace?: string): string {
  const base = r.group ? `/apis/${r.group}/${r.version}` : `/api/${r.version}`;
  return r.namespaced && namespace ? `${base}/namespaces/${namespace}/${r.plural}` : `${base}/${r.plural}`;
}

export function objectPath(r: Resource, namespace: string | undefined, name: string, subresource?: string): string {
  return `${collectionPath(r, namespace)}/${encodeURIComponent(name)}${subresource ? `/${subresource}` : ''}`;
}

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  contentType?: string;
  timeoutMs?: number;
}

export interface KubeList<T> {
  metadata: { resourceVersion?: string; continue?: string };
  items: T[];
}

export class KubeClient {
  readonly kc: KubeConfig;
  private readonly http = new IsomorphicFetchHttpLibrary();
  private readonly server: string;

  constructor(kc: KubeConfig) {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error('the kubeconfig has no current cluster (set KUBECONFIG or run in a pod)');
    this.kc = kc;
    this.server = cluster.server.replace(/\/$/, '');
  }

  async request<T>(method: HttpMethod, path: string, opts: RequestOptions = {}): Promise<T> {
    return (await this.send<T>(method, path, opts)).body;
  }

  /** Like request, with the HTTP status (201 tells a server-side apply that created the object). */
  async send<T>(method: HttpMethod, path: string, opts: RequestOptions = {}): Promise<{ status: number; body: T }> {
    const ctx = new RequestContext(this.server + path, method);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) ctx.setQueryParam(k, String(v));
    ctx.setHeaderParam('Accept', 'application/json');
    if (opts.body !== undefined) {
      ctx.setHeaderParam('Content-Type', opts.contentType ?? 'application/json');
      ctx.setBody(JSON.stringify(opts.body));
    }
    ctx.setSignal(AbortSignal.timeout(opts.timeoutMs ?? 30_000));
    await this.kc.applySecurityAuthentication(ctx);
    const res = await this.http.send(ctx).toPromise();
    const text = await res.body.text();
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = { message: text.slice(0, 500) };
    }
    if (res.httpStatusCode >= 400) throw new ApiError(method, path, res.httpStatusCode, parsed);
    return { status: res.httpStatusCode, body: parsed as T };
  }

  get<T>(path: string, query?: RequestOptions['query']): Promise<T> {
    return this.request<T>(HttpMethod.GET, path, query ? { query } : {});
  }

  /** Reads a whole collection, following `continue` tokens. */
  async list<T>(path: string, query: RequestOptions['query'] = {}): Promise<KubeList<T>> {
    const items: T[] = [];
    let cont: string | undefined;
    let rv: string | undefined;
    do {
      const page = await this.get<KubeList<T>>(path, { ...query, limit: 500, continue: cont });
      items.push(...(page.items ?? []));
      cont = page.metadata?.continue || undefined;
      rv = page.metadata?.resourceVersion;
    } while (cont);
    return { metadata: rv ? { resourceVersion: rv } : {}, items };
  }

  create<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>(HttpMethod.POST, path, { body });
  }

  replace<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>(HttpMethod.PUT, path, { body });
  }

  mergePatch<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>(HttpMethod.PATCH, path, { body, contentType: 'application/merge-patch+json' });
  }

  /** Server-side apply: the manager owns exactly the fields in body; force takes them from others. */
  apply<T>(path: string, body: unknown, fieldManager: string, force = true): Promise<{ status: number; body: T }> {
    return this.send<T>(HttpMethod.PATCH, path, {
      body,
      contentType: 'application/apply-patch+yaml',
      query: { fieldManager, force },
    });
  }

  delete<T>(path: string, query?: RequestOptions['query']): Promise<T> {
    return this.request<T>(HttpMethod.DELETE, path, query ? { query } : {});
  }
}
