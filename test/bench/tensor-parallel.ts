/**
 * `npm run bench:tp -- --model DIR [--sizes 1,2] [--all-reduce auto,nccl] [--variant NAME:VAR=V,...] [--rounds 1] [--workload FILE] [--max-model-len N]`:
 * the same model at each tensor-parallel size, one after another in one run: batch-1 decode latency and
 * offline throughput on the nano-vllm workload (bench:offline --latency in a child process per size, so
 * each starts with clean GPUs), then each figure as a ratio to TP=1. `--all-reduce` runs each size > 1
 * once per all-reduce mode (PAGODA_TP_ALL_REDUCE: auto = one-shot peer-to-peer for small tensors, nccl =
 * NCCL only), to compare them in the same run. `--variant` (repeatable) runs every size once more per
 * variant with those environment variables, e.g. `--variant before:PAGODA_LINEAR=cublas,PAGODA_PROJ_DTYPE=f32`
 * to compare an engine setting against the defaults (the variant named `default`, always run first).
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
    'all-reduce': { type: 'string', default: 'auto' },
    variant: { type: 'string', multiple: true, default: [] },
  },
});

interface Variant {
  name: string;
  env: Record<string, string>;
}
const variants: Variant[] = [{ name: 'default', env: {} }];
for (const spec of values.variant!) {
  const [name, vars = ''] = spec.split(':', 2) as [string, string?];
  const env: Record<string, string> = {};
  for (const kv of vars.split(',').filter(Boolean)) {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw new Error(`--variant ${spec}: expected NAME:VAR=VALUE,VAR=VALUE`);
    env[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  variants.push({ name, env });
}
if (!values.model) throw new Error('--model DIR is required');

interface Result {
  tp: number;
  mode: string;
  readySeconds: number;
  latencyMs: number;
  tokPerSec: number[];
  variant: string;
}

function runOne(tp: number, mode: string, variant: Variant): Promise<Result> {
  const label = `${tp > 1 ? `TP=${tp} ${mode}` : 'TP=1'} ${variant.name}`;
  const args = [join(here, 'offline.ts'), '--model', values.model!, '--tensor-parallel-size', String(tp), '--latency'];
  args.push('--rounds', values.rounds!);
  if (values.workload) args.push('--workload', values.workload);
  if (values['max-model-len']) args.push('--max-model-len', values['max-model-len']);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, PAGODA_TP_ALL_REDUCE: mode, ...variant.env },
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      process.stdout.write(d.toString().replace(/^(?=.)/gm, `[${label}] `));
    });
    child.on('exit', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('RESULT '));
      if (code !== 0 || !line) reject(new Error(`bench:offline at ${label} failed (exit ${code})`));
      else
        resolve({
          ...(JSON.parse(line.slice(7)) as Omit<Result, 'mode' | 'variant'>),
          mode: tp > 1 ? mode : '',
          variant: variant.name,
        });
    });
  });
}

const results: Result[] = [];
const modes = values['all-reduce']!.split(',');
for (const variant of variants)
  for (const tp of values.sizes!.split(',').map(Number))
    for (const mode of tp > 1 ? modes : modes.slice(0, 1)) results.push(await runOne(tp, mode, variant));
const best = (r: Result) => Math.max(...r.tokPerSec);
const nameWidth = Math.max(12, ...results.map((r) => r.variant.length + 2));
console.log(
  `\n${'variant'.padEnd(nameWidth)}TP          ready (s)  batch-1 ms/token  vs TP=1   throughput tok/s  vs TP=1`,
);
for (const r of results) {
  // Ratios against TP=1 of the same variant.
  const base = results.find((b) => b.tp === 1 && b.variant === r.variant);
  const lat = base ? (r.latencyMs / base.latencyMs).toFixed(3) : '-';
  const thr = base ? (best(r) / best(base)).toFixed(3) : '-';
  console.log(
    `${r.variant.padEnd(nameWidth)}${`${r.tp} ${r.mode}`.padEnd(12)}${r.readySeconds.toFixed(2).padStart(9)}  ${r.latencyMs.toFixed(3).padStart(16)}  ${lat.padStart(7)}` +
      `  ${best(r).toFixed(0).padStart(16)}  ${thr.padStart(7)}`,
  );
}
