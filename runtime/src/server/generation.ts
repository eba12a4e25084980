/**
 * What completions and chat completions share: request → sampling parameters (validated against the
 * model and its context), running a request on the engine, and collecting or streaming its events.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { SequenceEvent, TokenLogprob } from '../engine/engine.ts';
import { defaultSamplingParams, type SamplingParams } from '../engine/sampling-params.ts';
import type { ServerContext } from './context.ts';
import { ApiError, badRequest } from './errors.ts';

export interface CommonFields {
  model?: string | null | undefined;
  max_tokens?: number | null | undefined;
  temperature?: number | null | undefined;
  top_p?: number | null | undefined;
  top_k?: number | null | undefined;
  min_p?: number | null | undefined;
  n?: number | null | undefined;
  stop?: string | string[] | null | undefined;
  stop_token_ids?: number[] | null | undefined;
  presence_penalty?: number | null | undefined;
  frequency_penalty?: number | null | undefined;
  repetition_penalty?: number | null | undefined;
  seed?: number | null | undefined;
  ignore_eos?: boolean | null | undefined;
  min_tokens?: number | null | undefined;
  include_stop_str_in_output?: boolean | null | undefined;
  skip_special_tokens?: boolean | null | undefined;
  logit_bias?: Record<string, number> | null | undefined;
}

/** stream_options only means something for a stream (as OpenAI and vLLM say). */
export function checkStreamOptions(body: { stream?: boolean | null; stream_options?: unknown }): void {
  if (body.stream_options != null && body.stream !== true)
    throw badRequest('stream_options can only be set when stream is true.', 'stream_options');
}

export function checkModel(ctx: ServerContext, requested: string | null | undefined): void {
  if (requested === undefined || requested === null || requested === '' || requested === ctx.modelName) return;
  throw new ApiError(404, `The model \`${requested}\` does not exist. This server serves \`${ctx.modelName}\`.`, {
    type: 'not_found_error',
    param: 'model',
    code: 'model_not_found',
  });
}

export function checkAdmission(ctx: ServerContext, extraSeqs: number): void {
  if (!ctx.lifecycle.acceptsRequests) {
    const why =
      ctx.lifecycle.phase === 'draining'
        ? 'the server is shutting down'
        : ctx.lifecycle.phase === 'failed'
          ? 'the engine failed'
          : 'the model is still loading';
    throw new ApiError(503, `Service unavailable: ${why}. Retry on another replica.`, {
      type: 'service_unavailable',
      headers: { 'retry-after': '1' },
    });
  }
  if (ctx.engine.numWaiting + extraSeqs > ctx.config.maxQueuedRequests) {
    throw new ApiError(
      429,
      `Too many requests: ${ctx.engine.numWaiting} are already waiting (limit ${ctx.config.maxQueuedRequests}). Retry later.`,
      {
        type: 'rate_limit_error',
        code: 'queue_full',
        headers: { 'retry-after': '1' },
      },
    );
  }
}

export function checkPromptTokens(ctx: ServerContext, ids: readonly number[], param: string): void {
  const vocab = ctx.engine.model.config.vocabSize;
  if (ids.length === 0) throw badRequest('The prompt is empty.', param);
  for (const id of ids) {
    if (!Number.isInteger(id) || id < 0 || id >= vocab)
      throw badRequest(`Token id ${id} is out of vocabulary (size ${vocab}).`, param);
  }
}

/** Maps the OpenAI fields onto engine parameters; `defaultMax` is used when the client sent none. */
export function samplingParams(
  ctx: ServerContext,
  body: CommonFields,
  promptLen: number,
  opts: { maxTokens: number | null | undefined; defaultMax: number | 'rest'; logprobs: number | undefined },
): SamplingParams {
  const maxLen = ctx.engine.config.maxModelLen;
  if (promptLen >= maxLen) {
    throw badRequest(
      `This model's maximum context length is ${maxLen} tokens. However, your prompt has ${promptLen} tokens, leaving no room for a completion. Please shorten the prompt.`,
      'messages',
      'context_length_exceeded',
    );
  }
  const rest = maxLen - promptLen;
  let maxTokens = opts.maxTokens ?? undefined;
  if (maxTokens !== undefined && promptLen + maxTokens > maxLen) {
    throw badRequest(
      `This model's maximum context length is ${maxLen} tokens. However, you requested ${promptLen + maxTokens} tokens (${promptLen} in the prompt, ${maxTokens} in the completion). Please reduce the prompt or max_tokens.`,
      'max_tokens',
      'context_length_exceeded',
    );
  }
  maxTokens ??= opts.defaultMax === 'rest' ? rest : Math.min(opts.defaultMax, rest);
  const logitBias = parseLogitBias(body.logit_bias, ctx.engine.model.config.vocabSize);
  const stop =
    body.stop === null || body.stop === undefined
      ? []
      : (Array.isArray(body.stop) ? body.stop : [body.stop]).filter((s) => s.length > 0);
  const vocab = ctx.engine.model.config.vocabSize;
  for (const id of body.stop_token_ids ?? []) {
    if (id >= vocab) throw badRequest(`stop_token_ids: ${id} is out of vocabulary (size ${vocab}).`, 'stop_token_ids');
  }
  const minTokens = body.min_tokens ?? 0;
  if (minTokens > maxTokens)
    throw badRequest(`min_tokens (${minTokens}) must not exceed max_tokens (${maxTokens}).`, 'min_tokens');
  const topK = body.top_k ?? 0;
  return defaultSamplingParams({
    temperature: body.temperature ?? 1,
    topP: body.top_p ?? 1,
    topK: Math.max(0, topK),
    minP: body.min_p ?? 0,
    presencePenalty: body.presence_penalty ?? 0,
    frequencyPenalty: body.frequency_penalty ?? 0,
    repetitionPenalty: body.repetition_penalty ?? 1,
    seed: body.seed === null || body.seed === undefined ? undefined : ((body.seed % 2 ** 52) + 2 ** 52) % 2 ** 52,
    maxTokens,
    minTokens,
    stop,
    stopTokenIds: body.stop_token_ids ?? [],
    ignoreEos: body.ignore_eos ?? false,
    logprobs: opts.logprobs,
    includeStopStrInOutput: body.include_stop_str_in_output ?? false,
    skipSpecialTokens: body.skip_special_tokens ?? true,
    logitBias,
  });
}

/** Every step re-sends a request's biases: bound them. */
const MAX_LOGIT_BIAS = 1024;

/** OpenAI's logit_bias: token id (as a string key) → a bias in [-100, 100] added to its logit. */
function parseLogitBias(bias: Record<string, number> | null | undefined, vocab: number): [number, number][] {
  if (!bias) return [];
  const n = Object.keys(bias).length;
  if (n > MAX_LOGIT_BIAS) throw badRequest(`logit_bias: at most ${MAX_LOGIT_BIAS} tokens, got ${n}.`, 'logit_bias');
  const out: [number, number][] = [];
  for (const [key, value] of Object.entries(bias)) {
    const id = Number(key);
    if (!/^\d+$/.test(key) || id >= vocab)
      throw badRequest(
        `logit_bias: ${JSON.stringify(key)} is not a token id of this model (0 to ${vocab - 1}).`,
        'logit_bias',
      );
    if (!(value >= -100 && value <= 100))
      throw badRequest(
        `logit_bias: the bias of token ${key} must be between -100 and 100, got ${value}.`,
        'logit_bias',
      );
    if (value !== 0) out.push([id, value]);
  }
  return out;
}

/** Everything one sequence produced, for a non-streaming response. */
export interface CollectedChoice {
  index: number;
  text: string;
  tokenIds: number[];
  logprobs: TokenLogprob[];
  finishReason: string | null;
  stopReason: string | number | null;
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
}

/** Runs events to completion; an engine failure becomes a 500 for this caller. */
export async function collect(events: AsyncIterable<SequenceEvent>, n: number): Promise<CollectedChoice[]> {
  const choices: CollectedChoice[] = Array.from({ length: n }, (_, index) => ({
    index,
    text: '',
    tokenIds: [],
    logprobs: [],
    finishReason: null,
    stopReason: null,
    promptTokens: 0,
    completionTokens: 0,
    cachedTokens: 0,
  }));
  for await (const ev of events) {
    const c = choices[ev.index]!;
    if (ev.finishReason === 'error')
      throw new ApiError(500, 'The engine failed while generating; the server is restarting.');
    c.text += ev.textDelta;
    c.tokenIds.push(...ev.tokenIds);
    if (ev.logprobs) c.logprobs.push(...ev.logprobs);
    if (ev.finished) {
      c.finishReason = ev.finishReason ?? 'stop';
      c.stopReason = ev.stopReason ?? null;
      c.promptTokens = ev.usage?.promptTokens ?? 0;
      c.completionTokens = ev.usage?.completionTokens ?? 0;
      c.cachedTokens = ev.usage?.cachedTokens ?? 0;
    }
  }
  return choices;
}

export function usageOf(choices: CollectedChoice[], promptTokensPerPrompt: number[]) {
  const prompt = promptTokensPerPrompt.reduce((a, b) => a + b, 0);
  const completion = choices.reduce((a, c) => a + c.completionTokens, 0);
  const cached = choices.reduce((a, c) => Math.max(a, c.cachedTokens), 0);
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    prompt_tokens_details: { cached_tokens: cached },
  };
}

/** Server-sent events on a hijacked reply, respecting back-pressure; stops when the client goes. */
export class SseWriter {
  private readonly reply: FastifyReply;
  closed = false;
  constructor(request: FastifyRequest, reply: FastifyReply, onClose: () => void) {
    this.reply = reply;
    reply.hijack();
    const headers: Record<string, string> = {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    };
    reply.raw.writeHead(200, headers);
    const close = () => {
      if (this.closed) return;
      this.closed = true;
      onClose();
    };
    reply.raw.on('close', close);
    request.raw.on('aborted', close);
    if (clientGone(reply)) {
      // Gone before the first write: its 'close' has fired already, so no drain will ever come. Mark the
      // stream closed now (sends become no-ops) and tell the owner once it holds its generator.
      this.closed = true;
      queueMicrotask(onClose);
    }
  }

  async send(data: unknown): Promise<void> {
    if (this.closed) return;
    const ok = this.reply.raw.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
    if (!ok && !this.closed && !this.reply.raw.destroyed)
      await new Promise<void>((resolve) => {
        const done = () => {
          this.reply.raw.off('drain', done);
          this.reply.raw.off('close', done);
          resolve();
        };
        this.reply.raw.on('drain', done);
        this.reply.raw.on('close', done);
      });
  }

  end(): void {
    if (!this.reply.raw.writableEnded) this.reply.raw.end();
  }
}

/** Whether the client's connection is already gone (it may leave while its body is read or validated,
 *  before any close listener exists). */
export function clientGone(reply: FastifyReply): boolean {
  const socket = reply.raw.socket;
  return !socket || socket.destroyed;
}

/** Calls `fn` once if the client disconnects before the response is complete, including before now. */
export function onClientGone(reply: FastifyReply, fn: () => void): void {
  let fired = false;
  const gone = () => {
    if (fired || reply.raw.writableFinished) return;
    fired = true;
    fn();
  };
  reply.raw.on('close', gone);
  if (clientGone(reply)) queueMicrotask(gone);
}

export const nowSeconds = () => Math.floor(Date.now() / 1000);

export function randomId(prefix: string): string {
  return `${prefix}-${crypto.randomUUID().replaceAll('-', '')}`;
}
