/**
 * `npm run operator` (or the operator image): runs the InferenceDeployment controller against the
 * current KUBECONFIG or the in-cluster service account. With leader election only the Lease holder
 * reconciles; standbys keep serving /healthz, /readyz and /metrics. SIGTERM/SIGINT: stop taking work,
 * finish running reconciles, release the Lease, exit 0.
 */
import { FileMapTargets, PodIpTargets } from './autoscaler/targets.ts';
import { OPERATOR_VERSION, type OperatorConfig, parseConfig, USAGE } from './config.ts';
import { Controller } from './controller/controller.ts';
import { startHttpServer } from './http.ts';
import { EventRecorder } from './kube/events.ts';
import { LeaderElector } from './kube/leader.ts';
import { KubeClient } from './kube/rest.ts';
import { createLogger } from './log.ts';
import { OperatorMetrics } from './metrics.ts';

let config: OperatorConfig;
try {
  const parsed = parseConfig(process.argv.slice(2), process.env);
  if (parsed === 'help') {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  config = parsed;
} catch (e) {
  process.stderr.write(`pagoda operator: ${(e as Error).message}\n\n${USAGE}`);
  process.exit(2);
}

const log = createLogger(config.logLevel, { identity: config.identity });
let client: KubeClient;
try {
  client = KubeClient.load(config.kubeconfig);
} catch (e) {
  log.error('cannot load a kubeconfig', { error: (e as Error).message });
  process.exit(2);
}
const metrics = new OperatorMetrics();
const events = new EventRecorder(client, 'pagoda-operator', config.identity, log);
const controller = new Controller({
  client,
  log,
  metrics,
  events,
  planOptions: { defaultImage: config.runtimeImage },
  namespace: config.namespace,
  concurrency: config.concurrency,
  autoscaler: {
    intervalMs: config.autoscalerIntervalMs,
    targets: config.metricsTargetMap ? new FileMapTargets(config.metricsTargetMap) : new PodIpTargets(),
  },
});

const startController = async () => {
  metrics.leader.set(1);
  await controller.start().catch((e: unknown) => log.error('controller failed to start', { error: String(e) }));
};
const stopController = async () => {
  metrics.leader.set(0);
  await controller.stop();
};

const elector = config.leaderElect
  ? new LeaderElector({
      client,
      namespace: config.leaseNamespace,
      name: config.leaseName,
      identity: config.identity,
      leaseDurationMs: config.leaseDurationMs,
      renewDeadlineMs: config.renewDeadlineMs,
      retryPeriodMs: config.retryPeriodMs,
      onStartedLeading: startController,
      onStoppedLeading: stopController,
      log: (msg, fields) => log.info(msg, fields),
    })
  : undefined;

const server = await startHttpServer({
  host: config.httpHost,
  port: config.httpPort,
  registry: metrics.registry,
  healthy: () => [],
  ready: () => {
    const problems: string[] = [];
    if (elector && Date.now() - elector.lastContact > config.leaseDurationMs) {
      problems.push('no successful API server round trip within the lease duration');
    }
    if ((!elector || elector.isLeader) && !controller.synced) problems.push('informer caches not in sync');
    return problems;
  },
});
setInterval(() => {
  for (const [ready, n] of Object.entries(controller.readyCounts())) metrics.managed.set({ ready }, n);
}, 5000).unref();

const address = server.address();
log.info('pagoda operator started', {
  version: OPERATOR_VERSION,
  runtimeImage: config.runtimeImage,
  namespace: config.namespace ?? '(all)',
  leaderElection: config.leaderElect ? `${config.leaseNamespace}/${config.leaseName}` : 'off',
  autoscalerIntervalSeconds: config.autoscalerIntervalMs / 1000,
  ...(config.metricsTargetMap ? { metricsTargetMap: config.metricsTargetMap } : {}),
  http: typeof address === 'object' && address ? `${address.address}:${address.port}` : String(address),
  server: client.connection.server,
  credentials: client.connection.source,
});

if (elector) elector.start();
else await startController();

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) {
    log.warn('second signal: exiting now', { signal });
    process.exit(1);
  }
  stopping = true;
  log.info('shutting down', { signal });
  const deadline = setTimeout(() => {
    log.error('shutdown took too long; exiting');
    process.exit(1);
  }, 25_000);
  deadline.unref();
  if (elector) await elector.stop();
  else await stopController();
  await events.flush();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  log.info('stopped');
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
