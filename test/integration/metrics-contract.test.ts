/**
 * The metrics contract (docs/metrics.md) against a real server: every documented name is exposed with
 * its type and labels, nothing undocumented is, each vllm:* twin equals its pagoda_* name, and every
 * metric moves as documented (token counters, prefix-cache hits on a repeated prompt, preemptions with
 * a tiny cache, finished sequences by reason, histogram counts, gauges while requests run).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { METRICS_CONTRACT_VERSION } from '../../runtime/src/server/metrics.ts';
import { ROOT } from '../helpers/fixtures.ts';
import { type Scrape, scrape, waitForIdle } from '../helpers/metrics.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { streamCompletion } from '../helpers/sse.ts';

interface Documented {
  ours: string;
  theirs: string | undefined;
  type: string;
  labels: string[];
}

const doc = readFileSync(join(ROOT, 'docs', 'metrics.md'), 'utf8');
// a table row (the formatter pads the columns)
const ROW =
  /^\|\s*`(pagoda_[a-z0-9_]+)`\s*\|\s*(?:`(vllm:[a-z0-9_:]+)`|—)\s*\|\s*(gauge|counter|histogram)\s*\|([^|]*)\|/;
const documented: Documented[] = doc
  .split('\n')
  .map((line) => ROW.exec(line))
  .filter((m) => m !== null)
  .map((m) => ({
    ours: m[1]!,
    theirs: m[2],
    type: m[3]!,
    labels: m[4]!
      .split(',')
      .map((l) => l.trim())
      .filter((l) => l !== ''),
  }));
const twins = documented.filter((d) => d.theirs !== undefined) as (Documented & { theirs: string })[];
const DEFAULT_COLLECTORS = /^pagoda_(process|nodejs)_/;

let server: TestServer;
let client: OpenAI;

beforeAll(async () => {
  server = await startTestServer();
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'x', maxRetries: 0 });
});
afterAll(async () => server?.close());

/** The value of a documented metric for one label set: counters and gauges as is, histograms by count. */
function value(m: Scrape, name: string, labels: Record<string, string> = {}): number {
  const type = m.types.get(name);
  return type === 'histogram' ? m.get(`${name}_count`, labels, 0) : m.get(name, labels, 0);
}

function delta(a: Scrape, b: Scrape, name: string, labels: Record<string, string> = {}): number {
  return value(b, name, labels) - value(a, name, labels);
}

function expectTwinsEqual(m: Scrape) {
  for (const d of twins) {
    const suffixes = d.type === 'histogram' ? ['_count', '_sum', '_bucket'] : [''];
    for (const suffix of suffixes) {
      const ours = m.samples.filter((s) => s.name === `${d.ours}${suffix}`);
      const theirs = m.samples.filter((s) => s.name === `${d.theirs}${suffix}`);
      expect(theirs.length, `${d.theirs}${suffix}`).toBe(ours.length);
      for (const s of ours) {
        const twin = theirs.find((t) => JSON.stringify(t.labels) === JSON.stringify(s.labels));
        expect(twin?.value, `${d.theirs}${suffix} ${JSON.stringify(s.labels)}`).toBe(s.value);
      }
    }
  }
}

describe('metrics contract', () => {
  it('documents a version matching the code, and the autoscaler names', () => {
    expect(doc).toMatch(new RegExp(`Contract version: ${METRICS_CONTRACT_VERSION}\\b`));
    const names = documented.map((d) => d.ours);
    for (const n of ['pagoda_num_requests_running', 'pagoda_num_requests_waiting', 'pagoda_kv_cache_usage_ratio'])
      expect(names).toContain(n);
    expect(documented.length).toBeGreaterThanOrEqual(20);
  });

  it('exposes exactly the documented names, with their types', async () => {
    const m = await scrape(server.url);
    const exposed = [...m.types.keys()].filter((n) => !DEFAULT_COLLECTORS.test(n)).sort();
    const names = documented.flatMap((d) => (d.theirs ? [d.ours, d.theirs] : [d.ours])).sort();
    expect(exposed).toEqual(names);
    for (const d of documented) {
      expect(m.types.get(d.ours), d.ours).toBe(d.type);
      if (d.theirs) expect(m.types.get(d.theirs), d.theirs).toBe(d.type);
    }
    expect(m.get('pagoda_info', { contract_version: METRICS_CONTRACT_VERSION })).toBe(1);
    expect(m.get('pagoda_kv_cache_capacity_tokens')).toBe(server.engine.info.numBlocks * server.engine.info.blockSize);
    expect(m.get('pagoda_process_resident_memory_bytes')).toBeGreaterThan(0);
  });

  it('counts tokens, steps, finished sequences and latencies of a completion', async () => {
    const prompt = 'The quick brown fox jumps over the lazy dog';
    const L = server.engine.model.tokenizer.encode(prompt).length;
    const a = await scrape(server.url);
    const r = await client.completions.create({
      model: '',
      prompt,
      max_tokens: 5,
      temperature: 0,
      // @ts-expect-error vLLM extension
      ignore_eos: true,
    });
    expect(r.usage!.completion_tokens).toBe(5);
    const b = await scrape(server.url);
    expect(delta(a, b, 'pagoda_prompt_tokens_total')).toBe(L);
    expect(delta(a, b, 'pagoda_generation_tokens_total')).toBe(5);
    expect(delta(a, b, 'pagoda_request_success_total', { finished_reason: 'length' })).toBe(1);
    expect(delta(a, b, 'pagoda_time_to_first_token_seconds')).toBe(1);
    expect(delta(a, b, 'pagoda_inter_token_latency_seconds')).toBe(4);
    expect(delta(a, b, 'pagoda_e2e_request_latency_seconds')).toBe(1);
    expect(delta(a, b, 'pagoda_request_queue_time_seconds')).toBe(1);
    expect(delta(a, b, 'pagoda_request_prompt_tokens')).toBe(1);
    expect(b.get('pagoda_request_prompt_tokens_sum', {}, 0) - a.get('pagoda_request_prompt_tokens_sum', {}, 0)).toBe(L);
    expect(
      b.get('pagoda_request_generation_tokens_sum', {}, 0) - a.get('pagoda_request_generation_tokens_sum', {}, 0),
    ).toBe(5);
    // one prefill step that samples the first token, then one decode step per further token
    expect(delta(a, b, 'pagoda_engine_steps_total')).toBe(5);
    expect(delta(a, b, 'pagoda_engine_step_duration_seconds')).toBe(5);
    const e2e =
      b.get('pagoda_e2e_request_latency_seconds_sum', {}, 0) - a.get('pagoda_e2e_request_latency_seconds_sum', {}, 0);
    const ttft =
      b.get('pagoda_time_to_first_token_seconds_sum', {}, 0) - a.get('pagoda_time_to_first_token_seconds_sum', {}, 0);
    expect(e2e).toBeGreaterThan(ttft);
    expect(ttft).toBeGreaterThan(0);
    expectTwinsEqual(b);
  });

  it('counts prefix-cache queries and hits in tokens', async () => {
    const prompt = `${'A long prompt that repeats itself to fill several blocks of the cache. '.repeat(4)}End.`;
    const L = server.engine.model.tokenizer.encode(prompt).length;
    expect(L).toBeGreaterThan(48);
    const a = await scrape(server.url);
    await client.completions.create({ model: '', prompt, max_tokens: 1 });
    const b = await scrape(server.url);
    await client.completions.create({ model: '', prompt, max_tokens: 1 });
    const c = await scrape(server.url);
    expect(delta(a, b, 'pagoda_prefix_cache_queries_total')).toBe(L);
    expect(delta(b, c, 'pagoda_prefix_cache_queries_total')).toBe(L);
    // the second time, every full block but the one holding the last prompt token is a hit
    expect(delta(b, c, 'pagoda_prefix_cache_hits_total')).toBe(Math.floor((L - 1) / 16) * 16);
    expect(c.get('pagoda_kv_cache_blocks', { state: 'cached' })).toBeGreaterThanOrEqual(Math.floor((L - 1) / 16));
    expectTwinsEqual(c);
  });

  it('counts finished sequences by reason (stop, abort) and HTTP errors by status', async () => {
    const a = await scrape(server.url);
    const chat = await client.chat.completions.create({
      model: '',
      messages: [{ role: 'user', content: 'Say hi.' }],
      temperature: 0,
      max_tokens: 100,
    });
    expect(chat.choices[0]!.finish_reason).toBe('stop');
    await streamCompletion(
      server.url,
      { prompt: 'Count:', max_tokens: 200, ignore_eos: true },
      { onEvent: () => false },
    );
    await fetch(`${server.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"prompt": 5}',
    });
    const b = await waitForIdle(server.url);
    expect(delta(a, b, 'pagoda_request_success_total', { finished_reason: 'stop' })).toBe(1);
    expect(delta(a, b, 'pagoda_request_success_total', { finished_reason: 'abort' })).toBe(1);
    expect(delta(a, b, 'pagoda_http_errors_total', { status: '400' })).toBe(1);
    // e2e and lengths describe completed work only: the aborted one is not observed
    expect(delta(a, b, 'pagoda_e2e_request_latency_seconds')).toBe(1);
    expect(delta(a, b, 'pagoda_time_to_first_token_seconds')).toBe(2);
    expectTwinsEqual(b);
  });

  it('shows running sequences and KV usage while a request runs, and zero after', async () => {
    let seen: Scrape | undefined;
    await streamCompletion(
      server.url,
      { prompt: 'Tell a story:', max_tokens: 40, ignore_eos: true },
      {
        onEvent: (_, i) => {
          if (i === 3) void scrape(server.url).then((m) => (seen ??= m));
          return undefined;
        },
      },
    );
    await expect.poll(() => seen).toBeDefined();
    expect(seen!.get('pagoda_num_requests_running')).toBe(1);
    expect(seen!.get('pagoda_kv_cache_usage_ratio')).toBeGreaterThan(0);
    expect(seen!.get('pagoda_kv_cache_blocks', { state: 'used' })).toBeGreaterThan(0);
    expectTwinsEqual(seen!);
    const after = await waitForIdle(server.url);
    expect(after.get('pagoda_num_requests_running')).toBe(0);
    expect(after.get('pagoda_kv_cache_usage_ratio')).toBe(0);
  });
});

describe('metrics under memory pressure', () => {
  let tiny: TestServer;
  beforeAll(async () => {
    tiny = await startTestServer(['--num-kv-blocks', '8', '--max-num-seqs', '3']);
  });
  afterAll(async () => tiny?.close());

  it('counts preemptions, and shows waiting sequences', async () => {
    const a = await scrape(tiny.url);
    let maxWaiting = 0;
    let polling = true;
    const poll = (async () => {
      while (polling) {
        maxWaiting = Math.max(maxWaiting, (await scrape(tiny.url)).get('pagoda_num_requests_waiting'));
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        streamCompletion(tiny.url, { prompt: `Story number ${i}:`, max_tokens: 40, ignore_eos: true, temperature: 0 }),
      ),
    );
    polling = false;
    await poll;
    const b = await waitForIdle(tiny.url);
    expect(maxWaiting).toBeGreaterThan(0);
    expect(delta(a, b, 'pagoda_num_preemptions_total')).toBeGreaterThan(0);
    expect(delta(a, b, 'pagoda_request_success_total', { finished_reason: 'length' })).toBe(5);
    expect(delta(a, b, 'pagoda_generation_tokens_total')).toBe(5 * 40);
    expect(b.get('pagoda_kv_cache_usage_ratio')).toBe(0);
    expectTwinsEqual(b);
  });
});
