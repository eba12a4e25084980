/** Operator settings from flags (and the environment a Deployment sets), validated once at start. */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import pkg from '../../package.json' with { type: 'json' };
import type { Level } from './log.ts';
import { DEFAULT_RUNTIME_IMAGE_REPO } from './plan/names.ts';

export const OPERATOR_VERSION: string = pkg.version;

export interface OperatorConfig {
  kubeconfig: string | undefined;
  namespace: string | undefined;
  runtimeImage: string;
  leaderElect: boolean;
  leaseNamespace: string;
  leaseName: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  httpHost: string;
  httpPort: number;
  concurrency: number;
  logLevel: Level;
  autoscalerIntervalMs: number;
  metricsTargetMap: string | undefined;
}

export const USAGE = `pagoda operator ${OPERATOR_VERSION}: reconciles InferenceDeployments (inference.pagoda.dev/v1alpha1)

Flags (environment in brackets):
  --kubeconfig PATH               [KUBECONFIG] default: $KUBECONFIG, ~/.kube/config, else in-cluster
  --namespace NS                  [WATCH_NAMESPACE] watch one namespace (default: all)
  --runtime-image IMAGE           [PAGODA_RUNTIME_IMAGE] default ${DEFAULT_RUNTIME_IMAGE_REPO}:${OPERATOR_VERSION}
  --leader-elect true|false       default true (only the Lease holder reconciles)
  --leader-election-namespace NS  [POD_NAMESPACE] default "default"
  --leader-election-id NAME       Lease name, default pagoda-operator
  --identity ID                   [POD_NAME] default <hostname>-<random>
  --lease-duration SECONDS        default 15
  --renew-deadline SECONDS        default 10
  --retry-period SECONDS          default 2
  --http-host HOST                default 0.0.0.0 (/metrics, /healthz, /readyz)
  --http-port PORT                default 8080
  --concurrency N                 parallel reconciles, default 8
  --autoscaler-interval SECONDS   how often the built-in autoscaler scrapes and decides, default 15
  --metrics-target-map FILE       scrape pods at the URLs this JSON file maps "<namespace>/<pod>" to, instead
                                  of http://<pod IP>:8000 (control planes whose pod IPs do not route, e.g.
                                  the local kwok cluster; for tests and local trials)
  --log-level debug|info|warn|error  default info
`;

function num(flag: string, raw: string | undefined, fallback: number, min: number, max: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min || n > max) {
    throw new Error(`--${flag} must be a number from ${min} to ${max}, got "${raw}"`);
  }
  return n;
}

export function parseConfig(argv: string[], env: NodeJS.ProcessEnv): OperatorConfig | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      help: { type: 'boolean', short: 'h' },
      kubeconfig: { type: 'string' },
      namespace: { type: 'string' },
      'runtime-image': { type: 'string' },
      'leader-elect': { type: 'string' },
      'leader-election-namespace': { type: 'string' },
      'leader-election-id': { type: 'string' },
      identity: { type: 'string' },
      'lease-duration': { type: 'string' },
      'renew-deadline': { type: 'string' },
      'retry-period': { type: 'string' },
      'http-host': { type: 'string' },
      'http-port': { type: 'string' },
      concurrency: { type: 'string' },
      'log-level': { type: 'string' },
      'autoscaler-interval': { type: 'string' },
      'metrics-target-map': { type: 'string' },
    },
    strict: true,
  });
  if (values.help) return 'help';
  const leaderElect = values['leader-elect'] ?? 'true';
  if (leaderElect !== 'true' && leaderElect !== 'false') {
    throw new Error(`--leader-elect must be true or false, got "${leaderElect}"`);
  }
  const logLevel = values['log-level'] ?? env.LOG_LEVEL ?? 'info';
  if (!['debug', 'info', 'warn', 'error'].includes(logLevel)) {
    throw new Error(`--log-level must be debug, info, warn or error, got "${logLevel}"`);
  }
  const leaseDurationMs = num('lease-duration', values['lease-duration'], 15, 1, 600) * 1000;
  const renewDeadlineMs = num('renew-deadline', values['renew-deadline'], 10, 0.5, 600) * 1000;
  const retryPeriodMs = num('retry-period', values['retry-period'], 2, 0.1, 600) * 1000;
  if (renewDeadlineMs >= leaseDurationMs) throw new Error('--renew-deadline must be shorter than --lease-duration');
  if (retryPeriodMs >= renewDeadlineMs) throw new Error('--retry-period must be shorter than --renew-deadline');
  return {
    kubeconfig: values.kubeconfig,
    namespace: values.namespace ?? (env.WATCH_NAMESPACE || undefined),
    runtimeImage:
      values['runtime-image'] ?? env.PAGODA_RUNTIME_IMAGE ?? `${DEFAULT_RUNTIME_IMAGE_REPO}:${OPERATOR_VERSION}`,
    leaderElect: leaderElect === 'true',
    leaseNamespace: values['leader-election-namespace'] ?? env.POD_NAMESPACE ?? 'default',
    leaseName: values['leader-election-id'] ?? 'pagoda-operator',
    identity: values.identity ?? env.POD_NAME ?? `${hostname()}-${randomBytes(4).toString('hex')}`,
    leaseDurationMs,
    renewDeadlineMs,
    retryPeriodMs,
    httpHost: values['http-host'] ?? '0.0.0.0',
    httpPort: num('http-port', values['http-port'], 8080, 0, 65535),
    concurrency: num('concurrency', values.concurrency, 8, 1, 256),
    logLevel: logLevel as Level,
    autoscalerIntervalMs: num('autoscaler-interval', values['autoscaler-interval'], 15, 0.5, 3600) * 1000,
    metricsTargetMap: values['metrics-target-map'],
  };
}
