/** A real HTTP server over the default model: in-process (shared engine) or as a `pagoda serve` child. */
import { type ChildProcess, spawn } from 'node:child_process';
import type { FastifyInstance } from 'fastify';
import { parseServeArgs, type RuntimeConfig } from '../../runtime/src/config.ts';
import { startEngine } from '../../runtime/src/runtime.ts';
import { buildApp } from '../../runtime/src/server/app.ts';
import { Lifecycle } from '../../runtime/src/server/lifecycle.ts';
import { RuntimeMetrics } from '../../runtime/src/server/metrics.ts';
import { CLI } from './cli.ts';
import { defaultModelPath } from './default-engine.ts';

export interface TestServer {
  url: string;
  app: FastifyInstance;
  config: RuntimeConfig;
  lifecycle: Lifecycle;
  close(): Promise<void>;
}

export async function startTestServer(args: string[] = []): Promise<TestServer> {
  const config = parseServeArgs(['--model', await defaultModelPath(), '--device', 'cpu', '--port', '0', ...args], {});
  const started = await startEngine(config);
  const lifecycle = new Lifecycle();
  const metrics = new RuntimeMetrics(started.engine, 'SmolLM2-135M-Instruct');
  const app = buildApp({ engine: started.engine, modelName: 'SmolLM2-135M-Instruct', config, lifecycle, metrics });
  await app.listen({ host: '127.0.0.1', port: 0 });
  lifecycle.phase = 'ready';
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    app,
    config,
    lifecycle,
    async close() {
      await app.close();
      await started.engine.idle();
      started.engine.close();
    },
  };
}

export interface ServeProcess {
  url: string;
  child: ChildProcess;
  stderr: () => string;
  exited: Promise<number | null>;
}

/** Starts `pagoda serve` as users do and waits for its "ready" line. */
export async function spawnServe(args: string[], env: NodeJS.ProcessEnv = {}): Promise<ServeProcess> {
  const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not become ready:\n${err}`)), 60_000);
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      const m = /ready: (http:\/\/\S+)\/v1/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}:\n${err}`));
    });
  });
  return { url, child, stderr: () => err, exited };
}
