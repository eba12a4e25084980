/**
 * `npm run test:gpu`: every GPU test, then a summary —
 *   1. kernels against their CPU references over a grid of shapes (kernels/tests/check_kernels.cu);
 *   2. whole models on the CUDA backend against HF transformers (random weights made on the GPU by
 *      make_models.py) and against the CPU backend (whole-model.ts);
 *   3. the HTTP server on the CUDA backend, end to end (serve-smoke.ts);
 *   4. with 2 or more GPUs: the one-shot all-reduce on every GPU (kernels/tests/all_reduce.cu), and
 *      tensor parallelism at 2 (and 4, 8 when the machine has them) against one GPU, refusals, and the
 *      collective watchdog (tensor-parallel.ts). With one GPU this is listed as SKIP in the summary.
 * Without a GPU it says so and fails, unless invoked as `npm run test:gpu -- --skip-if-no-gpu`.
 * Needs a CUDA build of the engine (PAGODA_CUDA=1 npm run build:native) and python3 with torch and
 * transformers for the references.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadNative } from '../../runtime/src/native/index.ts';
import { FIXTURES, ROOT } from '../helpers/fixtures.ts';
import { buildKernelProgram, hasGpu, ncclArgs } from './toolchain.ts';

if (!hasGpu()) {
  const skip = process.argv.includes('--skip-if-no-gpu');
  console.log(`no NVIDIA GPU found (nvidia-smi -L failed): GPU tests not run${skip ? ' (skipped on request)' : ''}`);
  process.exit(skip ? 0 : 1);
}
if (!loadNative().cuda) {
  console.error('this build of the engine has no CUDA backend: run PAGODA_CUDA=1 npm run build:native first');
  process.exit(1);
}

const results: { name: string; status: 'PASS' | 'FAIL' | 'SKIP'; why?: string }[] = [];
const run = (name: string, cmd: string, args: string[]) => {
  console.log(`\n== ${name}`);
  const r = spawnSync(cmd, args, { stdio: 'inherit', cwd: ROOT });
  results.push({ name, status: r.status === 0 ? 'PASS' : 'FAIL' });
};

run('kernels vs CPU reference', process.env.PAGODA_CHECK_KERNELS ?? buildKernelProgram('check_kernels'), []);
const models = process.env.PAGODA_GPU_MODELS ?? mkdtempSync(join(tmpdir(), 'pagoda-gpu-models-'));
run('make random-weight models and HF references', process.env.PAGODA_PYTHON ?? 'python3', [
  join(ROOT, 'test', 'gpu', 'make_models.py'),
  models,
  join(FIXTURES, 'tiny', 'qwen3-tiny'),
]);
run('whole models: CUDA vs HF transformers and vs CPU', process.execPath, [
  join(ROOT, 'test', 'gpu', 'whole-model.ts'),
  models,
]);

run('HTTP server on the CUDA backend', process.execPath, [
  join(ROOT, 'test', 'gpu', 'serve-smoke.ts'),
  join(models, 'qwen3-0.6b'),
]);
const gpus = loadNative().gpuCount?.() ?? 0;
if (gpus >= 2) {
  run('one-shot all-reduce (peer-to-peer) on every GPU', buildKernelProgram('all_reduce', ncclArgs()), []);
  // Every tensor-parallel size the machine has GPUs for.
  for (const tp of [2, 4, 8].filter((n) => n <= gpus))
    run(`tensor parallelism: TP=${tp} vs TP=1, refusals, watchdog`, process.execPath, [
      join(ROOT, 'test', 'gpu', 'tensor-parallel.ts'),
      models,
      String(tp),
    ]);
} else {
  results.push({ name: 'tensor parallelism', status: 'SKIP', why: `needs 2 GPUs, ${gpus} visible` });
}

console.log('\n== GPU test summary');
for (const r of results) console.log(`${r.status}  ${r.name}${r.why ? ` (${r.why})` : ''}`);
process.exitCode = results.every((r) => r.status !== 'FAIL') ? 0 : 1;
