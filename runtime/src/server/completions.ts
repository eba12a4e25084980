/** POST /v1/completions: one or more prompts (text or token ids), n choices each, streamed or not. */
import type { FastifyInstance } from 'fastify';
import type { SequenceEvent } from '../engine/engine.ts';
import type { ServerContext } from './context.ts';
import { badRequest } from './errors.ts';
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
import { completionLogprobs } from './logprobs.ts';
import { CompletionRequest } from './schemas.ts';
import { StreamUsage, type Usage } from './stream-usage.ts';

function promptsOf(ctx: ServerContext, prompt: CompletionRequest['prompt']): number[][] {
  const tok = ctx.engine.model.tokenizer;
  const encode = (s: string) => tok.encode(s);
  if (typeof prompt === 'string') return [encode(prompt)];
  if (prompt.length === 0) throw badRequest('The prompt is empty.', 'prompt');
  if (typeof prompt[0] === 'string') return (prompt as string[]).map(encode);
  if (typeof prompt[0] === 'number') return [prompt as number[]];
  return prompt as number[][];
}

export function registerCompletions(app: FastifyInstance, ctx: ServerContext): void {
  app.post('/v1/completions', { schema: { body: CompletionRequest } }, async (request, reply) => {
    const body = request.body as CompletionRequest;
    checkModel(ctx, body.model);
    checkStreamOptions(body);
    if (body.suffix) throw badRequest('suffix is not supported.', 'suffix');
    const n = body.n ?? 1;
    if (body.best_of !== undefined && body.best_of !== null && body.best_of !== n) {
      throw badRequest('best_of is not supported unless it equals n.', 'best_of');
    }
    const prompts = promptsOf(ctx, body.prompt);
    for (const p of prompts) checkPromptTokens(ctx, p, 'prompt');
    checkAdmission(ctx, prompts.length * n);
    const logprobs = body.logprobs ?? undefined;
    const params = prompts.map((p) =>
      samplingParams(ctx, body, p.length, { maxTokens: body.max_tokens, defaultMax: 16, logprobs }),
    );
    const tok = ctx.engine.model.tokenizer;
    const echoText = prompts.map((p) => (body.echo ? tok.decode(p, { skipSpecial: false }) : ''));
    const id = randomId('cmpl');
    const created = nowSeconds();
    const streams: AsyncIterableIterator<SequenceEvent>[] = [];
    try {
      for (const [i, prompt] of prompts.entries()) streams.push(ctx.engine.generate({ prompt, params: params[i]!, n }));
    } catch (e) {
      for (const s of streams) void s.return?.();
      throw e;
    }
    ctx.lifecycle.begin();
    onClientGone(reply, () => {
      for (const s of streams) void s.return?.();
    });
    try {
      if (!body.stream) {
        const results = await Promise.all(streams.map((s) => collect(s, n)));
        const choices = results.flatMap((cs, p) =>
          cs.map((c) => ({
            index: p * n + c.index,
            text: echoText[p] + c.text,
            logprobs: logprobs === undefined ? null : completionLogprobs(tok, c.logprobs, echoText[p]!.length),
            finish_reason: c.finishReason,
            stop_reason: c.stopReason,
            ...(body.return_token_ids ? { prompt_token_ids: prompts[p], token_ids: c.tokenIds } : {}),
          })),
        );
        return {
          id,
          object: 'text_completion',
          created,
          model: ctx.modelName,
          choices,
          usage: usageOf(
            results.flat(),
            prompts.map((p) => p.length * n),
          ),
        };
      }
      const usage = new StreamUsage(
        body.stream_options,
        prompts.reduce((a, p) => a + p.length * n, 0),
      );
      const sse = new SseWriter(request, reply, () => {
        for (const s of streams) void s.return?.();
      });
      const chunk = (choices: unknown[], final?: Usage) => {
        const c: Record<string, unknown> = { id, object: 'text_completion', created, model: ctx.modelName, choices };
        if (usage.include) c.usage = final ?? usage.forChunk();
        return c;
      };
      let failed = false;
      const offsets = echoText.map((e) => e.length);
      await Promise.all(
        streams.map(async (events, p) => {
          if (body.echo)
            for (let j = 0; j < n; j++)
              await sse.send(chunk([{ index: p * n + j, text: echoText[p], logprobs: null, finish_reason: null }]));
          for await (const ev of events as AsyncIterable<SequenceEvent>) {
            if (ev.finishReason === 'error') failed = true;
            usage.completionTokens += ev.tokenIds.length;
            const text = ev.textDelta;
            const lp =
              logprobs === undefined || !ev.logprobs ? null : completionLogprobs(tok, ev.logprobs, offsets[p]!);
            offsets[p]! += text.length;
            if (text === '' && !ev.finished && !lp && !body.return_token_ids) continue;
            await sse.send(
              chunk([
                {
                  index: p * n + ev.index,
                  text,
                  logprobs: lp,
                  finish_reason: ev.finished ? (ev.finishReason ?? 'stop') : null,
                  stop_reason: ev.finished ? (ev.stopReason ?? null) : null,
                  ...(body.return_token_ids ? { token_ids: ev.tokenIds } : {}),
                },
              ]),
            );
          }
        }),
      );
      if (failed)
        await sse.send({
          error: { message: 'The engine failed while generating.', type: 'server_error', param: null, code: null },
        });
      if (usage.include) await sse.send(chunk([], usage.totals()));
      await sse.send('[DONE]');
      sse.end();
      return reply;
    } finally {
      ctx.lifecycle.end();
    }
  });
}
