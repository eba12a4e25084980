/**
 * `npm run bench:cpu`: decode tokens/s of the default model on the CPU backend, single stream and
 * 8 concurrent streams, and in the same run llama.cpp's on the same GGUF file with the same threads.
 *   BENCH_TOKENS (default 128)  BENCH_STREAMS (default 8)  BENCH_THREADS (default: all cores)
 */
import { spawnSync } from 'node:child_process';
import { availableParallelism, cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseServeArgs } from '../../runtime/src/config.ts';
import type { Engine } from '../../runtime/src/engine/engine.ts';
import { defaultSamplingParams } from '../../runtime/src/engine/sampling-params.ts';
import { ensureDefaultModel } from '../../runtime/src/model/default-model.ts';
import { startEngine } from '../../runtime/src/runtime.ts';
import { referenceVenv } from '../../scripts/fixtures.ts';

const here = dirname(fileURLToPath(import.meta.url));
const tokens = Number(process.env.BENCH_TOKENS ?? 128);
const streams = Number(process.env.BENCH_STREAMS ?? 8);
const threads = Number(process.env.BENCH_THREADS ?? availableParallelism());

/** Decode tokens/s over `n` concurrent greedy streams (first token, i.e. prefill, excluded). */
async function pagoda(engine: Engine, prompt: number[], n: number): Promise<number> {
  const params = defaultSamplingParams({ temperature: 0, maxTokens: tokens + 1, ignoreEos: true });
  const firsts: number[] = [];
  let last = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      let first = true;
      for await (const _ of engine.generate({ prompt, params })) {
        if (first) {
          firsts.push(performance.now());
          first = false;
        }
        last = performance.now();
      }
    }),
  );
  return (n * tokens) / ((last - Math.max(...firsts)) / 1000);
}

const model = await ensureDefaultModel({ log: console.error });
const cfg = parseServeArgs(
  ['--model', model, '--device', 'cpu', '--threads', String(threads), '--max-num-seqs', String(Math.max(streams, 8))],
  {},
);
const { engine } = await startEngine(cfg);
const prompt = engine.model.tokenizer.encode('Write a long story about a lighthouse keeper and the sea.');
await pagoda(engine, prompt, 1); // warm-up
const ours = { single: await pagoda(engine, prompt, 1), multi: await pagoda(engine, prompt, streams) };
engine.close();

const python = referenceVenv();
const r = spawnSync(
  python,
  [join(here, 'llamacpp_bench.py'), model, String(threads), String(streams), String(tokens), JSON.stringify(prompt)],
  {
    encoding: 'utf8',
  },
);
if (r.status !== 0) throw new Error(`llama.cpp bench failed:\n${r.stderr}`);
const ref = JSON.parse(r.stdout.trim().split('\n').pop()!) as { single: number; multi: number; version: string };

const cpu = cpus()[0]?.model ?? 'unknown CPU';
console.log(
  `CPU: ${cpu}, ${threads} threads; model SmolLM2-135M-Instruct Q4_1 (${engine.info.weightDtype} weights in Pagoda); ${tokens} new tokens, greedy`,
);
console.log(`| engine | 1 stream tok/s | ${streams} streams tok/s |`);
console.log('|---|---|---|');
console.log(`| Pagoda (${engine.info.device}) | ${ours.single.toFixed(1)} | ${ours.multi.toFixed(1)} |`);
console.log(`| llama.cpp (llama-cpp-python ${ref.version}) | ${ref.single.toFixed(1)} | ${ref.multi.toFixed(1)} |`);
console.log(
  `| Pagoda / llama.cpp | ${(ours.single / ref.single).toFixed(2)} | ${(ours.multi / ref.multi).toFixed(2)} |`,
);
