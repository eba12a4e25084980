/**
 * `pagoda serve`: listen, report readiness, and shut down cleanly.
 * - SIGTERM/SIGINT: /health/ready turns 503 at once and new requests get 503; in-flight requests finish
 *   until the drain timeout, after which their connections are cut; then exit 0.
 * - A fatal engine error: every in-flight request gets its 500 (or an error event on a stream),
 *   /health turns 500, and the process exits 1 so the pod restarts.
 */
import type { RuntimeConfig } from '../config.ts';
import { startEngine } from '../runtime.ts';
import { buildApp } from './app.ts';
import { Lifecycle } from './lifecycle.ts';
import { RuntimeMetrics } from './metrics.ts';

/** How long a failed server keeps answering (so callers read their 500s) before it exits. */
const FAILED_EXIT_DELAY_MS = 1000;

export async function serve(cfg: RuntimeConfig, log: (msg: string) => void): Promise<void> {
  const lifecycle = new Lifecycle();
  // A signal while the model loads: nothing to drain.
  const early = (signal: string) => {
    log(`${signal} while starting: exiting`);
    process.exit(0);
  };
  process.once('SIGTERM', early);
  process.once('SIGINT', early);

  const started = await startEngine(cfg, log);
  const { engine } = started;
  const metrics = new RuntimeMetrics(engine, started.servedModelName);
  const app = buildApp({ engine, modelName: started.servedModelName, config: cfg, lifecycle, metrics });
  const info = engine.info;
  log(
    `model ${started.servedModelName} (${started.model.config.arch}, ${started.model.format}) on ${info.device}, ` +
      `weights ${(info.weightBytes / 2 ** 20).toFixed(0)} MiB ${info.weightDtype}, ` +
      `KV cache ${info.numBlocks} blocks x ${info.blockSize} = ${info.numBlocks * info.blockSize} tokens, ` +
      `max model len ${engine.config.maxModelLen}, loaded in ${started.loadSeconds.toFixed(1)} s`,
  );
  await app.listen({ host: cfg.host, port: cfg.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : cfg.port;
  process.off('SIGTERM', early);
  process.off('SIGINT', early);

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: draining ${lifecycle.requestsInFlight} in-flight request(s), up to ${cfg.drainTimeout} s`);
    const drained = await lifecycle.drain(cfg.drainTimeout * 1000);
    if (!drained) {
      log(`drain timeout: cutting ${lifecycle.requestsInFlight} request(s) still running`);
      engine.abortAll();
      app.server.closeAllConnections();
    }
    await app.close();
    engine.close();
    log('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));

  engine.onFailure((err) => {
    lifecycle.phase = 'failed';
    lifecycle.failure = err.message;
    log(`fatal engine error: ${err.message}; exiting so the pod restarts`);
    setTimeout(() => process.exit(1), FAILED_EXIT_DELAY_MS);
  });

  lifecycle.phase = 'ready';
  log(`ready: http://${cfg.host.includes(':') ? `[${cfg.host}]` : cfg.host}:${port}/v1`);
}
