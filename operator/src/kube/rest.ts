/**
 * A small JSON client for the Kubernetes API over node:https with keep-alive connections: requests,
 * server-side apply (also on /status), optimistic-concurrency PUTs, paginated lists and watch streams.
 * The operator talks plain JSON: no model classes, no conversions.
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { GROUP, PLURAL, VERSION } from '../api/types.ts';
import { type Connection, loadConnection } from './kubeconfig.ts';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

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
  podDisruptionBudget: { group: 'policy', version: 'v1', plural: 'poddisruptionbudgets', namespaced: true },
  horizontalPodAutoscaler: {
    group: 'autoscaling',
    version: 'v2',
    plural: 'horizontalpodautoscalers',
    namespaced: true,
  },
  lease: { group: 'coordination.k8s.io', version: 'v1', plural: 'leases', namespaced: true },
  crd: { group: 'apiextensions.k8s.io', version: 'v1', plural: 'customresourcedefinitions', namespaced: false },
  inferenceDeployment: { group: GROUP, version: VERSION, plural: PLURAL, namespaced: true },
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

export interface WatchEvent<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: T;
}

export class KubeClient {
  readonly connection: Connection;
  private readonly agent: HttpAgent | HttpsAgent;
  private readonly secure: boolean;
  private readonly url: URL;

  constructor(connection: Connection) {
    this.connection = connection;
    this.url = new URL(connection.server);
    this.secure = this.url.protocol === 'https:';
    const common = { keepAlive: true, maxSockets: 64 };
    this.agent = this.secure
      ? new HttpsAgent({
          ...common,
          ...(connection.ca ? { ca: connection.ca } : {}),
          ...(connection.cert ? { cert: connection.cert } : {}),
          ...(connection.key ? { key: connection.key } : {}),
          rejectUnauthorized: !connection.insecureSkipTlsVerify,
        })
      : new HttpAgent(common);
  }

  /** A client from a kubeconfig file (or KUBECONFIG, ~/.kube/config, in-cluster when undefined). */
  static load(kubeconfig?: string): KubeClient {
    return new KubeClient(loadConnection(kubeconfig));
  }

  private async open(
    method: HttpMethod,
    path: string,
    opts: RequestOptions & { signal?: AbortSignal },
  ): Promise<IncomingMessage> {
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) query.set(k, String(v));
    const qs = query.toString();
    const body = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    const headers: Record<string, string> = {
      Accept: 'application/json',
      'User-Agent': 'pagoda-operator',
      ...(await this.connection.authHeaders()),
    };
    if (body !== undefined) {
      headers['Content-Type'] = opts.contentType ?? 'application/json';
      headers['Content-Length'] = String(Buffer.byteLength(body));
    }
    const request = this.secure ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = request(
        {
          protocol: this.url.protocol,
          hostname: this.url.hostname,
          port: this.url.port,
          path: `${this.url.pathname.replace(/\/$/, '')}${path}${qs ? `?${qs}` : ''}`,
          method,
          headers,
          agent: this.agent,
          ...(opts.signal ? { signal: opts.signal } : {}),
          ...(opts.timeoutMs ? { timeout: opts.timeoutMs } : {}),
        },
        resolve,
      );
      req.on('error', reject);
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no response in ${opts.timeoutMs} ms`)));
      req.end(body);
    });
  }

  async request<T>(method: HttpMethod, path: string, opts: RequestOptions = {}): Promise<T> {
    return (await this.send<T>(method, path, opts)).body;
  }

  /** Like request, with the HTTP status (201 tells a server-side apply that created the object). */
  async send<T>(method: HttpMethod, path: string, opts: RequestOptions = {}): Promise<{ status: number; body: T }> {
    const res = await this.open(method, path, { timeoutMs: 30_000, ...opts });
    const chunks: Buffer[] = [];
    for await (const c of res) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = { message: text.slice(0, 500) };
    }
    const status = res.statusCode ?? 0;
    if (status >= 400) throw new ApiError(method, path, status, parsed);
    return { status, body: parsed as T };
  }

  /**
   * Streams a watch: calls onEvent per event until the server ends the watch (resolves), the
   * connection fails or the signal aborts (rejects). Status errors arrive as ERROR events.
   */
  async watch<T>(
    path: string,
    query: Record<string, string | number | boolean | undefined>,
    onEvent: (e: WatchEvent<T>) => void,
    signal: AbortSignal,
  ): Promise<void> {
    const res = await this.open('GET', path, { query: { ...query, watch: true }, signal });
    if ((res.statusCode ?? 0) >= 400) {
      const chunks: Buffer[] = [];
      for await (const c of res) chunks.push(c as Buffer);
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {}
      throw new ApiError('GET', path, res.statusCode ?? 0, body);
    }
    // Decode as a stream: a character split between two chunks stays whole (status texts hold × ≤ →).
    res.setEncoding('utf8');
    let rest = '';
    for await (const chunk of res) {
      const lines = (rest + (chunk as string)).split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) if (line.trim()) onEvent(JSON.parse(line) as WatchEvent<T>);
    }
  }

  get<T>(path: string, query?: RequestOptions['query']): Promise<T> {
    return this.request<T>('GET', path, query ? { query } : {});
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
    return this.request<T>('POST', path, { body });
  }

  replace<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>('PUT', path, { body });
  }

  mergePatch<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>('PATCH', path, { body, contentType: 'application/merge-patch+json' });
  }

  /** Server-side apply: the manager owns exactly the fields in body; force takes them from others. */
  apply<T>(path: string, body: unknown, fieldManager: string, force = true): Promise<{ status: number; body: T }> {
    return this.send<T>('PATCH', path, {
      body,
      contentType: 'application/apply-patch+yaml',
      query: { fieldManager, force },
    });
  }

  delete<T>(path: string, query?: RequestOptions['query']): Promise<T> {
    return this.request<T>('DELETE', path, query ? { query } : {});
  }

  /** Closes idle keep-alive connections. */
  close(): void {
    this.agent.destroy();
  }
}
