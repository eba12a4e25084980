/**
 * Bad input, table-driven, against a real server on the default model: every case gets an
 * OpenAI-shaped error with the right status and a message that names the problem, and afterwards the
 * server is still healthy and holds no KV block (checked through /metrics). Then the admission errors:
 * 401 without the API key, 413 for an oversized body, 429 with Retry-After when the queue is full,
 * 503 while draining.
 */
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scrape, waitForIdle } from '../helpers/metrics.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

const MAX_LEN = 256;

interface Case {
  name: string;
  path?: string;
  method?: string;
  /** a JSON value, or a raw string sent as is */
  body?: unknown;
  raw?: string;
  contentType?: string;
  status: number;
  type?: string;
  message: RegExp;
  param?: string | null;
  code?: string | null;
}

const C = '/v1/completions';
const CHAT = '/v1/chat/completions';
const user = [{ role: 'user', content: 'Hello' }];
const long = Array.from({ length: MAX_LEN + 10 }, () => 28);

const cases: Case[] = [
  // malformed bodies
  { name: 'invalid JSON', raw: '{"prompt": "hi",', status: 400, message: /Invalid JSON body/ },
  { name: 'empty JSON body', raw: '', status: 400, message: /Invalid JSON body/ },
  { name: 'body is null', raw: 'null', status: 400, message: /body must be a JSON object/ },
  { name: 'body is an array', body: [1, 2], status: 400, message: /body must be a JSON object/ },
  { name: 'body is a string', body: 'hello', status: 400, message: /body must be a JSON object/ },
  { name: 'text/plain body', raw: 'hello', contentType: 'text/plain', status: 415, message: /application\/json/ },
  // completions: prompt
  { name: 'missing prompt', body: { max_tokens: 4 }, status: 400, message: /missing required field `prompt`/ },
  { name: 'prompt is a number', body: { prompt: 5 }, status: 400, message: /`prompt` must be of type string or array/ },
  { name: 'prompt is empty text', body: { prompt: '' }, status: 400, message: /prompt is empty/, param: 'prompt' },
  {
    name: 'prompt is an empty list',
    body: { prompt: [] },
    status: 400,
    message: /`prompt` must not have fewer than 1/,
  },
  { name: 'negative token id', body: { prompt: [1, -2] }, status: 400, message: /`prompt.1` must be >= 0/ },
  { name: 'token id beyond vocab', body: { prompt: [1, 10_000_000] }, status: 400, message: /out of vocabulary/ },
  {
    name: 'mixed token-id lists',
    body: {
      prompt: [
        [1, 2],
        [3, 'a'],
      ],
    },
    status: 400,
    message: /`prompt.1.1` must be integer/,
  },
  {
    name: 'prompt longer than the context',
    body: { prompt: long },
    status: 400,
    message: new RegExp(`maximum context length is ${MAX_LEN} tokens.*your prompt has ${long.length} tokens`),
    code: 'context_length_exceeded',
  },
  // completions: lengths
  { name: 'max_tokens 0', body: { prompt: 'hi', max_tokens: 0 }, status: 400, message: /`max_tokens` must be >= 1/ },
  {
    name: 'max_tokens negative',
    body: { prompt: 'hi', max_tokens: -5 },
    status: 400,
    message: /`max_tokens` must be >= 1/,
  },
  {
    name: 'max_tokens fractional',
    body: { prompt: 'hi', max_tokens: 1.5 },
    status: 400,
    message: /`max_tokens` must be of type integer/,
  },
  {
    name: 'max_tokens a string',
    body: { prompt: 'hi', max_tokens: 'ten' },
    status: 400,
    message: /`max_tokens` must be of type integer/,
  },
  {
    name: 'max_tokens beyond the context',
    body: { prompt: 'hi', max_tokens: MAX_LEN },
    status: 400,
    message: /maximum context length is 256 tokens.*requested 257 tokens/,
    param: 'max_tokens',
    code: 'context_length_exceeded',
  },
  { name: 'max_tokens huge', body: { prompt: 'hi', max_tokens: 1e30 }, status: 400, message: /maximum context length/ },
  {
    name: 'min_tokens above max_tokens',
    body: { prompt: 'hi', max_tokens: 4, min_tokens: 8 },
    status: 400,
    message: /min_tokens \(8\) must not exceed max_tokens \(4\)/,
  },
  {
    name: 'min_tokens negative',
    body: { prompt: 'hi', min_tokens: -1 },
    status: 400,
    message: /`min_tokens` must be >= 0/,
  },
  // sampling ranges
  {
    name: 'temperature negative',
    body: { prompt: 'hi', temperature: -0.5 },
    status: 400,
    message: /`temperature` must be >= 0/,
  },
  {
    name: 'temperature above 2',
    body: { prompt: 'hi', temperature: 2.5 },
    status: 400,
    message: /`temperature` must be <= 2/,
  },
  {
    name: 'temperature a string',
    body: { prompt: 'hi', temperature: 'hot' },
    status: 400,
    message: /`temperature` must be of type number/,
  },
  { name: 'top_p 0', body: { prompt: 'hi', top_p: 0 }, status: 400, message: /`top_p` must be > 0/ },
  { name: 'top_p above 1', body: { prompt: 'hi', top_p: 1.5 }, status: 400, message: /`top_p` must be <= 1/ },
  { name: 'top_k below -1', body: { prompt: 'hi', top_k: -2 }, status: 400, message: /`top_k` must be >= -1/ },
  {
    name: 'top_k fractional',
    body: { prompt: 'hi', top_k: 2.5 },
    status: 400,
    message: /`top_k` must be of type integer/,
  },
  { name: 'min_p above 1', body: { prompt: 'hi', min_p: 2 }, status: 400, message: /`min_p` must be <= 1/ },
  { name: 'n 0', body: { prompt: 'hi', n: 0 }, status: 400, message: /`n` must be >= 1/ },
  { name: 'n too large', body: { prompt: 'hi', n: 100 }, status: 400, message: /`n` must be <= 16/ },
  {
    name: 'presence_penalty out of range',
    body: { prompt: 'hi', presence_penalty: 3 },
    status: 400,
    message: /`presence_penalty` must be <= 2/,
  },
  {
    name: 'frequency_penalty out of range',
    body: { prompt: 'hi', frequency_penalty: -3 },
    status: 400,
    message: /`frequency_penalty` must be >= -2/,
  },
  {
    name: 'repetition_penalty 0',
    body: { prompt: 'hi', repetition_penalty: 0 },
    status: 400,
    message: /`repetition_penalty` must be > 0/,
  },
  {
    name: 'seed a string',
    body: { prompt: 'hi', seed: 'abc' },
    status: 400,
    message: /`seed` must be of type integer/,
  },
  {
    name: 'stream not a boolean',
    body: { prompt: 'hi', stream: 'yes' },
    status: 400,
    message: /`stream` must be of type boolean/,
  },
  {
    name: 'stream_options without stream',
    body: { prompt: 'hi', stream_options: { include_usage: true } },
    status: 400,
    message: /stream_options.*only.*stream/,
    param: 'stream_options',
  },
  // stop
  {
    name: 'too many stop strings',
    body: { prompt: 'hi', stop: Array.from({ length: 17 }, (_, i) => `s${i}`) },
    status: 400,
    message: /`stop` must not have more than 16 items/,
  },
  {
    name: 'stop string too long',
    body: { prompt: 'hi', stop: 'x'.repeat(300) },
    status: 400,
    message: /`stop` must not have more than 256 characters/,
  },
  {
    name: 'stop a number',
    body: { prompt: 'hi', stop: 5 },
    status: 400,
    message: /`stop` must be of type string or array/,
  },
  {
    name: 'stop list with a number',
    body: { prompt: 'hi', stop: ['a', 5] },
    status: 400,
    message: /`stop.1` must be string/,
  },
  {
    name: 'stop_token_ids beyond vocab',
    body: { prompt: 'hi', stop_token_ids: [10_000_000] },
    status: 400,
    message: /stop_token_ids: 10000000 is out of vocabulary/,
  },
  {
    name: 'stop_token_ids negative',
    body: { prompt: 'hi', stop_token_ids: [-1] },
    status: 400,
    message: /`stop_token_ids.0` must be >= 0/,
  },
  // logprobs and unsupported options
  { name: 'logprobs above 20', body: { prompt: 'hi', logprobs: 21 }, status: 400, message: /`logprobs` must be <= 20/ },
  { name: 'logprobs negative', body: { prompt: 'hi', logprobs: -1 }, status: 400, message: /`logprobs` must be >= 0/ },
  {
    name: 'logit_bias key not a token id',
    body: { prompt: 'hi', logit_bias: { hello: 5 } },
    status: 400,
    message: /logit_bias: "hello" is not a token id of this model \(0 to \d+\)/,
  },
  {
    name: 'logit_bias token outside the vocabulary',
    body: { prompt: 'hi', logit_bias: { '99999999': 5 } },
    status: 400,
    message: /logit_bias: "99999999" is not a token id/,
  },
  {
    name: 'logit_bias with too many tokens',
    body: { prompt: 'hi', logit_bias: Object.fromEntries(Array.from({ length: 1025 }, (_, i) => [String(i), 1])) },
    status: 400,
    message: /logit_bias: at most 1024 tokens, got 1025/,
  },
  {
    name: 'logit_bias above 100',
    body: { prompt: 'hi', logit_bias: { '1': 101 } },
    status: 400,
    message: /the bias of token 1 must be between -100 and 100, got 101/,
  },
  { name: 'suffix', body: { prompt: 'hi', suffix: 'end' }, status: 400, message: /suffix is not supported/ },
  {
    name: 'best_of other than n',
    body: { prompt: 'hi', best_of: 3 },
    status: 400,
    message: /best_of is not supported/,
  },
  // model
  {
    name: 'unknown model',
    body: { prompt: 'hi', model: 'gpt-9' },
    status: 404,
    type: 'not_found_error',
    message: /model `gpt-9` does not exist/,
    code: 'model_not_found',
  },
  // chat
  { name: 'chat: missing messages', path: CHAT, body: {}, status: 400, message: /missing required field `messages`/ },
  {
    name: 'chat: empty messages',
    path: CHAT,
    body: { messages: [] },
    status: 400,
    message: /`messages` must not have fewer than 1/,
  },
  {
    name: 'chat: bad role',
    path: CHAT,
    body: { messages: [{ role: 'bot', content: 'x' }] },
    status: 400,
    message: /`messages.0.role` must be one of "system"/,
  },
  {
    name: 'chat: message without role',
    path: CHAT,
    body: { messages: [{ content: 'x' }] },
    status: 400,
    message: /`messages.0` is missing required field `role`/,
  },
  {
    name: 'chat: content a number',
    path: CHAT,
    body: { messages: [{ role: 'user', content: 5 }] },
    status: 400,
    message: /`messages.0.content` must be of type string or array/,
  },
  {
    name: 'chat: image content',
    path: CHAT,
    body: { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] },
    status: 400,
    message: /`messages.0.content.0.type` must be "text"/,
  },
  {
    name: 'chat: tools',
    path: CHAT,
    body: { messages: user, tools: [{ type: 'function', function: { name: 'f' } }] },
    status: 400,
    message: /Tool calling is not supported/,
  },
  {
    name: 'chat: json response_format',
    path: CHAT,
    body: { messages: user, response_format: { type: 'json_object' } },
    status: 400,
    message: /response_format "json_object" is not supported/,
  },
  {
    name: 'chat: top_logprobs without logprobs',
    path: CHAT,
    body: { messages: user, top_logprobs: 3 },
    status: 400,
    message: /top_logprobs requires logprobs/,
  },
  {
    name: 'chat: top_logprobs above 20',
    path: CHAT,
    body: { messages: user, logprobs: true, top_logprobs: 21 },
    status: 400,
    message: /`top_logprobs` must be <= 20/,
  },
  {
    name: 'chat: max_completion_tokens 0',
    path: CHAT,
    body: { messages: user, max_completion_tokens: 0 },
    status: 400,
    message: /`max_completion_tokens` must be >= 1/,
  },
  {
    name: 'chat: conversation longer than the context',
    path: CHAT,
    body: { messages: [{ role: 'user', content: 'word '.repeat(MAX_LEN) }] },
    status: 400,
    message: /maximum context length is 256 tokens/,
    code: 'context_length_exceeded',
  },
  {
    name: 'chat: unknown model',
    path: CHAT,
    body: { messages: user, model: 'nope' },
    status: 404,
    message: /model `nope` does not exist/,
  },
  // other routes
  {
    name: 'tokenize: neither prompt nor messages',
    path: '/tokenize',
    body: {},
    status: 400,
    message: /exactly one of `prompt`/,
  },
  {
    name: 'tokenize: prompt a number',
    path: '/tokenize',
    body: { prompt: 5 },
    status: 400,
    message: /`prompt` must be string/,
  },
  {
    name: 'detokenize: id beyond vocab',
    path: '/detokenize',
    body: { tokens: [1, 10_000_000] },
    status: 400,
    message: /Token id 10000000 is out of vocabulary/,
  },
  {
    name: 'detokenize: ids not integers',
    path: '/detokenize',
    body: { tokens: ['a'] },
    status: 400,
    message: /`tokens.0` must be integer/,
  },
  {
    name: 'unknown route',
    path: '/v1/embeddings',
    body: { input: 'x' },
    status: 404,
    type: 'not_found_error',
    message: /Not found: POST \/v1\/embeddings/,
  },
  { name: 'wrong method', path: C, method: 'GET', status: 404, message: /Not found: GET \/v1\/completions/ },
];

let server: TestServer;

beforeAll(async () => {
  server = await startTestServer(['--max-model-len', String(MAX_LEN)]);
});
afterAll(async () => server?.close());

async function send(c: Case): Promise<Response> {
  const init: RequestInit = { method: c.method ?? 'POST' };
  if (init.method !== 'GET') {
    init.headers = { 'content-type': c.contentType ?? 'application/json' };
    init.body = c.raw ?? JSON.stringify(c.body);
  }
  return fetch(`${server.url}${c.path ?? C}`, init);
}

describe('bad input', () => {
  it('has at least 40 cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(40);
  });

  it.each(cases)('$name → $status', async (c) => {
    const r = await send(c);
    const body = (await r.json()) as { error?: Record<string, unknown> };
    expect(r.status).toBe(c.status);
    expect(r.headers.get('content-type')).toMatch(/application\/json/);
    expect(Object.keys(body)).toEqual(['error']);
    const e = body.error!;
    expect(Object.keys(e).sort()).toEqual(['code', 'message', 'param', 'type']);
    expect(e.message).toMatch(c.message);
    expect(e.type).toBe(c.type ?? (c.status === 404 ? 'not_found_error' : 'invalid_request_error'));
    if (c.param !== undefined) expect(e.param).toBe(c.param);
    if (c.code !== undefined) expect(e.code).toBe(c.code);
    // nothing of the server's insides
    expect(JSON.stringify(e)).not.toMatch(/\bat .*\.ts:\d+|node_modules|FST_/);
    // still healthy, and nothing held in the KV cache
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
    const m = await scrape(server.url);
    expect(m.get('pagoda_kv_cache_usage_ratio')).toBe(0);
    expect(m.get('pagoda_num_requests_running')).toBe(0);
    expect(m.get('pagoda_num_requests_waiting')).toBe(0);
  });

  it('still generates after all of that', async () => {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const r = await client.completions.create({ model: '', prompt: 'Hello', max_tokens: 3, temperature: 0 });
    expect(r.usage?.completion_tokens).toBe(3);
  });

  it('surfaces through the official client as typed errors', async () => {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const err = await client.chat.completions
      .create({ model: 'gpt-9', messages: [{ role: 'user', content: 'hi' }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    expect((err as InstanceType<typeof OpenAI.NotFoundError>).code).toBe('model_not_found');
    const tooLong = await client.completions
      .create({ model: 'SmolLM2-135M-Instruct', prompt: long, max_tokens: 1 })
      .catch((e: unknown) => e);
    expect(tooLong).toBeInstanceOf(OpenAI.BadRequestError);
    expect((tooLong as Error).message).toMatch(/maximum context length/);
  });
});

describe('API key', () => {
  let keyed: TestServer;
  beforeAll(async () => {
    keyed = await startTestServer(['--api-key', 'sekrit']);
  });
  afterAll(async () => keyed?.close());

  it('answers 401 without the key or with a wrong one, and serves with it', async () => {
    for (const apiKey of ['wrong', '']) {
      const client = new OpenAI({ baseURL: `${keyed.url}/v1`, apiKey: apiKey || 'x', maxRetries: 0 });
      const err = await client.models.list().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
    }
    const bare = await fetch(`${keyed.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'hi' }),
    });
    expect(bare.status).toBe(401);
    expect(await bare.json()).toEqual({
      error: {
        message: expect.stringMatching(/Missing or invalid API key/),
        type: 'authentication_error',
        param: null,
        code: 'invalid_api_key',
      },
    });
    const tok = await fetch(`${keyed.url}/tokenize`, { method: 'POST', body: '{"prompt":"x"}' });
    expect(tok.status).toBe(401);
    const client = new OpenAI({ baseURL: `${keyed.url}/v1`, apiKey: 'sekrit', maxRetries: 0 });
    expect((await client.models.list()).data).toHaveLength(1);
    // probes and metrics stay open: kubelet and Prometheus do not carry the key
    for (const path of ['/health', '/health/ready', '/metrics'])
      expect((await fetch(`${keyed.url}${path}`)).status).toBe(200);
  });
});

describe('admission', () => {
  let small: TestServer;
  beforeAll(async () => {
    small = await startTestServer(['--max-request-bytes', '2048', '--max-num-seqs', '1', '--max-queued-requests', '1']);
  });
  afterAll(async () => small?.close());

  it('answers 413 to an oversized body', async () => {
    const r = await fetch(`${small.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'x'.repeat(4096) }),
    });
    expect(r.status).toBe(413);
    expect(await r.json()).toEqual({
      error: {
        message: expect.stringMatching(/too large.*2048 bytes/),
        type: 'invalid_request_error',
        param: null,
        code: 'request_too_large',
      },
    });
    expect((await fetch(`${small.url}/health`)).status).toBe(200);
  });

  it('answers 429 with Retry-After when the queue is full', async () => {
    const client = new OpenAI({ baseURL: `${small.url}/v1`, apiKey: 'x', maxRetries: 0 });
    const long = { model: '', prompt: 'Count:', max_tokens: 200, ignore_eos: true, temperature: 0 } as const;
    // one running (max-num-seqs 1), one waiting (max-queued-requests 1): the third is refused
    const running = await client.completions.create({ ...long, stream: true });
    const first = await running[Symbol.asyncIterator]().next();
    expect(first.done).toBe(false);
    const waitingCtl = new AbortController();
    const waiting = client.completions.create({ ...long }, { signal: waitingCtl.signal }).catch((e: unknown) => e);
    await expect.poll(async () => (await scrape(small.url)).get('pagoda_num_requests_waiting')).toBe(1);
    const r = await fetch(`${small.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'hi', max_tokens: 2 }),
    });
    expect(r.status).toBe(429);
    expect(r.headers.get('retry-after')).toMatch(/^\d+$/);
    const body = (await r.json()) as { error: { type: string; code: string; message: string } };
    expect(body.error.type).toBe('rate_limit_error');
    expect(body.error.code).toBe('queue_full');
    expect(body.error.message).toMatch(/1 are already waiting \(limit 1\)/);
    const viaClient = await client.completions.create({ model: '', prompt: 'hi' }).catch((e: unknown) => e);
    expect(viaClient).toBeInstanceOf(OpenAI.RateLimitError);
    running.controller.abort();
    waitingCtl.abort();
    await waiting;
    const m = await waitForIdle(small.url);
    expect(m.get('pagoda_kv_cache_usage_ratio')).toBe(0);
    expect(m.get('pagoda_num_requests_running')).toBe(0);
  });

  it('answers 503 while draining, and readiness turns 503 while liveness stays 200', async () => {
    expect((await fetch(`${small.url}/health/ready`)).status).toBe(200);
    small.lifecycle.phase = 'draining';
    try {
      const ready = await fetch(`${small.url}/health/ready`);
      expect(ready.status).toBe(503);
      expect((await fetch(`${small.url}/health`)).status).toBe(200);
      const r = await fetch(`${small.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ messages: user }),
      });
      expect(r.status).toBe(503);
      expect(r.headers.get('retry-after')).toMatch(/^\d+$/);
      const body = (await r.json()) as { error: { type: string; message: string } };
      expect(body.error.type).toBe('service_unavailable');
      expect(body.error.message).toMatch(/shutting down/);
    } finally {
      small.lifecycle.phase = 'ready';
    }
  });

  it('is not ready while starting, though alive', async () => {
    small.lifecycle.phase = 'starting';
    try {
      expect((await fetch(`${small.url}/health/ready`)).status).toBe(503);
      expect((await fetch(`${small.url}/health`)).status).toBe(200);
    } finally {
      small.lifecycle.phase = 'ready';
    }
  });
});
