/**
 * `npm run bench:kernels`: Pagoda's kernel figures (decode attention bandwidth, prefill TFLOP/s, one
 * decode step's linear layers) and, in the same run, the PyTorch anchors on the same GPU
 * (shared/bench/torch_kernel_anchors.py: SDPA decode on contiguous KV, cuBLAS GEMMs via torch).
 * `npm run bench:kernels -- --long-context` (or --fixed-cost, --split-sweep, --timeline, --attention, --linear, --sampling): one sweep of
 * bench_kernels only, no anchors.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { buildKernelProgram, hasGpu, nvccPath } from '../gpu/toolchain.ts';
import { ROOT } from '../helpers/fixtures.ts';

if (!hasGpu()) {
  console.log('no NVIDIA GPU found: kernel benchmarks not run');
  process.exit(1);
}
const cudaLib = join(nvccPath(), '..', '..', 'lib');
const bench = process.env.PAGODA_BENCH_KERNELS ?? buildKernelProgram('bench_kernels', ['-L', cudaLib, '-lcublas']);
const sweep = process.argv.slice(2);
const run = spawnSync(bench, sweep, { stdio: 'inherit' });
if (sweep.length > 0) process.exit(run.status ?? 1);
const anchors = process.env.PAGODA_TORCH_ANCHORS ?? join(ROOT, '..', 'shared', 'bench', 'torch_kernel_anchors.py');
if (existsSync(anchors)) {
  console.log('\n== PyTorch anchors (same GPU, same run)');
  spawnSync(process.env.PAGODA_PYTHON ?? 'python3', [anchors], { stdio: 'inherit' });
} else {
  console.log(`(PyTorch anchors not run: ${anchors} not found)`);
}
