/** POST /v1/chat/completions: messages rendered by the model's chat template, streamed or not. */
import type { FastifyInstance } from 'fastify';
import type { ChatMessage } from '../model/chat-template.ts';
import type { ServerContext } from './context.ts';
import { ApiError, badRequest } from './errors.ts';
import {
  checkAdmission,
  checkModel,
  checkPromptTokens,
  checkStreamOptions,
  collect,
  nowSeconds,
  onClientGone,
  randomId,
  SseWriter,
  samplingParams,
  usageOf,
} from './generation.ts';
import { chatLogprobs } from './logprobs.ts';
import { ChatCompletionRequest } from './schemas.ts';
import { StreamUsage, type Usage } from './stream-usage.ts';

type Messages = ChatCompletionRequest['messages'];

export function renderChat(ctx: ServerContext, messages: Messages, addGenerationPrompt: boolean): number[] {
  const template = ctx.engine.model.chatTemplate;
  if (!template) throw badRequest('This model has no chat template; use /v1/completions.', 'messages');
  const plain: ChatMessage[] = messages.map((m) => {
    const content = typeof m.content === 'string' ? m.content : (m.content ?? []).map((p) => p.text).join('');
    const msg: ChatMessage = { role: m.role === 'developer' ? 'system' : m.role, content };
    if (m.name) msg.name = m.name;
    return msg;
  });
  let text: string;
  try {
    text = template.render(plain, { addGenerationPrompt });
  } catch (e) {
    throw badRequest(`The chat template could not render these messages: ${(e as Error).message}`, 'messages');
  }
  return ctx.engine.model.tokenizer.encode(text, { addBos: false });
}

export function registerChat(app: FastifyInstance, ctx: ServerContext): void {
  app.post('/v1/chat/completions', { schema: { body: ChatCompletionRequest } }, async (request, reply) => {
    const body = request.body as ChatCompletionRequest;
    checkModel(ctx, body.model);
    checkStreamOptions(body);
    if (body.tools && body.tools.length > 0) throw badRequest('Tool calling is not supported by this server.', 'tools');
    const format = body.response_format?.type;
    if (format !== undefined && format !== 'text')
      throw badRequest(`response_format ${JSON.stringify(format)} is not supported (only "text").`, 'response_format');
    if (body.top_logprobs !== undefined && body.top_logprobs !== null && !body.logprobs) {
      throw badRequest('top_logprobs requires logprobs to be true.', 'top_logprobs');
    }
    const prompt = renderChat(ctx, body.messages, body.add_generation_prompt ?? true);
    checkPromptTokens(ctx, prompt, 'messages');
    const n = body.n ?? 1;
    checkAdmission(ctx, n);
    const logprobs = body.logprobs ? (body.top_logprobs ?? 0) : undefined;
    const params = samplingParams(ctx, body, prompt.length, {
      maxTokens: body.max_completion_tokens ?? body.max_tokens,
      defaultMax: 'rest',
      logprobs,
    });
    const tok = ctx.engine.model.tokenizer;
    const id = randomId('chatcmpl');
    const created = nowSeconds();
    const events = ctx.engine.generate({ prompt, params, n });
    ctx.lifecycle.begin();
    onClientGone(reply, () => {
      void events.return?.();
    });
    try {
      if (!body.stream) {
        const choices = await collect(events, n);
        return {
          id,
          object: 'chat.completion',
          created,
          model: ctx.modelName,
          choices: choices.map((c) => ({
            index: c.index,
            message: { role: 'assistant', content: c.text },
            logprobs: logprobs === undefined ? null : chatLogprobs(tok, c.logprobs),
            finish_reason: c.finishReason,
            stop_reason: c.stopReason,
            ...(body.return_token_ids ? { token_ids: c.tokenIds } : {}),
          })),
          usage: usageOf(choices, [prompt.length * n]),
          ...(body.return_token_ids ? { prompt_token_ids: prompt } : {}),
        };
      }
      const usage = new StreamUsage(body.stream_options, prompt.length * n);
      const sse = new SseWriter(request, reply, () => void events.return?.());
      const chunk = (choices: unknown[], final?: Usage) => {
        const c: Record<string, unknown> = {
          id,
          object: 'chat.completion.chunk',
          created,
          model: ctx.modelName,
          choices,
        };
        if (usage.include) c.usage = final ?? usage.forChunk();
        return c;
      };
      for (let i = 0; i < n; i++) {
        await sse.send(
          chunk([{ index: i, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]),
        );
      }
      let failed = false;
      for await (const ev of events) {
        if (ev.finishReason === 'error') {
          failed = true;
          continue;
        }
        usage.completionTokens += ev.tokenIds.length;
        const lp = logprobs === undefined || !ev.logprobs ? null : chatLogprobs(tok, ev.logprobs);
        if (ev.textDelta !== '' || lp || (body.return_token_ids && ev.tokenIds.length > 0)) {
          const choice: Record<string, unknown> = {
            index: ev.index,
            delta: { content: ev.textDelta },
            logprobs: lp,
            finish_reason: null,
          };
          if (body.return_token_ids) choice.token_ids = ev.tokenIds;
          await sse.send(chunk([choice]));
        }
        if (ev.finished) {
          await sse.send(
            chunk([
              {
                index: ev.index,
                delta: {},
                logprobs: null,
                finish_reason: ev.finishReason ?? 'stop',
                stop_reason: ev.stopReason ?? null,
              },
            ]),
          );
        }
      }
      if (failed) {
        const err = new ApiError(500, 'The engine failed while generating; the server is restarting.');
        await sse.send({ error: { message: err.message, type: err.type, param: null, code: null } });
      }
      if (usage.include) await sse.send(chunk([], usage.totals()));
      await sse.send('[DONE]');
      sse.end();
      return reply;
    } finally {
      ctx.lifecycle.end();
    }
  });
}
