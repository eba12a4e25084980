/**
 * The HTTP server on the CUDA backend, end to end: `pagoda serve --device cuda` on a model directory,
 * completions and 32 concurrent streaming chat completions, the metrics contract, KV blocks returned,
 * and a clean SIGTERM exit. Prints one line per check; exits non-zero if any fails.
 * Usage: node test/gpu/serve-smoke.ts MODEL_DIR
 */
import { spawnServe } from '../helpers/server.ts';

let failures = 0;
const line = (ok: boolean, what: string, detail = '') => {
  if (!ok) failures++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what.padEnd(60)} ${detail}`);
};

const dir = process.argv[2];
if (!dir) throw new Error('usage: serve-smoke.ts MODEL_DIR');
const server = await spawnServe([
  '--model',
  dir,
  '--device',
  'cuda',
  '--max-num-seqs',
  '32',
  '--max-model-len',
  '2048',
]);
const url = server.url;
const post = (path: string, body: unknown) =>
  fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });

try {
  line((await fetch(`${url}/health/ready`)).status === 200, 'ready');
  const c = (await (
    await post('/v1/completions', { prompt: [11, 22, 33, 44, 55], max_tokens: 16, temperature: 0, ignore_eos: true })
  ).json()) as {
    usage: { completion_tokens: number };
  };
  line(c.usage?.completion_tokens === 16, 'completion of 16 tokens', JSON.stringify(c.usage));

  const streams = await Promise.all(
    Array.from({ length: 32 }, async (_, i) => {
      const r = await post('/v1/chat/completions', {
        messages: [{ role: 'user', content: `Hello number ${i}` }],
        max_tokens: 24,
        temperature: 0.7,
        seed: i,
        stream: true,
        ignore_eos: true,
      });
      const text = await r.text();
      return r.status === 200 && text.trimEnd().endsWith('data: [DONE]') && !text.includes('"error"');
    }),
  );
  line(
    streams.every(Boolean),
    '32 concurrent streaming chat completions',
    `${streams.filter(Boolean).length}/32 complete`,
  );

  await new Promise((r) => setTimeout(r, 300));
  const metrics = await (await fetch(`${url}/metrics`)).text();
  const value = (name: string) =>
    Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(metrics)?.[1] ?? Number.NaN);
  line(
    value('pagoda_kv_cache_capacity_tokens') > 0,
    'KV capacity exported',
    String(value('pagoda_kv_cache_capacity_tokens')),
  );
  line(
    value('pagoda_kv_cache_usage_ratio') === 0 && value('pagoda_num_requests_running') === 0,
    'every KV block returned',
  );
  line(/pagoda_info\{[^}]*device="cuda/.test(metrics), 'metrics name the CUDA device');
} finally {
  server.child.kill('SIGTERM');
  const code = await server.exited;
  line(code === 0, 'SIGTERM: clean exit', `exit code ${code}`);
}
console.log(`serve smoke: ${failures === 0 ? 'all passed' : `${failures} failed`}`);
process.exitCode = failures === 0 ? 0 : 1;
