/**
 * `npm run bench:serve`: an online serving benchmark in the manner of `vllm bench serve`, plus the
 * serving overhead against the offline engine on the same workload.
 *
 * Starts `pagoda serve` (or targets --url), sends --num-prompts streaming completions of random token
 * ids (--input-len tokens, --output-len generated with ignore_eos, greedy) at --max-concurrency or at a
 * Poisson --request-rate, and reports request throughput, output tokens/s, TTFT, TPOT and ITL. Then runs
 * the same prompts and lengths straight through the Engine API in this process, with the same engine
 * flags and the same concurrency, and reports the server's overhead: 1 - served tok/s / offline tok/s.
 *
 *   npm run bench:serve -- [--num-prompts 64] [--input-len 128] [--output-len 64]
 *     [--max-concurrency 16 | --request-rate 4] [--repeat 2] [--seed 0] [--url http://host:port]
 *     [--no-offline] [engine flags for both sides: --max-num-seqs 32 --max-num-batched-tokens 512 --threads N
 *     --no-async-scheduling]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { availableParallelism, cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { parseServeArgs } from '../../runtime/src/config.ts';
import type { Engine } from '../../runtime/src/engine/engine.ts';
import { defaultSamplingParams } from '../../runtime/src/engine/sampling-params.ts';
import { ensureDefaultModel } from '../../runtime/src/model/default-model.ts';
import { startEngine } from '../../runtime/src/runtime.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

const { values: flags } = parseArgs({
  options: {
    'num-prompts': { type: 'string', default: '64' },
    'input-len': { type: 'string', default: '128' },
    'output-len': { type: 'string', default: '64' },
    'max-concurrency': { type: 'string' },
    'request-rate': { type: 'string' },
    repeat: { type: 'string', default: '1' },
    seed: { type: 'string', default: '0' },
    url: { type: 'string' },
    'no-offline': { type: 'boolean', default: false },
    model: { type: 'string' },
    'max-num-seqs': { type: 'string', default: '32' },
    'max-num-batched-tokens': { type: 'string', default: '512' },
    threads: { type: 'string', default: String(availableParallelism()) },
    'no-async-scheduling': { type: 'boolean', default: false },
  },
  strict: true,
});

const numPrompts = Number(flags['num-prompts']);
const inputLen = Number(flags['input-len']);
const outputLen = Number(flags['output-len']);
const requestRate = flags['request-rate'] === undefined ? Number.POSITIVE_INFINITY : Number(flags['request-rate']);
const maxConcurrency =
  flags['max-concurrency'] === undefined
    ? Number.isFinite(requestRate)
      ? numPrompts
      : 16
    : Number(flags['max-concurrency']);
const repeat = Number(flags.repeat);

/** mulberry32: a small seeded generator, so the workload is the same on every run */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const random = rng(Number(flags.seed));
// Random token ids as vLLM's random dataset does; ids in [1000, 10000) are ordinary text pieces.
const prompts = Array.from({ length: numPrompts }, () =>
  Array.from({ length: inputLen }, () => 1000 + Math.floor(random() * 9000)),
);
// Poisson arrivals: exponential gaps at the request rate (all at once when the rate is infinite).
const arrivals: number[] = [];
for (let i = 0, t = 0; i < numPrompts; i++) {
  arrivals.push(t);
  if (Number.isFinite(requestRate)) t += -Math.log(1 - random()) / requestRate;
}

interface RequestStats {
  ok: boolean;
  error?: string;
  ttft: number;
  itls: number[];
  latency: number;
  outputTokens: number;
}

interface RunStats {
  duration: number;
  requests: RequestStats[];
  /** CPU seconds the serving side used (the server process, or this process for the offline engine) */
  cpuSeconds: number;
}

/** Runs `fn` for every prompt at its arrival time, at most `maxConcurrency` at once. */
async function drive(fn: (i: number) => Promise<RequestStats>, cpu: () => Promise<number>): Promise<RunStats> {
  const cpu0 = await cpu();
  const t0 = performance.now();
  const results: RequestStats[] = new Array(numPrompts);
  let next = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= numPrompts) return;
      const wait = arrivals[i]! * 1000 - (performance.now() - t0);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      results[i] = await fn(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(maxConcurrency, numPrompts) }, worker));
  const duration = (performance.now() - t0) / 1000;
  return { duration, requests: results, cpuSeconds: (await cpu()) - cpu0 };
}

/** This process's CPU time, all threads (the offline engine's native workers included). */
const ownCpu = async () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

/** The server's CPU time, from its /metrics. */
const serverCpu = (url: string) => async () => {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = /^pagoda_process_cpu_seconds_total\S* (\S+)$/m.exec(text);
  if (!m) throw new Error('the server does not expose pagoda_process_cpu_seconds_total');
  return Number(m[1]);
};

async function servedRequest(url: string, i: number): Promise<RequestStats> {
  const start = performance.now();
  const stats: RequestStats = { ok: false, ttft: 0, itls: [], latency: 0, outputTokens: 0 };
  try {
    const r = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        prompt: prompts[i],
        max_tokens: outputLen,
        ignore_eos: true,
        temperature: 0,
        stream: true,
        stream_options: { include_usage: true },
      }),
    });
    if (r.status !== 200 || !r.body) throw new Error(`HTTP ${r.status}: ${await r.text()}`);
    const decoder = new TextDecoder();
    let buffer = '';
    let last = start;
    let first = true;
    for await (const chunk of r.body) {
      buffer += decoder.decode(chunk as Uint8Array, { stream: true });
      for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
        const data = buffer.slice(6, end);
        buffer = buffer.slice(end + 2);
        if (data === '[DONE]') continue;
        const ev = JSON.parse(data) as { choices: { text: string }[]; usage?: { completion_tokens: number } | null };
        if (ev.usage) stats.outputTokens = ev.usage.completion_tokens;
        if (ev.choices.length === 0) continue;
        const t = performance.now();
        if (first) stats.ttft = (t - start) / 1000;
        else stats.itls.push((t - last) / 1000);
        first = false;
        last = t;
      }
    }
    stats.latency = (performance.now() - start) / 1000;
    stats.ok = stats.outputTokens === outputLen;
    if (!stats.ok) stats.error = `got ${stats.outputTokens} tokens`;
  } catch (e) {
    stats.error = (e as Error).message;
  }
  return stats;
}

async function offlineRequest(engine: Engine, i: number): Promise<RequestStats> {
  const start = performance.now();
  const stats: RequestStats = { ok: true, ttft: 0, itls: [], latency: 0, outputTokens: 0 };
  let last = start;
  const params = defaultSamplingParams({ temperature: 0, maxTokens: outputLen, ignoreEos: true });
  for await (const ev of engine.generate({ prompt: prompts[i]!, params })) {
    const t = performance.now();
    if (stats.outputTokens === 0) stats.ttft = (t - start) / 1000;
    else stats.itls.push((t - last) / 1000);
    last = t;
    stats.outputTokens += ev.tokenIds.length;
  }
  stats.latency = (performance.now() - start) / 1000;
  return stats;
}

const engineArgs = [
  '--device',
  'cpu',
  '--max-num-seqs',
  flags['max-num-seqs']!,
  '--max-num-batched-tokens',
  flags['max-num-batched-tokens']!,
  '--threads',
  flags.threads!,
  ...(flags['no-async-scheduling'] ? ['--no-async-scheduling'] : []),
];

async function startServer(model: string): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(
    process.execPath,
    [join(ROOT, 'runtime', 'src', 'cli.ts'), 'serve', '--port', '0', '--model', model, ...engineArgs],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let err = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      const m = /ready: (http:\/\/\S+)\/v1/.exec(err);
      if (m) resolve(m[1]!);
    });
    child.on('exit', (code) => reject(new Error(`pagoda serve exited with ${code}:\n${err}`)));
  });
  return { url, child };
}

function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

interface Summary {
  cpuSeconds: number;
  ok: number;
  failed: number;
  duration: number;
  outputTokens: number;
  reqPerS: number;
  outTokPerS: number;
  ttft: number[];
  tpot: number[];
  itl: number[];
  latency: number[];
}

function summarize(run: RunStats): Summary {
  const ok = run.requests.filter((r) => r.ok);
  const outputTokens = ok.reduce((a, r) => a + r.outputTokens, 0);
  return {
    cpuSeconds: run.cpuSeconds,
    ok: ok.length,
    failed: run.requests.length - ok.length,
    duration: run.duration,
    outputTokens,
    reqPerS: ok.length / run.duration,
    outTokPerS: outputTokens / run.duration,
    ttft: ok.map((r) => r.ttft),
    tpot: ok.filter((r) => r.outputTokens > 1).map((r) => (r.latency - r.ttft) / (r.outputTokens - 1)),
    itl: ok.flatMap((r) => r.itls),
    latency: ok.map((r) => r.latency),
  };
}

const line = (label: string, value: string | number) =>
  console.log(`${label.padEnd(42)}${typeof value === 'number' ? value.toFixed(2) : value}`);
const ms = (xs: number[], label: string) => {
  line(`Mean ${label} (ms):`, mean(xs) * 1000);
  line(`Median ${label} (ms):`, percentile(xs, 50) * 1000);
  line(`P99 ${label} (ms):`, percentile(xs, 99) * 1000);
};

async function main(): Promise<void> {
  const model = flags.model ?? (await ensureDefaultModel({ log: console.error }));
  const served: Summary[] = [];
  const offline: Summary[] = [];
  for (let round = 0; round < repeat; round++) {
    if (!flags['no-offline']) {
      const { engine } = await startEngine(parseServeArgs(['--model', model, ...engineArgs], {}));
      offline.push(summarize(await drive((i) => offlineRequest(engine, i), ownCpu)));
      engine.close();
      console.error(`round ${round + 1}: offline ${offline.at(-1)!.outTokPerS.toFixed(1)} tok/s`);
    }
    let server: { url: string; child?: ChildProcess } = { url: flags.url ?? '' };
    if (!flags.url) server = await startServer(model);
    try {
      served.push(summarize(await drive((i) => servedRequest(server.url, i), serverCpu(server.url))));
    } finally {
      server.child?.kill('SIGTERM');
    }
    console.error(`round ${round + 1}: served ${served.at(-1)!.outTokPerS.toFixed(1)} tok/s`);
  }
  // the best round of each: the machine may be shared, and interference only ever slows a run down
  const best = (xs: Summary[]) => xs.reduce((a, b) => (b.outTokPerS > a.outTokPerS ? b : a));
  const s = best(served);
  const rate = Number.isFinite(requestRate) ? `${requestRate} req/s (Poisson)` : 'inf';
  console.log('============ Serving Benchmark Result ============');
  line('Hardware:', `${cpus()[0]?.model ?? 'unknown CPU'} (${cpus().length} cores), ${flags.threads} engine threads`);
  line('Engine:', engineArgs.join(' '));
  line('Workload:', `${numPrompts} prompts x ${inputLen} in / ${outputLen} out, greedy, ignore_eos`);
  line('Request rate / max concurrency:', `${rate} / ${maxConcurrency}`);
  line('Successful requests:', String(s.ok));
  line('Failed requests:', String(s.failed));
  line('Benchmark duration (s):', s.duration);
  line('Total input tokens:', String(s.ok * inputLen));
  line('Total generated tokens:', String(s.outputTokens));
  line('Request throughput (req/s):', s.reqPerS);
  line('Output token throughput (tok/s):', s.outTokPerS);
  line('Total token throughput (tok/s):', (s.outputTokens + s.ok * inputLen) / s.duration);
  console.log('---------------Time to First Token----------------');
  ms(s.ttft, 'TTFT');
  console.log('-----Time per Output Token (excl. 1st token)------');
  ms(s.tpot, 'TPOT');
  console.log('---------------Inter-token Latency----------------');
  ms(s.itl, 'ITL');
  if (offline.length > 0) {
    const o = best(offline);
    console.log('-------Offline engine (same workload, in-process)--');
    line('Output token throughput (tok/s):', o.outTokPerS);
    line('Mean TTFT (ms):', mean(o.ttft) * 1000);
    line('Median ITL (ms):', percentile(o.itl, 50) * 1000);
    const pct = (x: number) => `${(x * 100).toFixed(1)} %`;
    // Rounds alternate offline and served, so each pair saw about the same machine: the median of the
    // pairs' ratios is the figure least moved by other load; best-against-best is shown beside it.
    const ratios = served.map((x, i) => x.outTokPerS / offline[i]!.outTokPerS);
    line('Serving overhead, median of rounds:', pct(1 - percentile(ratios, 50)));
    line('Serving overhead, best vs best:', pct(1 - s.outTokPerS / o.outTokPerS));
    // CPU time is what serving adds to the work itself (HTTP, JSON, SSE), whatever else the machine runs.
    const cpuServed = percentile(
      served.map((x) => x.cpuSeconds),
      50,
    );
    const cpuOffline = percentile(
      offline.map((x) => x.cpuSeconds),
      50,
    );
    line('CPU seconds, server / offline (median):', `${cpuServed.toFixed(1)} / ${cpuOffline.toFixed(1)}`);
    line('Serving overhead in CPU time:', pct(cpuServed / cpuOffline - 1));
    line(
      'Rounds (offline / served tok/s):',
      offline.map((x, i) => `${x.outTokPerS.toFixed(1)}/${served[i]?.outTokPerS.toFixed(1)}`).join(' '),
    );
  }
  console.log('==================================================');
  if (s.failed > 0) process.exitCode = 1;
}

await main();
