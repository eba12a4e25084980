/**
 * The vLLM-style flags take effect on a real `pagoda serve` process (observed through the API and
 * /metrics): served model name, context length, block size, batch limits, prefix caching off, API key,
 * host; and a context longer than the model's is refused at startup.
 */
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.ts';
import { defaultModelPath } from '../helpers/default-engine.ts';
import { scrape, waitForIdle } from '../helpers/metrics.ts';
import { type ServeProcess, spawnServe } from '../helpers/server.ts';
import { streamCompletion } from '../helpers/sse.ts';

let server: ServeProcess;
let client: OpenAI;

beforeAll(async () => {
  server = await spawnServe(
    [
      '--model',
      await defaultModelPath(),
      '--device',
      'cpu',
      '--host',
      '127.0.0.1',
      '--served-model-name',
      'tiny-chat',
      '--max-model-len',
      '512',
      '--block-size',
      '32',
      '--max-num-seqs',
      '3',
      '--max-num-batched-tokens',
      '64',
      '--no-enable-prefix-caching',
      '--tensor-parallel-size',
      '1',
      '--gpu-memory-utilization',
      '0.5',
    ],
    { PAGODA_API_KEY: 'from-env' },
  );
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'from-env', maxRetries: 0 });
});
afterAll(async () => {
  server?.child.kill('SIGTERM');
  await server?.exited;
});

describe('serve flags', () => {
  it('--served-model-name, --max-model-len, --host and the API key from the environment', async () => {
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['tiny-chat']);
    expect((models.data[0] as unknown as { max_model_len: number }).max_model_len).toBe(512);
    const r = await client.completions.create({ model: 'tiny-chat', prompt: 'Hi', max_tokens: 2 });
    expect(r.model).toBe('tiny-chat');
    const denied = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'nope', maxRetries: 0 });
    expect(await denied.models.list().catch((e: unknown) => e)).toBeInstanceOf(OpenAI.AuthenticationError);
    const tooLong = await client.completions
      .create({ model: 'tiny-chat', prompt: 'Hi', max_tokens: 600 })
      .catch((e: unknown) => e);
    expect((tooLong as Error).message).toMatch(/maximum context length is 512 tokens/);
  });

  it('--block-size and --device show in pagoda_info; --no-enable-prefix-caching means no lookups', async () => {
    const prompt = 'A prompt long enough to fill two blocks of thirty-two tokens each, said twice. '.repeat(2);
    const a = await scrape(server.url);
    expect(a.samples.find((s) => s.name === 'pagoda_info')!.labels).toMatchObject({
      block_size: '32',
      model_name: 'tiny-chat',
      device: expect.stringMatching(/^cpu/),
    });
    await client.completions.create({ model: 'tiny-chat', prompt, max_tokens: 1 });
    await client.completions.create({ model: 'tiny-chat', prompt, max_tokens: 1 });
    const b = await scrape(server.url);
    expect(b.get('pagoda_prefix_cache_queries_total')).toBe(a.get('pagoda_prefix_cache_queries_total'));
    expect(b.get('pagoda_prefix_cache_hits_total')).toBe(0);
    expect(b.get('pagoda_kv_cache_blocks', { state: 'cached' })).toBe(0);
  });

  it('--max-num-batched-tokens chunks a long prompt; --max-num-seqs caps the batch', async () => {
    const prompt = Array.from({ length: 300 }, (_, i) => 100 + i);
    const a = await scrape(server.url);
    await client.completions.create({ model: 'tiny-chat', prompt, max_tokens: 1 });
    const b = await scrape(server.url);
    // 300 prompt tokens at 64 per step: 5 steps, the last of which samples the only token
    expect(b.get('pagoda_engine_steps_total') - a.get('pagoda_engine_steps_total')).toBe(5);
    let maxRunning = 0;
    let maxWaiting = 0;
    let polling = true;
    const poll = (async () => {
      while (polling) {
        const m = await scrape(server.url);
        maxRunning = Math.max(maxRunning, m.get('pagoda_num_requests_running'));
        maxWaiting = Math.max(maxWaiting, m.get('pagoda_num_requests_waiting'));
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const streams = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        streamCompletion(
          server.url,
          { prompt: `Item ${i}`, max_tokens: 24, ignore_eos: true },
          { headers: { authorization: 'Bearer from-env' } },
        ),
      ),
    );
    polling = false;
    await poll;
    for (const s of streams) expect(s.done).toBe(true);
    expect(maxRunning).toBe(3);
    expect(maxWaiting).toBeGreaterThan(0);
    await waitForIdle(server.url);
  });

  it('refuses a --max-model-len beyond the model at startup, in one line', async () => {
    const r = runCli(['serve', '--model', await defaultModelPath(), '--device', 'cpu', '--max-model-len', '100000']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/--max-model-len 100000 is longer than the model's context \(8192 positions/);
  });
});
