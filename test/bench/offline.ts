/**
 * `npm run bench:offline -- --model DIR [--workload FILE] [--rounds N]`: offline throughput on the
 * nano-vllm benchmark workload (256 requests, prompt and output lengths uniform in [100, 1024],
 * temperature 0.6, ignore_eos): output tokens / wall time of the whole batch, prefill included — as
 * nano-vllm's bench.py computes it. Also prints the time from process start to a ready engine, and the
 * device memory after each round (a leak shows as a falling figure).
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
    '4096',
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

const mem = () => loadNative().deviceMemory?.();
for (let r = 1; r <= Number(values.rounds); r++) {
  const s = await round();
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
