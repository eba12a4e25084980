/** Finding nvcc and building the standalone kernel programs (kernels/tests/*.cu) for GPU runs. */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ensureCudaToolchain, NVCC_SM90A_FLAGS } from '../../scripts/cuda-toolchain.ts';
import { ROOT } from '../helpers/fixtures.ts';

export function nvccPath(): string {
  for (const c of [process.env.NVCC, 'nvcc', '/usr/local/cuda/bin/nvcc'].filter((x): x is string => !!x)) {
    if (spawnSync(c, ['--version'], { stdio: 'ignore' }).status === 0) return c;
  }
  return ensureCudaToolchain().nvcc;
}

/** Builds kernels/tests/<name>.cu into native/build/kernel-tests/<name> unless it is up to date. */
export function buildKernelProgram(name: string, extraArgs: string[] = []): string {
  const src = join(ROOT, 'kernels', 'tests', `${name}.cu`);
  const outDir = join(ROOT, 'native', 'build', 'kernel-tests');
  const out = join(outDir, name);
  if (existsSync(out) && statSync(out).mtimeMs > statSync(src).mtimeMs && !process.env.PAGODA_REBUILD_KERNEL_TESTS)
    return out;
  mkdirSync(outDir, { recursive: true });
  const nvcc = nvccPath();
  const r = spawnSync(nvcc, [...NVCC_SM90A_FLAGS, '-O2', '-I', join(ROOT, 'kernels'), src, '-o', out, ...extraArgs], {
    stdio: 'inherit',
  });
  if (r.status !== 0) throw new Error(`building ${name} failed`);
  return out;
}

export function hasGpu(): boolean {
  return spawnSync('nvidia-smi', ['-L'], { stdio: 'ignore' }).status === 0;
}
