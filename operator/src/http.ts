/** The operator's HTTP endpoints: /metrics (Prometheus), /healthz (liveness), /readyz (readiness). */
import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';

/** Returns nothing when fine, else what is wrong (served with status 503). */
export type Probe = () => string[];

export function startHttpServer(opts: {
  host: string;
  port: number;
  registry: Registry;
  healthy: Probe;
  ready: Probe;
}): Promise<Server> {
  const server = createServer(async (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405).end();
      return;
    }
    if (path === '/metrics') {
      const body = await opts.registry.metrics();
      res.writeHead(200, { 'Content-Type': opts.registry.contentType }).end(body);
      return;
    }
    if (path === '/healthz' || path === '/readyz') {
      const problems = path === '/healthz' ? opts.healthy() : opts.ready();
      res
        .writeHead(problems.length ? 503 : 200, { 'Content-Type': 'text/plain' })
        .end(problems.length ? `${problems.join('\n')}\n` : 'ok\n');
      return;
    }
    res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
  });
  // Keep-alive sockets from scrapers must not hold up shutdown.
  server.keepAliveTimeout = 5000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve(server));
  });
}
