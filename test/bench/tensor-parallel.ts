/**
 * `npm run bench:tp -- --model DIR [--sizes 1,2] [--rounds 1] [--workload FILE] [--max-model-len N]`: the same model at each
 * tensor-parallel size, one after another in one run: batch-1 decode latency and offline throughput on
 * the nano-vllm workload (bench:offline --latency in a child process per size, so each starts with
 * clean GPUs), then each figure as a ratio to TP=1.
 */
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    sizes: { type: 'string', default: '1,2' },
    rounds: { type: 'string', default: '1' },
    workload: { type: 'string' },
    'max-model-len': { type: 'string' },
  },
});
if (!values.model) throw new Error('--model DIR is required');

interface Result {
  tp: number;
  readySeconds: number;
  latencyMs: number;
  tokPerSec: number[];
}

function runOne(tp: number): Promise<Result> {
  const args = [join(here, 'offline.ts'), '--model', values.model!, '--tensor-parallel-size', String(tp), '--latency'];
  args.push('--rounds', values.rounds!);
  if (values.workload) args.push('--workload', values.workload);
  if (values['max-model-len']) args.push('--max-model-len', values['max-model-len']);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      process.stdout.write(d.toString().replace(/^(?=.)/gm, `[TP=${tp}] `));
    });
    child.on('exit', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('RESULT '));
      if (code !== 0 || !line) reject(new Error(`bench:offline at TP=${tp} failed (exit ${code})`));
      else resolve(JSON.parse(line.slice(7)) as Result);
    });
  });
}

const results: Result[] = [];
for (const tp of values.sizes!.split(',').map(Number)) results.push(await runOne(tp));
const base = results.find((r) => r.tp === 1);
const best = (r: Result) => Math.max(...r.tokPerSec);
console.log('\nTP  ready (s)  batch-1 ms/token  vs TP=1   throughput tok/s  vs TP=1');
for (const r of results) {
  const lat = base ? (r.latencyMs / base.latencyMs).toFixed(3) : '-';
  const thr = base ? (best(r) / best(base)).toFixed(3) : '-';
  console.log(
    `${String(r.tp).padEnd(4)}${r.readySeconds.toFixed(2).padStart(9)}  ${r.latencyMs.toFixed(3).padStart(16)}  ${lat.padStart(7)}` +
      `  ${best(r).toFixed(0).padStart(16)}  ${thr.padStart(7)}`,
  );
}
