/**
 * The HTTP application: OpenAI-compatible routes, health, metrics and tokenizer routes over one engine.
 * Every error leaves in OpenAI's shape; 5xx messages never expose internals.
 */
import { TypeBoxValidatorCompiler } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import { registerChat } from './chat.ts';
import { registerCompletions } from './completions.ts';
import type { ServerContext } from './context.ts';
import { ApiError, errorBody } from './errors.ts';
import { registerHealth } from './health.ts';
import { registerTokenize } from './tokenize.ts';

const PROTECTED = /^\/(v1\/|tokenize|detokenize)/;

function toApiError(e: FastifyError | ApiError | Error): ApiError {
  if (e instanceof ApiError) return e;
  const fe = e as FastifyError;
  if (fe.validation) {
    const first = fe.validation[0];
    const where = first?.instancePath ? first.instancePath.replace(/^\//, '').replaceAll('/', '.') : null;
    return new ApiError(400, `Invalid request: ${where ? `${where} ` : ''}${first?.message ?? fe.message}`, {
      param: where,
    });
  }
  switch (fe.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new ApiError(400, `Invalid JSON body: ${fe.message}`);
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ApiError(413, 'Request body is too large.', { code: 'request_too_large' });
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ApiError(415, 'Unsupported content type: send application/json.');
  }
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500)
    return new ApiError(fe.statusCode, fe.message);
  return new ApiError(500, 'Internal server error.');
}

export function buildApp(ctx: ServerContext): FastifyInstance {
  const app = Fastify({
    logger: ctx.config.logRequests ? { level: 'info' } : false,
    bodyLimit: ctx.config.maxRequestBytes,
    requestTimeout: 0,
    keepAliveTimeout: 65_000,
    ajv: undefined,
  });
  app.setValidatorCompiler(TypeBoxValidatorCompiler);

  app.setErrorHandler((err, request, reply) => {
    const api = toApiError(err as Error);
    if (api.status >= 500) request.log.error(err);
    ctx.metrics.countHttpError(api.status);
    if (reply.sent || reply.raw.headersSent) return;
    void reply.code(api.status).headers(api.headers).send(errorBody(api));
  });
  app.setNotFoundHandler((request, reply) => {
    ctx.metrics.countHttpError(404);
    const body = errorBody({
      message: `Not found: ${request.method} ${request.url}`,
      type: 'not_found_error',
      param: null,
      code: null,
    });
    void reply.code(404).send(body);
  });

  const key = ctx.config.apiKey;
  if (key) {
    app.addHook('onRequest', async (request) => {
      if (!PROTECTED.test(request.url)) return;
      const auth = request.headers.authorization ?? '';
      if (auth !== `Bearer ${key}`) {
        throw new ApiError(401, 'Missing or invalid API key: send "Authorization: Bearer <key>".', {
          type: 'authentication_error',
          code: 'invalid_api_key',
        });
      }
    });
  }

  registerHealth(app, ctx);
  app.get('/v1/models', async () => ({
    object: 'list',
    data: [
      {
        id: ctx.modelName,
        object: 'model',
        created: Math.floor(Date.now() / 1000),
        owned_by: 'pagoda',
        root: ctx.engine.model.path,
        max_model_len: ctx.engine.config.maxModelLen,
      },
    ],
  }));
  registerTokenize(app, ctx);
  registerCompletions(app, ctx);
  registerChat(app, ctx);
  return app;
}
