/**
 * `npm run bench:all-reduce`: the one-shot peer-to-peer all-reduce against NCCL (eager and inside a CUDA
 * graph) on every visible GPU, float32, 8 KiB to 8 MiB, after checking its results
 * (kernels/tests/all_reduce.cu). Needs 2 or more GPUs.
 */
import { spawnSync } from 'node:child_process';
import { buildKernelProgram, hasGpu, ncclArgs } from '../gpu/toolchain.ts';

if (!hasGpu()) {
  console.log('no NVIDIA GPU found: all-reduce benchmark not run');
  process.exit(1);
}
const program = buildKernelProgram('all_reduce', ncclArgs());
process.exitCode = spawnSync(program, ['--bench'], { stdio: 'inherit' }).status ?? 1;
