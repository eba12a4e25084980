/**
 * Sampling semantics through the official `openai` client on the default model: seeds, stop strings
 * (never leaked, streamed or not), stop_token_ids, min_tokens, max_tokens / max_completion_tokens,
 * ignore_eos, n, logprobs in both response shapes, penalties, logit_bias, top_k=1 ≡ greedy; and
 * /tokenize, /detokenize.
 */
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitForIdle } from '../helpers/metrics.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

let server: TestServer;
let client: OpenAI;
const MODEL = 'SmolLM2-135M-Instruct';
const PROMPT = 'The capital of France is';

/** vLLM's `return_token_ids` extension, which the openai types do not know. */
type WithIds<T> = T & { token_ids?: number[]; stop_reason?: string | number | null };

beforeAll(async () => {
  server = await startTestServer();
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
afterAll(async () => server?.close());

async function complete(extra: Record<string, unknown>) {
  const r = await client.completions.create({
    model: MODEL,
    prompt: PROMPT,
    max_tokens: 24,
    ...extra,
    // @ts-expect-error vLLM extension
    return_token_ids: true,
  });
  return { ...r, choice: r.choices[0] as WithIds<OpenAI.CompletionChoice> };
}

async function streamText(extra: Record<string, unknown>): Promise<{ chunks: string[]; finish: string | null }> {
  const stream = await client.completions.create({
    model: MODEL,
    prompt: PROMPT,
    max_tokens: 24,
    ...extra,
    stream: true,
  });
  const chunks: string[] = [];
  let finish: string | null = null;
  for await (const c of stream) {
    chunks.push(c.choices[0]?.text ?? '');
    finish = c.choices[0]?.finish_reason ?? finish;
  }
  return { chunks, finish };
}

const greedy = { temperature: 0 };

describe('seeds', () => {
  it('same seed → same output; different seeds → different outputs', async () => {
    const a = await complete({ temperature: 1, seed: 1234 });
    const b = await complete({ temperature: 1, seed: 1234 });
    expect(b.choice.text).toBe(a.choice.text);
    expect(b.choice.token_ids).toEqual(a.choice.token_ids);
    const others = await Promise.all([1, 2, 3].map((seed) => complete({ temperature: 1, seed })));
    const texts = new Set([a.choice.text, ...others.map((o) => o.choice.text)]);
    expect(texts.size).toBeGreaterThanOrEqual(3);
  });

  it('a seeded sample does not depend on what else is in the batch', async () => {
    const alone = await complete({ temperature: 0.9, top_p: 0.95, seed: 77 });
    const crowd = await Promise.all([
      complete({ temperature: 0.9, top_p: 0.95, seed: 77 }),
      ...Array.from({ length: 6 }, (_, i) => complete({ temperature: 1, seed: 1000 + i })),
    ]);
    expect(crowd[0]!.choice.token_ids).toEqual(alone.choice.token_ids);
  });

  it('n choices: each its own sample, reproducible with a seed', async () => {
    const r1 = await client.completions.create({
      model: MODEL,
      prompt: PROMPT,
      max_tokens: 16,
      n: 3,
      temperature: 1,
      seed: 9,
    });
    const r2 = await client.completions.create({
      model: MODEL,
      prompt: PROMPT,
      max_tokens: 16,
      n: 3,
      temperature: 1,
      seed: 9,
    });
    expect(r1.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    expect(r2.choices.map((c) => c.text)).toEqual(r1.choices.map((c) => c.text));
    expect(new Set(r1.choices.map((c) => c.text)).size).toBeGreaterThan(1);
    expect(r1.usage!.prompt_tokens).toBe(3 * 5);
    expect(r1.usage!.completion_tokens).toBe(3 * 16);
    const chat = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Tell me a word.' }],
      n: 2,
      max_completion_tokens: 8,
      temperature: 1,
      seed: 3,
    });
    expect(chat.choices.map((c) => c.index)).toEqual([0, 1]);
  });
});

describe('greedy equivalents', () => {
  it('top_k=1, a tiny top_p and min_p=1 all equal greedy', async () => {
    const g = await complete(greedy);
    for (const extra of [{ top_k: 1 }, { top_p: 1e-6 }, { min_p: 1 }]) {
      const r = await complete({ temperature: 1, seed: 5, ...extra });
      expect(r.choice.token_ids, JSON.stringify(extra)).toEqual(g.choice.token_ids);
    }
  });
});

describe('stop strings and stop tokens', () => {
  it('stops at a stop string spanning several tokens, which never leaks (streamed or not)', async () => {
    const g = await complete(greedy);
    const text = g.choice.text;
    // a stop string in the middle of the greedy text that spans token boundaries
    const at = Math.floor(text.length / 3);
    const stop = text.slice(at, at + 9);
    expect(stop.trim().length).toBeGreaterThan(3);
    const before = text.slice(0, text.indexOf(stop));
    const r = await complete({ ...greedy, stop: [stop, 'never-appears'] });
    expect(r.choice.text).toBe(before);
    expect(r.choice.finish_reason).toBe('stop');
    expect(r.choice.stop_reason).toBe(stop);
    const s = await streamText({ ...greedy, stop });
    expect(s.chunks.join('')).toBe(before);
    expect(s.finish).toBe('stop');
    // no chunk carries any prefix of the stop string past `before`
    let seen = '';
    for (const c of s.chunks) {
      seen += c;
      expect(before.startsWith(seen)).toBe(true);
    }
    const incl = await complete({ ...greedy, stop, include_stop_str_in_output: true });
    expect(incl.choice.text).toBe(before + stop);
  });

  it('a stop string that never matches changes nothing, and held-back text is released at the end', async () => {
    const g = await complete(greedy);
    const s = await streamText({ ...greedy, stop: ['zzzz-not-there'] });
    expect(s.chunks.join('')).toBe(g.choice.text);
    expect(s.finish).toBe('length');
  });

  it('chat streaming never leaks the stop string', async () => {
    const req = {
      model: MODEL,
      messages: [{ role: 'user' as const, content: 'Say hi.' }],
      temperature: 0,
      max_tokens: 30,
    };
    const whole = await client.chat.completions.create(req);
    const text = whole.choices[0]!.message.content!;
    const stop = text.slice(6, 14);
    const stream = await client.chat.completions.create({ ...req, stop, stream: true });
    let out = '';
    for await (const c of stream) out += c.choices[0]?.delta.content ?? '';
    expect(out).toBe(text.slice(0, text.indexOf(stop)));
  });

  it('stop_token_ids end generation at that token (not shown in the text)', async () => {
    const g = await complete(greedy);
    const ids = g.choice.token_ids!;
    // the first token that does not occur earlier in the output
    const k = ids.findIndex((t, i) => i >= 2 && !ids.slice(0, i).includes(t));
    const r = await complete({ ...greedy, stop_token_ids: [ids[k]!] });
    expect(r.choice.token_ids).toEqual(ids.slice(0, k + 1));
    expect(r.choice.finish_reason).toBe('stop');
    expect(r.choice.stop_reason).toBe(ids[k]);
    const prefixText = (await complete({ ...greedy, max_tokens: k })).choice.text;
    expect(r.choice.text).toBe(prefixText);
  });

  it('min_tokens holds off stop tokens and EOS: they are not sampled before then', async () => {
    const g = await complete(greedy);
    const ids = g.choice.token_ids!;
    const r = await complete({ ...greedy, stop_token_ids: [ids[0]!], min_tokens: 6 });
    expect(r.choice.token_ids!.length).toBeGreaterThanOrEqual(6);
    // masked, as vLLM does, not merely ignored: greedy picks another first token
    expect(r.choice.token_ids![0]).not.toBe(ids[0]);
    expect(r.choice.token_ids!.slice(0, 6)).not.toContain(ids[0]);
    const chat = { model: MODEL, messages: [{ role: 'user' as const, content: 'Say hi.' }], temperature: 0 };
    const natural = await client.chat.completions.create({ ...chat, max_tokens: 100 });
    expect(natural.choices[0]!.finish_reason).toBe('stop');
    const n = natural.usage!.completion_tokens;
    const longer = await client.chat.completions.create({ ...chat, max_tokens: n + 20, min_tokens: n + 10 } as never);
    expect((longer as OpenAI.ChatCompletion).usage!.completion_tokens).toBeGreaterThanOrEqual(n + 10);
  });
});

describe('logit_bias', () => {
  it('+100 makes a token the only choice, -100 takes it out of greedy, for completions and chat', async () => {
    const ids = (await complete(greedy)).choice.token_ids!;
    const forced = ids[3]!;
    const r = await complete({ temperature: 1, seed: 7, max_tokens: 8, logit_bias: { [String(forced)]: 100 } });
    expect(r.choice.token_ids).toEqual(Array(8).fill(forced));
    const banned = await complete({ ...greedy, max_tokens: 4, logit_bias: { [String(ids[0])]: -100 } });
    expect(banned.choice.token_ids![0]).not.toBe(ids[0]);
    const chat = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Say hi.' }],
      max_tokens: 5,
      logit_bias: { [String(forced)]: 100 },
      // @ts-expect-error vLLM extension
      return_token_ids: true,
    });
    expect((chat.choices[0] as WithIds<OpenAI.ChatCompletion.Choice>).token_ids).toEqual(Array(5).fill(forced));
  });
});

describe('lengths', () => {
  it('max_tokens, max_completion_tokens (which wins) and ignore_eos', async () => {
    const r = await complete({ ...greedy, max_tokens: 7 });
    expect(r.usage!.completion_tokens).toBe(7);
    expect(r.choice.token_ids).toHaveLength(7);
    expect(r.choice.finish_reason).toBe('length');
    const chat = { model: MODEL, messages: [{ role: 'user' as const, content: 'Say hi.' }], temperature: 0 };
    const c = await client.chat.completions.create({ ...chat, max_tokens: 50, max_completion_tokens: 5 });
    expect(c.usage!.completion_tokens).toBe(5);
    expect(c.choices[0]!.finish_reason).toBe('length');
    const natural = await client.chat.completions.create({ ...chat, max_tokens: 100 });
    expect(natural.choices[0]!.finish_reason).toBe('stop');
    const n = natural.usage!.completion_tokens;
    expect(n).toBeLessThan(60);
    const forced = await client.chat.completions.create({ ...chat, max_tokens: n + 10, ignore_eos: true } as never);
    const f = forced as OpenAI.ChatCompletion;
    expect(f.usage!.completion_tokens).toBe(n + 10);
    expect(f.choices[0]!.finish_reason).toBe('length');
  });

  it('without max_tokens, chat may use the rest of the context and completions default to 16', async () => {
    const r = await client.completions.create({
      model: MODEL,
      prompt: PROMPT,
      temperature: 0,
      ignore_eos: true,
    } as never);
    expect((r as OpenAI.Completion).usage!.completion_tokens).toBe(16);
  });
});

describe('logprobs', () => {
  it('completions shape: tokens, token_logprobs, top_logprobs, text_offset', async () => {
    const r = await complete({ ...greedy, max_tokens: 8, logprobs: 3 });
    const lp = r.choice.logprobs!;
    expect(lp.tokens).toHaveLength(8);
    expect(lp.tokens!.join('')).toBe(r.choice.text);
    expect(lp.token_logprobs).toHaveLength(8);
    expect(lp.text_offset).toHaveLength(8);
    let offset = 0;
    lp.tokens!.forEach((t, i) => {
      expect(lp.text_offset![i]).toBe(offset);
      offset += t.length;
      const top = lp.top_logprobs![i]!;
      const values = Object.values(top);
      expect(values.length).toBeGreaterThan(0);
      expect(values.length).toBeLessThanOrEqual(3);
      for (const v of values) expect(v).toBeLessThanOrEqual(0);
      // greedy: the chosen token is the most likely one
      expect(lp.token_logprobs![i]).toBeCloseTo(Math.max(...values), 5);
      expect(top[t]).toBeCloseTo(lp.token_logprobs![i]!, 5);
      expect(values.reduce((a, v) => a + Math.exp(v), 0)).toBeLessThanOrEqual(1 + 1e-5);
    });
  });

  it('chat shape: content[] with token, logprob, bytes, top_logprobs', async () => {
    const r = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'What is 2+2?' }],
      temperature: 0,
      max_tokens: 6,
      logprobs: true,
      top_logprobs: 2,
    });
    const content = r.choices[0]!.logprobs!.content!;
    expect(content).toHaveLength(r.usage!.completion_tokens);
    for (const c of content) {
      expect(c.bytes).toEqual([...Buffer.from(c.token, 'utf8')]);
      expect(c.top_logprobs).toHaveLength(2);
      expect(c.top_logprobs[0]!.logprob).toBeGreaterThanOrEqual(c.top_logprobs[1]!.logprob);
      expect(c.logprob).toBeCloseTo(c.top_logprobs[0]!.logprob, 5);
    }
    const none = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'What is 2+2?' }],
      temperature: 0,
      max_tokens: 6,
      logprobs: true,
    });
    expect(none.choices[0]!.logprobs!.content![0]!.top_logprobs).toEqual([]);
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'What is 2+2?' }],
      temperature: 0,
      max_tokens: 6,
      logprobs: true,
      top_logprobs: 2,
      stream: true,
    });
    const streamed: OpenAI.ChatCompletionTokenLogprob[] = [];
    for await (const c of stream) streamed.push(...(c.choices[0]?.logprobs?.content ?? []));
    expect(streamed).toEqual(content);
  });
});

describe('penalties', () => {
  const loop = { prompt: 'one two one two one two one two', temperature: 0, max_tokens: 32 };
  const maxRepeat = (ids: number[]) => Math.max(...[...new Set(ids)].map((t) => ids.filter((x) => x === t).length));
  const distinct = (ids: number[]) => new Set(ids).size;

  it('frequency, presence and repetition penalties break a greedy loop', async () => {
    const plain = (await complete(loop)).choice.token_ids!;
    expect(maxRepeat(plain)).toBeGreaterThanOrEqual(8);
    for (const p of [{ frequency_penalty: 1.5 }, { presence_penalty: 1.5 }, { repetition_penalty: 1.8 }]) {
      const ids = (await complete({ ...loop, ...p })).choice.token_ids!;
      expect(ids, JSON.stringify(p)).not.toEqual(plain);
      expect(maxRepeat(ids), JSON.stringify(p)).toBeLessThan(maxRepeat(plain) / 2);
      expect(distinct(ids), JSON.stringify(p)).toBeGreaterThan(distinct(plain));
    }
  });

  it('a negative frequency penalty makes repetition more likely', async () => {
    const prompt = 'Write one sentence about the sea.';
    const plain = (await complete({ ...greedy, prompt, max_tokens: 32, ignore_eos: true })).choice.token_ids!;
    const ids = (await complete({ ...greedy, prompt, max_tokens: 32, ignore_eos: true, frequency_penalty: -2 })).choice
      .token_ids!;
    expect(plain).toHaveLength(32);
    expect(maxRepeat(ids)).toBeGreaterThan(maxRepeat(plain));
  });
});

describe('tokenizer routes', () => {
  it('/tokenize and /detokenize round-trip, and counts agree with usage', async () => {
    const text = 'Hello, world! Ünïcödé text with an emoji 🚀 and numbers 12345.';
    const post = async (path: string, body: unknown) => {
      const r = await fetch(`${server.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      expect(r.status).toBe(200);
      return r.json() as Promise<Record<string, unknown>>;
    };
    const t = (await post('/tokenize', { prompt: text })) as { tokens: number[]; count: number; max_model_len: number };
    expect(t.count).toBe(t.tokens.length);
    expect(t.max_model_len).toBeGreaterThan(0);
    const d = (await post('/detokenize', { tokens: t.tokens })) as { prompt: string };
    expect(d.prompt).toBe(text);
    const r = await client.completions.create({ model: MODEL, prompt: text, max_tokens: 1 });
    expect(r.usage!.prompt_tokens).toBe(t.count);
    const messages = [{ role: 'user' as const, content: text }];
    const tc = (await post('/tokenize', { messages })) as { count: number };
    const c = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 1 });
    expect(c.usage!.prompt_tokens).toBe(tc.count);
  });

  it('token-id prompts and return_token_ids agree', async () => {
    const r = await client.completions.create({
      model: MODEL,
      prompt: PROMPT,
      max_tokens: 4,
      temperature: 0,
      // @ts-expect-error vLLM extension
      return_token_ids: true,
    });
    const choice = r.choices[0] as WithIds<OpenAI.CompletionChoice> & { prompt_token_ids: number[] };
    const again = await client.completions.create({
      model: MODEL,
      prompt: choice.prompt_token_ids,
      max_tokens: 4,
      temperature: 0,
    });
    expect(again.choices[0]!.text).toBe(choice.text);
  });
});

describe('afterwards', () => {
  it('holds no KV block', async () => {
    const m = await waitForIdle(server.url);
    expect(m.get('pagoda_kv_cache_usage_ratio')).toBe(0);
  });
});
