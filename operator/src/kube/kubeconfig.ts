/**
 * Where the API server is and how to authenticate: from a kubeconfig file (KUBECONFIG, ~/.kube/config)
 * or, inside a pod, from the mounted ServiceAccount. Covers server, CA, insecure-skip-tls-verify, client
 * certificates, bearer tokens (inline or a file, re-read as kubelets rotate it) and basic auth. Users
 * with an exec or auth-provider plugin (cloud CLIs) are handed to @kubernetes/client-node, loaded only
 * then: it costs ~80 MB of memory, which the operator otherwise does without.
 */
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { parse } from 'yaml';

export interface Connection {
  server: string;
  ca?: Buffer | undefined;
  cert?: Buffer | undefined;
  key?: Buffer | undefined;
  insecureSkipTlsVerify: boolean;
  /** Headers that authenticate a request (Authorization), computed per request. */
  authHeaders: () => Promise<Record<string, string>>;
  /** Namespace of the context, or of the pod. */
  namespace: string;
  /** For messages: the kubeconfig path, or "in-cluster". */
  source: string;
}

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

interface Named<T> {
  name: string;
  [k: string]: unknown;
  cluster?: T;
  user?: T;
  context?: T;
}

function fileOrData(base: string, file: unknown, data: unknown): Buffer | undefined {
  if (typeof data === 'string' && data) return Buffer.from(data, 'base64');
  if (typeof file === 'string' && file) return readFileSync(isAbsolute(file) ? file : join(base, file));
  return undefined;
}

/** A token read from a file, re-read every minute (projected ServiceAccount tokens rotate). */
function fileToken(path: string): () => string {
  let value = '';
  let readAt = 0;
  return () => {
    if (Date.now() - readAt > 60_000) {
      value = readFileSync(path, 'utf8').trim();
      readAt = Date.now();
    }
    return value;
  };
}

function bearer(token: () => string): () => Promise<Record<string, string>> {
  return async () => ({ Authorization: `Bearer ${token()}` });
}

export function inCluster(): Connection {
  const host = process.env.KUBERNETES_SERVICE_HOST;
  const port = process.env.KUBERNETES_SERVICE_PORT ?? '443';
  if (!host) throw new Error('not running in a pod (KUBERNETES_SERVICE_HOST is unset)');
  return {
    server: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
    ca: readFileSync(join(SA_DIR, 'ca.crt')),
    insecureSkipTlsVerify: false,
    authHeaders: bearer(fileToken(join(SA_DIR, 'token'))),
    namespace: existsSync(join(SA_DIR, 'namespace'))
      ? readFileSync(join(SA_DIR, 'namespace'), 'utf8').trim()
      : 'default',
    source: 'in-cluster',
  };
}

export function fromKubeconfigFile(path: string, contextName?: string): Connection {
  const doc = parse(readFileSync(path, 'utf8')) as {
    'current-context'?: string;
    contexts?: Named<{ cluster: string; user: string; namespace?: string }>[];
    clusters?: Named<Record<string, unknown>>[];
    users?: Named<Record<string, unknown>>[];
  };
  const base = dirname(path);
  const ctxName = contextName ?? doc['current-context'];
  const ctx = doc.contexts?.find((c) => c.name === ctxName)?.context;
  if (!ctx) throw new Error(`${path}: context "${ctxName ?? ''}" not found`);
  const cluster = doc.clusters?.find((c) => c.name === ctx.cluster)?.cluster;
  if (!cluster || typeof cluster.server !== 'string') throw new Error(`${path}: cluster "${ctx.cluster}" not found`);
  const user = doc.users?.find((u) => u.name === ctx.user)?.user ?? {};

  let authHeaders: Connection['authHeaders'] = async () => ({});
  if (typeof user.token === 'string' && user.token) {
    const token = user.token;
    authHeaders = bearer(() => token);
  } else if (typeof user.tokenFile === 'string') {
    authHeaders = bearer(fileToken(isAbsolute(user.tokenFile) ? user.tokenFile : join(base, user.tokenFile)));
  } else if (typeof user.username === 'string') {
    const basic = Buffer.from(`${user.username}:${String(user.password ?? '')}`).toString('base64');
    authHeaders = async () => ({ Authorization: `Basic ${basic}` });
  } else if (user.exec || user['auth-provider']) {
    authHeaders = pluginAuth(path, ctxName);
  }
  return {
    server: cluster.server.replace(/\/$/, ''),
    ca: fileOrData(base, cluster['certificate-authority'], cluster['certificate-authority-data']),
    cert: fileOrData(base, user['client-certificate'], user['client-certificate-data']),
    key: fileOrData(base, user['client-key'], user['client-key-data']),
    insecureSkipTlsVerify: cluster['insecure-skip-tls-verify'] === true,
    authHeaders,
    namespace: ctx.namespace ?? 'default',
    source: path,
  };
}

/** exec / auth-provider users: let client-node run the plugin (it caches the credential). */
function pluginAuth(path: string, context: string | undefined): Connection['authHeaders'] {
  let kc: Promise<{ applyToHTTPSOptions(o: { headers?: Record<string, string> }): Promise<void> }> | undefined;
  return async () => {
    kc ??= import('@kubernetes/client-node').then(({ KubeConfig }) => {
      const k = new KubeConfig();
      k.loadFromFile(path);
      if (context) k.setCurrentContext(context);
      return k;
    });
    const opts: { headers?: Record<string, string> } = { headers: {} };
    await (await kc).applyToHTTPSOptions(opts);
    const auth = opts.headers?.Authorization ?? opts.headers?.authorization;
    return auth ? { Authorization: auth } : {};
  };
}

/** The kubeconfig path, or the environment, or ~/.kube/config, or the pod's ServiceAccount. */
export function loadConnection(explicitPath?: string): Connection {
  if (explicitPath) return fromKubeconfigFile(explicitPath);
  const fromEnv = (process.env.KUBECONFIG ?? '').split(':').find((p) => p && existsSync(p));
  if (fromEnv) return fromKubeconfigFile(fromEnv);
  const home = join(homedir(), '.kube', 'config');
  if (existsSync(home)) return fromKubeconfigFile(home);
  if (process.env.KUBERNETES_SERVICE_HOST) return inCluster();
  throw new Error('no kubeconfig: set KUBECONFIG, pass --kubeconfig, create ~/.kube/config, or run in a pod');
}
