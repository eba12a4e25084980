/**
 * `npm run bench:offline -- --model DIR [--workload FILE] [--rounds N] [--tensor-parallel-size N] [--max-model-len N] [--latency]`:
 * offline throughput on the
 * nano-vllm benchmark workload (256 requests, prompt and output lengths uniform in [100, 1024],
 * temperature 0.6, ignore_eos): output tokens / wall time of the whole batch, prefill included — as
 * nano-vllm's bench.py computes it. Also prints the time from process start to a ready engine, and the
 * device memory after each round (a leak shows as a falling figure). `--latency` first measures batch-1
 * decode latency: one greedy request (128 prompt tokens, 256 output tokens), time per output token after
 * the first. The last line is `RESULT {json}` with every figure, for drivers (bench:tp).
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { parseServeArgs } from '../../runtime/src/config.ts';
import type { Engine } from '../../runtime/src/engine/engine.ts';
import { defaultSamplingParams } from '../../runtime/src/engine/sampling-params.ts';
import { loadNative } from '../../runtime/src/native/index.ts';
import { startEngine } from '../../runtime/src/runtime.ts';

const here = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    workload: { type: 'string', default: join(here, '..', '..', '..', 'shared', 'bench', 'nano-vllm-bench.json') },
    rounds: { type: 'string', default: '3' },
    device: { type: 'string', default: 'cuda' },
    'max-num-seqs': { type: 'string', default: '256' },
    'max-num-batched-tokens': { type: 'string', default: '16384' },
    limit: { type: 'string' },
    'tensor-parallel-size': { type: 'string', default: '1' },
    'gpu-memory-utilization': { type: 'string', default: '0.9' },
    'max-model-len': { type: 'string', default: '4096' },
    latency: { type: 'boolean', default: false },
  },
});
if (!values.model) throw new Error('--model DIR is required');
const work = JSON.parse(readFileSync(values.workload!, 'utf8')) as {
  prompts: number[][];
  max_tokens: number[];
  temperature: number;
};
const n = values.limit ? Number(values.limit) : work.prompts.length;
const prompts = work.prompts.slice(0, n);
const maxTokens = work.max_tokens.slice(0, n);
const total = maxTokens.reduce((a, b) => a + b, 0);

const cfg = parseServeArgs(
  [
    '--model',
    values.model,
    '--device',
    values.device!,
    '--max-num-seqs',
    values['max-num-seqs']!,
    '--max-num-batched-tokens',
    values['max-num-batched-tokens']!,
    '--max-model-len',
    values['max-model-len']!,
    '--tensor-parallel-size',
    values['tensor-parallel-size']!,
    '--gpu-memory-utilization',
    values['gpu-memory-utilization']!,
  ],
  {},
);
const started = await startEngine(cfg);
const ready = performance.now() / 1000; // seconds since process start
const engine: Engine = started.engine;
console.log(
  `engine ready ${ready.toFixed(2)} s after process start (${engine.info.device}; KV cache ${engine.info.numBlocks * engine.info.blockSize} tokens)`,
);

// Where the time goes: seconds inside native steps (the engine awaiting the GPU) vs the rest.
let stepSeconds = 0;
let steps = 0;
let stepTokens = 0;
engine.setObserver({
  onStep: (s) => {
    stepSeconds += s.seconds;
    steps++;
    stepTokens += s.numTokens;
  },
});

async function round(): Promise<number> {
  stepSeconds = 0;
  steps = 0;
  stepTokens = 0;
  const t0 = performance.now();
  await Promise.all(
    prompts.map(async (prompt, i) => {
      const params = defaultSamplingParams({
        temperature: work.temperature,
        maxTokens: maxTokens[i]!,
        ignoreEos: true,
        detokenize: false,
      });
      for await (const _ of engine.generate({ prompt, params })) {
        // tokens only
      }
    }),
  );
  return (performance.now() - t0) / 1000;
}

/** Batch 1: seconds per output token after the first (the decode latency a single user sees). */
async function batchOneLatency(): Promise<number> {
  const prompt = Array.from({ length: 128 }, (_, i) => (i * 7919 + 13) % 32000);
  const params = defaultSamplingParams({ temperature: 0, maxTokens: 256, ignoreEos: true, detokenize: false });
  let first = 0;
  let n = 0;
  for await (const ev of engine.generate({ prompt, params })) {
    if (n === 0) first = performance.now();
    n += ev.tokenIds.length;
  }
  return (performance.now() - first) / 1000 / (n - 1);
}

const result: { tp: number; readySeconds: number; latencyMs?: number; tokPerSec: number[] } = {
  tp: Number(values['tensor-parallel-size']),
  readySeconds: ready,
  tokPerSec: [],
};
if (values.latency) {
  await batchOneLatency(); // warm-up
  const lat = Math.min(await batchOneLatency(), await batchOneLatency());
  result.latencyMs = lat * 1e3;
  console.log(`batch-1 decode latency: ${(lat * 1e3).toFixed(3)} ms per token (best of 2 runs of 256 tokens)`);
}

const mem = () => loadNative().deviceMemory?.();
for (let r = 1; r <= Number(values.rounds); r++) {
  const s = await round();
  result.tokPerSec.push(total / s);
  const m = mem();
  console.log(
    `round ${r}: ${prompts.length} requests, ${total} output tokens in ${s.toFixed(2)} s = ${(total / s).toFixed(0)} tok/s` +
      (m ? `; GPU memory free ${(m.free / 2 ** 30).toFixed(3)} GiB` : ''),
  );
  console.log(
    `  ${steps} steps (${(stepTokens / steps).toFixed(0)} tokens each on average), ${stepSeconds.toFixed(2)} s inside native steps ` +
      `(${((stepSeconds / s) * 100).toFixed(0)}%), ${(((s - stepSeconds) / steps) * 1e3).toFixed(2)} ms per step outside`,
  );
}
engine.close();
console.log(`RESULT ${JSON.stringify(result)}`);
