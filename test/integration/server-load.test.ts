/**
 * A real `pagoda serve` process under load, watched only through its /metrics:
 * - 100 streaming clients cut mid-generation (some while still queued): every sequence aborts and
 *   every KV block returns;
 * - 500 concurrent streaming requests, three rounds: all complete without an error, and the server's
 *   resident memory stays flat from round to round.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultModelPath } from '../helpers/default-engine.ts';
import { scrape, waitForIdle } from '../helpers/metrics.ts';
import { type ServeProcess, spawnServe } from '../helpers/server.ts';
import { streamCompletion } from '../helpers/sse.ts';

let server: ServeProcess;

beforeAll(async () => {
  server = await spawnServe([
    '--model',
    await defaultModelPath(),
    '--device',
    'cpu',
    '--max-num-seqs',
    '128',
    '--max-queued-requests',
    '2048',
  ]);
});
afterAll(async () => {
  server?.child.kill('SIGTERM');
  await server?.exited;
});

// Short prompts: on a 2-core machine prefill would otherwise dominate the load rounds.
const prompt = (i: number) => `Hi ${i}!`;

describe('disconnects', () => {
  it('100 streaming clients cut mid-generation: sequences abort and every KV block returns', async () => {
    const before = await scrape(server.url);
    const abortsBefore = before.get('pagoda_request_success_total', { finished_reason: 'abort' }, 0);
    const clients = Array.from({ length: 100 }, (_, i) => {
      const body = { prompt: prompt(i), max_tokens: 300, ignore_eos: true, temperature: 0.8, seed: i };
      if (i % 5 === 0) {
        // these go before their first token, most of them while still waiting for a slot
        const ctl = new AbortController();
        setTimeout(() => ctl.abort(), 20 + i);
        return streamCompletion(server.url, body, { signal: ctl.signal });
      }
      // the rest after 1..4 chunks
      return streamCompletion(server.url, body, { onEvent: (_, n) => n + 1 < 1 + (i % 4) });
    });
    const results = await Promise.all(clients);
    for (const r of results) {
      expect(r.error).toBeUndefined();
      expect(r.done).toBe(false);
    }
    expect(results.filter((r) => r.events.length > 0).length).toBeGreaterThanOrEqual(80);
    const m = await waitForIdle(server.url);
    expect(m.get('pagoda_kv_cache_usage_ratio')).toBe(0);
    expect(m.get('vllm:kv_cache_usage_perc')).toBe(0);
    expect(m.get('pagoda_num_requests_running')).toBe(0);
    expect(m.get('pagoda_num_requests_waiting')).toBe(0);
    expect(m.get('pagoda_kv_cache_blocks', { state: 'used' })).toBe(0);
    // Every client that reached the engine was aborted: none ran to its end. (A client cut while its
    // body was still being read never becomes a sequence.)
    const aborts = m.get('pagoda_request_success_total', { finished_reason: 'abort' }) - abortsBefore;
    expect(aborts).toBeGreaterThanOrEqual(results.filter((r) => r.events.length > 0).length);
    expect(aborts).toBeLessThanOrEqual(100);
    for (const reason of ['stop', 'length'])
      expect(m.get('pagoda_request_success_total', { finished_reason: reason }, 0)).toBe(
        before.get('pagoda_request_success_total', { finished_reason: reason }, 0),
      );
  });
});

describe('load', () => {
  it('500 concurrent streaming requests, three rounds: no error, memory flat', { timeout: 420_000 }, async () => {
    const CONCURRENCY = 500;
    const MAX_TOKENS = 8;
    const rss: number[] = [];
    for (let round = 0; round < 3; round++) {
      const t0 = performance.now();
      const results = await Promise.all(
        Array.from({ length: CONCURRENCY }, (_, i) =>
          streamCompletion(server.url, {
            prompt: prompt(round * CONCURRENCY + i),
            max_tokens: MAX_TOKENS,
            ignore_eos: true,
            temperature: 0.7,
            stream_options: { include_usage: true },
          }),
        ),
      );
      const seconds = (performance.now() - t0) / 1000;
      const failures = results.filter((r) => r.status !== 200 || r.error !== undefined || !r.done);
      expect(failures.map((f) => `${f.status} ${f.error}`)).toEqual([]);
      for (const r of results) {
        const usage = r.events.at(-1)!.usage as { completion_tokens: number };
        expect(usage.completion_tokens).toBe(MAX_TOKENS);
      }
      const m = await waitForIdle(server.url);
      expect(m.get('pagoda_kv_cache_usage_ratio')).toBe(0);
      rss.push(m.get('pagoda_process_resident_memory_bytes'));
      console.log(
        `round ${round + 1}: ${CONCURRENCY} streams x ${MAX_TOKENS} tokens in ${seconds.toFixed(1)} s, server RSS ${(rss.at(-1)! / 2 ** 20).toFixed(0)} MiB`,
      );
    }
    // Flat: the third round does not grow beyond the first by more than a few allocator arenas.
    expect(rss[2]! - rss[0]!).toBeLessThan(48 * 2 ** 20);
  });
});
