/** Finding nvcc and building the standalone kernel programs (kernels/tests/*.cu) for GPU runs. */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ensureCudaToolchain, NVCC_SM90A_FLAGS } from '../../scripts/cuda-toolchain.ts';
import { ROOT } from '../helpers/fixtures.ts';

export function nvccPath(): string {
  for (const c of [process.env.NVCC, 'nvcc', '/usr/local/cuda/bin/nvcc'].filter((x): x is string => !!x)) {
    if (spawnSync(c, ['--version'], { stdio: 'ignore' }).status === 0) return c;
  }
  return ensureCudaToolchain().nvcc;
}

/** Builds kernels/tests/<name>.cu into native/build/kernel-tests/<name> unless it is newer than the
 * source and every kernel header. */
export function buildKernelProgram(name: string, extraArgs: string[] = []): string {
  const src = join(ROOT, 'kernels', 'tests', `${name}.cu`);
  const outDir = join(ROOT, 'native', 'build', 'kernel-tests');
  const out = join(outDir, name);
  const kernelDir = join(ROOT, 'kernels');
  const inputs = [
    src,
    ...readdirSync(kernelDir)
      .filter((f) => f.endsWith('.cuh'))
      .map((f) => join(kernelDir, f)),
  ];
  const newest = Math.max(...inputs.map((f) => statSync(f).mtimeMs));
  if (existsSync(out) && statSync(out).mtimeMs > newest && !process.env.PAGODA_REBUILD_KERNEL_TESTS) return out;
  mkdirSync(outDir, { recursive: true });
  const nvcc = nvccPath();
  const r = spawnSync(nvcc, [...NVCC_SM90A_FLAGS, '-O2', '-I', join(ROOT, 'kernels'), src, '-o', out, ...extraArgs], {
    stdio: 'inherit',
  });
  if (r.status !== 0) throw new Error(`building ${name} failed`);
  return out;
}

/**
 * nvcc arguments for a program that uses NCCL: $NCCL_ROOT, else the nvidia-nccl wheel that python3 has
 * (as on GPU machines with PyTorch), else the pinned CUDA toolchain's. The wheel ships libnccl.so.2 only.
 */
export function ncclArgs(): string[] {
  let root = process.env.NCCL_ROOT;
  if (!root) {
    const py = spawnSync(
      process.env.PAGODA_PYTHON ?? 'python3',
      ['-c', 'import nvidia.nccl as m; print(list(m.__path__)[0])'],
      {
        encoding: 'utf8',
      },
    );
    if (py.status === 0) root = py.stdout.trim();
  }
  root ??= ensureCudaToolchain().ncclRoot;
  const lib = join(root, 'lib');
  return ['-I', join(root, 'include'), '-L', lib, '-l:libnccl.so.2', '-Xlinker', `-rpath=${lib}`];
}

export function hasGpu(): boolean {
  return spawnSync('nvidia-smi', ['-L'], { stdio: 'ignore' }).status === 0;
}
