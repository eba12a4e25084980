/**
 * Lifecycle of a real `pagoda serve` process:
 * - SIGTERM: readiness turns 503 at once, new requests get 503, in-flight requests complete, exit 0
 *   within the drain timeout; past the drain timeout, remaining requests are cut and it still exits 0;
 * - a fatal engine error (injected with PAGODA_FAULT_INJECT): callers get 500s, liveness fails and the
 *   process exits non-zero.
 */
import OpenAI from 'openai';
import { describe, expect, it } from 'vitest';
import { defaultModelPath } from '../helpers/default-engine.ts';
import { spawnServe } from '../helpers/server.ts';
import { streamCompletion } from '../helpers/sse.ts';

const base = async () => ['--model', await defaultModelPath(), '--device', 'cpu'];

async function post(url: string, path: string, body: unknown): Promise<Response> {
  return fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

describe('SIGTERM', () => {
  it('turns not-ready at once, refuses new work, finishes in-flight requests and exits 0', async () => {
    const server = await spawnServe([...(await base()), '--drain-timeout', '60']);
    let first!: () => void;
    const started = new Promise<void>((resolve) => {
      first = resolve;
    });
    const inFlight = streamCompletion(
      server.url,
      { prompt: 'Count to a hundred:', max_tokens: 48, ignore_eos: true, temperature: 0 },
      {
        onEvent: (_, i) => {
          if (i === 0) first();
          return undefined;
        },
      },
    );
    const unstreamed = post(server.url, '/v1/completions', { prompt: 'Hello', max_tokens: 32, ignore_eos: true });
    await started;
    const t0 = Date.now();
    server.child.kill('SIGTERM');
    // readiness flips at once; the server still answers while it drains
    await expect.poll(async () => (await fetch(`${server.url}/health/ready`)).status, { timeout: 2000 }).toBe(503);
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
    const refused = await post(server.url, '/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }] });
    expect(refused.status).toBe(503);
    expect(((await refused.json()) as { error: { message: string } }).error.message).toMatch(/shutting down/);
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'x', maxRetries: 0 });
    expect(await client.completions.create({ model: '', prompt: 'hi' }).catch((e: unknown) => e)).toBeInstanceOf(
      OpenAI.InternalServerError,
    );
    const done = await inFlight;
    expect(done.error).toBeUndefined();
    expect(done.done).toBe(true);
    expect((done.events.at(-1)!.choices as { finish_reason: string }[])[0]!.finish_reason).toBe('length');
    const whole = await unstreamed;
    expect(whole.status).toBe(200);
    expect(((await whole.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(32);
    expect(await server.exited).toBe(0);
    expect(Date.now() - t0).toBeLessThan(60_000);
    expect(server.stderr()).toMatch(/SIGTERM: draining 2 in-flight request\(s\)/);
  });

  it('cuts what is still running at the drain timeout, and still exits 0', async () => {
    const server = await spawnServe([...(await base()), '--drain-timeout', '1']);
    let first!: () => void;
    const started = new Promise<void>((resolve) => {
      first = resolve;
    });
    const endless = streamCompletion(
      server.url,
      { prompt: 'Count:', max_tokens: 5000, ignore_eos: true },
      {
        onEvent: (_, i) => {
          if (i === 0) first();
          return undefined;
        },
      },
    );
    await started;
    const t0 = Date.now();
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
    expect(Date.now() - t0).toBeLessThan(10_000);
    const r = await endless;
    expect(r.done).toBe(false);
    expect(server.stderr()).toMatch(/drain timeout: cutting 1 request/);
  });
});

describe('fatal engine error', () => {
  it('answers 500 to the callers in flight, fails liveness and exits non-zero', async () => {
    // warm-up takes 2 steps; the next request's 4th step fails
    const server = await spawnServe([...(await base())], { PAGODA_FAULT_INJECT: 'step-error-after:5' });
    const body = { prompt: 'Hello there', max_tokens: 50, ignore_eos: true };
    const [plain, chat, stream] = await Promise.all([
      post(server.url, '/v1/completions', body),
      post(server.url, '/v1/chat/completions', {
        messages: [{ role: 'user', content: 'hi' }],
        max_tokens: 50,
        ignore_eos: true,
      }),
      streamCompletion(server.url, body),
    ]);
    for (const r of [plain, chat]) {
      expect(r.status).toBe(500);
      const e = ((await r.json()) as { error: { message: string; type: string } }).error;
      expect(e.type).toBe('server_error');
      expect(e.message).toMatch(/engine failed/);
      expect(e.message).not.toMatch(/injected|native step/); // internals stay in the log
    }
    expect(stream.status).toBe(200);
    const last = stream.events.at(-1) as { error?: { type: string } };
    expect(last.error?.type).toBe('server_error');
    // liveness fails (the kubelet would restart it even if it did not exit), new work is refused
    const health = await fetch(`${server.url}/health`);
    expect(health.status).toBe(500);
    expect(await health.json()).toEqual({ status: 'failed', reason: expect.stringMatching(/injected fault/) });
    expect((await post(server.url, '/v1/completions', body)).status).toBe(503);
    const code = await server.exited;
    expect(code).not.toBe(0);
    expect(code).not.toBeNull();
    expect(server.stderr()).toMatch(/fatal engine error: injected fault/);
  });
});
