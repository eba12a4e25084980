/** /health (alive), /health/ready (loaded, warmed, not draining), /metrics, /version. */
import type { FastifyInstance } from 'fastify';
import type { ServerContext } from './context.ts';

export function registerHealth(app: FastifyInstance, ctx: ServerContext): void {
  app.get('/health', async (_req, reply) => {
    if (ctx.lifecycle.phase === 'failed')
      return reply.code(500).send({ status: 'failed', reason: ctx.lifecycle.failure ?? 'engine failed' });
    return { status: 'ok' };
  });
  app.get('/health/ready', async (_req, reply) => {
    const phase = ctx.lifecycle.phase;
    return reply.code(phase === 'ready' ? 200 : 503).send({ status: phase });
  });
  app.get('/metrics', async (_req, reply) => {
    const text = await ctx.metrics.registry.metrics();
    return reply.header('content-type', ctx.metrics.registry.contentType).send(text);
  });
  app.get('/version', async () => ({ version: '0.1.0' }));
}
