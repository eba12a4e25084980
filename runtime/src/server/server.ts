/**
 * `pagoda serve`: listen, report readiness, and shut down cleanly. SIGTERM/SIGINT → not ready at once,
 * new requests 503, in-flight ones finish up to the drain timeout, exit 0. A fatal engine error → exit 1
 * so the pod restarts.
 */
import type { RuntimeConfig } from '../config.ts';
import { startEngine } from '../runtime.ts';
import { buildApp } from './app.ts';
import { Lifecycle } from './lifecycle.ts';
import { RuntimeMetrics } from './metrics.ts';

export async function serve(cfg: RuntimeConfig, log: (msg: string) => void): Promise<void> {
  const started = await startEngine(cfg, log);
  const { engine } = started;
  const lifecycle = new Lifecycle();
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
  lifecycle.phase = 'ready';
  log(`ready: http://${cfg.host.includes(':') ? `[${cfg.host}]` : cfg.host}:${port}/v1`);

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: draining ${lifecycle.requestsInFlight} in-flight request(s), up to ${cfg.drainTimeout} s`);
    const drained = await lifecycle.drain(cfg.drainTimeout * 1000);
    if (!drained) log('drain timeout reached; closing with requests still running');
    await app.close();
    engine.close();
    log('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));

  const watchdog = setInterval(() => {
    const err = engine.failed;
    if (!err) return;
    clearInterval(watchdog);
    lifecycle.phase = 'failed';
    lifecycle.failure = err.message;
    log(`fatal engine error: ${err.message}`);
    // Let the callers get their 500 responses, then exit non-zero so the pod restarts.
    setTimeout(() => process.exit(1), 200).unref();
  }, 100);
  watchdog.unref();
}
