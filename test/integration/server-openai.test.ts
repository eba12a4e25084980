/**
 * The OpenAI-compatible API driven by the official `openai` client against a real server on the
 * default model: models, chat and completions, streaming and not, usage.
 */
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../helpers/server.ts';

let server: TestServer;
let client: OpenAI;
const MODEL = 'SmolLM2-135M-Instruct';

beforeAll(async () => {
  server = await startTestServer();
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
afterAll(async () => server.close());

describe('OpenAI API (official client)', () => {
  it('lists the served model', async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual([MODEL]);
  });

  it('answers a chat completion in English', async () => {
    const r = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'What is the capital of France?' }],
      temperature: 0,
      max_tokens: 20,
    });
    expect(r.object).toBe('chat.completion');
    expect(r.choices[0]!.message.role).toBe('assistant');
    expect(r.choices[0]!.message.content).toContain('Paris');
    expect(r.choices[0]!.finish_reason).toBe('stop');
    expect(r.usage!.prompt_tokens).toBeGreaterThan(10);
    expect(r.usage!.total_tokens).toBe(r.usage!.prompt_tokens + r.usage!.completion_tokens);
  });

  it('streams chat chunks that add up to the non-streamed answer', async () => {
    const req = {
      model: MODEL,
      messages: [{ role: 'user' as const, content: 'Name three colors.' }],
      temperature: 0,
      max_tokens: 24,
    };
    const whole = await client.chat.completions.create(req);
    const stream = await client.chat.completions.create({
      ...req,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | undefined;
    let roles = 0;
    for await (const chunk of stream) {
      expect(chunk.object).toBe('chat.completion.chunk');
      if (chunk.usage) usage = chunk.usage;
      for (const c of chunk.choices) {
        if (c.delta.role) roles++;
        text += c.delta.content ?? '';
        finish = c.finish_reason ?? finish;
      }
    }
    expect(roles).toBe(1);
    expect(text).toBe(whole.choices[0]!.message.content);
    expect(finish).toBe(whole.choices[0]!.finish_reason);
    expect(usage).toEqual({
      ...whole.usage,
      prompt_tokens_details: undefined,
      total_tokens: whole.usage!.total_tokens,
    });
  });

  it('stream_options: usage null in every chunk but the last; continuous_usage_stats counts in every chunk', async () => {
    const req = {
      model: MODEL,
      messages: [{ role: 'user' as const, content: 'Count to five.' }],
      temperature: 0,
      max_tokens: 16,
      stream: true as const,
    };
    const plain = await client.chat.completions.create({ ...req, stream_options: { include_usage: true } });
    const usages: (OpenAI.CompletionUsage | null | undefined)[] = [];
    for await (const chunk of plain) usages.push(chunk.usage);
    expect(usages.slice(0, -1).every((u) => u === null)).toBe(true);
    const total = usages.at(-1)!;
    expect(total.completion_tokens).toBeGreaterThan(0);

    // vLLM's extension, not in the openai package's types: the client sends it as given.
    const options = { include_usage: true, continuous_usage_stats: true } as OpenAI.ChatCompletionStreamOptions;
    const continuous = await client.chat.completions.create({ ...req, stream_options: options });
    const running: OpenAI.CompletionUsage[] = [];
    for await (const chunk of continuous) {
      expect(chunk.usage).toBeTruthy();
      running.push(chunk.usage!);
    }
    for (const [i, u] of running.entries()) {
      expect(u.prompt_tokens).toBe(total.prompt_tokens);
      expect(u.total_tokens).toBe(u.prompt_tokens + u.completion_tokens);
      if (i > 0) expect(u.completion_tokens).toBeGreaterThanOrEqual(running[i - 1]!.completion_tokens);
    }
    expect(running[0]!.completion_tokens).toBe(0); // the role chunk comes before any token
    expect(running.at(-1)).toEqual(total);
  });

  it('completes text prompts, streamed and not, with n choices', async () => {
    const r = await client.completions.create({
      model: MODEL,
      prompt: 'The sky is',
      max_tokens: 8,
      temperature: 0,
      n: 2,
    });
    expect(r.object).toBe('text_completion');
    expect(r.choices).toHaveLength(2);
    expect(r.choices[0]!.text).toBe(r.choices[1]!.text);
    expect(r.choices[0]!.finish_reason).toBe('length');
    expect(r.usage!.completion_tokens).toBe(16);
    const stream = await client.completions.create({
      model: MODEL,
      prompt: 'The sky is',
      max_tokens: 8,
      temperature: 0,
      stream: true,
    });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
    expect(text).toBe(r.choices[0]!.text);
  });

  it('reports health', async () => {
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
    expect((await fetch(`${server.url}/health/ready`)).status).toBe(200);
  });
});
