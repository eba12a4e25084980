/** POST /tokenize and /detokenize (vLLM's extension routes). */
import type { FastifyInstance } from 'fastify';
import { renderChat } from './chat.ts';
import type { ServerContext } from './context.ts';
import { badRequest } from './errors.ts';
import { checkModel } from './generation.ts';
import { DetokenizeRequest, TokenizeRequest } from './schemas.ts';

export function registerTokenize(app: FastifyInstance, ctx: ServerContext): void {
  const tok = ctx.engine.model.tokenizer;
  app.post('/tokenize', { schema: { body: TokenizeRequest } }, async (request) => {
    const body = request.body as TokenizeRequest;
    checkModel(ctx, body.model);
    const tokens =
      'messages' in body
        ? renderChat(ctx, body.messages, body.add_generation_prompt ?? true)
        : tok.encode(body.prompt, { addBos: body.add_special_tokens ?? tok.info.addBos });
    return { count: tokens.length, max_model_len: ctx.engine.config.maxModelLen, tokens };
  });
  app.post('/detokenize', { schema: { body: DetokenizeRequest } }, async (request) => {
    const body = request.body as DetokenizeRequest;
    checkModel(ctx, body.model);
    const vocab = ctx.engine.model.config.vocabSize;
    const bad = body.tokens.find((t) => t >= vocab);
    if (bad !== undefined) throw badRequest(`Token id ${bad} is out of vocabulary (size ${vocab}).`, 'tokens');
    return { prompt: tok.decode(body.tokens, { skipSpecial: false }) };
  });
}
