/**
 * Builds native/ with cmake-js into native/build/Release/pagoda_native.node.
 *   PAGODA_CUDA=1          also build the CUDA backend (needs nvcc, cuBLAS and NCCL)
 *   PAGODA_CPU_ARCH=...    -march for the CPU backend (default: native)
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureCudaToolchain } from './cuda-toolchain.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function have(cmd: string, args: string[]): boolean {
  return spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
}

export function buildNative(): void {
  if (!have('cmake', ['--version'])) {
    throw new Error(
      'cmake is not installed: install cmake >= 3.22 (e.g. apt-get install cmake) and run npm run build:native',
    );
  }
  if (!have('c++', ['--version']) && !have('g++', ['--version'])) {
    throw new Error('no C++ compiler found: install g++ >= 11 or clang >= 14 and run npm run build:native');
  }
  const cmakeJs = join(dirname(createRequire(import.meta.url).resolve('cmake-js/package.json')), 'bin', 'cmake-js');
  const args = [cmakeJs, 'compile', '-d', 'native', '-O', 'native/build'];
  if (process.env.PAGODA_CUDA === '1') {
    args.push('--CDPAGODA_CUDA=ON');
    // Without a local CUDA install, build against the pinned CUDA 13 wheels.
    if (!have('nvcc', ['--version']) && !process.env.CUDACXX) {
      const tc = ensureCudaToolchain((m) => console.log(`pagoda: ${m}`));
      args.push(
        `--CDCMAKE_CUDA_COMPILER=${tc.nvcc}`,
        `--CDCUDAToolkit_ROOT=${tc.root}`,
        `--CDNCCL_ROOT=${tc.ncclRoot}`,
      );
    }
  }
  if (process.env.PAGODA_CPU_ARCH) args.push(`--CDPAGODA_CPU_ARCH=${process.env.PAGODA_CPU_ARCH}`);
  const jobs = process.env.CMAKE_BUILD_PARALLEL_LEVEL ?? '';
  if (jobs) args.push('--parallel', jobs);
  // cmake-js reuses a configured build directory as it is: start afresh when the options changed.
  const cache = join(root, 'native', 'build', 'CMakeCache.txt');
  if (existsSync(cache)) {
    const text = readFileSync(cache, 'utf8');
    const cuda = /PAGODA_CUDA:BOOL=(\w+)/.exec(text)?.[1] === 'ON';
    const arch = /PAGODA_CPU_ARCH:STRING=(\S*)/.exec(text)?.[1] ?? 'native';
    if (cuda !== (process.env.PAGODA_CUDA === '1') || arch !== (process.env.PAGODA_CPU_ARCH ?? 'native')) {
      rmSync(join(root, 'native', 'build'), { recursive: true, force: true });
    }
  }
  console.log('pagoda: building the native engine (cmake-js) ...');
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) throw new Error('native build failed (see the compiler output above)');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  try {
    buildNative();
  } catch (e) {
    console.error(`pagoda: ${(e as Error).message}`);
    process.exit(1);
  }
}
