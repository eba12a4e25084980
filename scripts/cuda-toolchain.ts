/**
 * A CUDA 13.0 toolchain from NVIDIA's PyPI wheels (nvcc, headers, cudart, cuBLAS, NCCL), for compiling
 * the CUDA backend on machines without a CUDA install (CI compiles every .cu with it). Cached outside
 * the repository under $PAGODA_CACHE_DIR/cuda-<version>, keyed by the pinned versions below.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cacheDir } from '../runtime/src/model/default-model.ts';

export const CUDA_WHEELS = [
  'nvidia-cuda-nvcc==13.0.88',
  'nvidia-cuda-crt==13.0.88',
  'nvidia-nvvm==13.0.88',
  'nvidia-cuda-runtime==13.0.96',
  'nvidia-cuda-cccl==13.0.85',
  'nvidia-cublas==13.1.0.3',
  'nvidia-nccl-cu13==2.27.7',
];
const KEY = 'cuda-13.0.88-cublas-13.1.0.3-nccl-2.27.7';

/** nvcc flags every Pagoda CUDA source is built with: C++17, Hopper only (wgmma/TMA need sm_90a), OpenMP host code. */
export const NVCC_SM90A_FLAGS = ['-std=c++17', '-gencode', 'arch=compute_90a,code=sm_90a', '-Xcompiler', '-fopenmp'];

export interface CudaToolchain {
  /** CUDA root with bin/nvcc, include, lib */
  root: string;
  nvcc: string;
  ncclRoot: string;
}

function python(): string {
  for (const c of [process.env.PAGODA_PYTHON, 'python3', 'python'].filter((x): x is string => !!x)) {
    if (spawnSync(c, ['-m', 'pip', '--version'], { stdio: 'ignore' }).status === 0) return c;
  }
  throw new Error('python3 with pip is needed to fetch the CUDA wheels');
}

/** Returns the toolchain, downloading and unpacking it on first use. Throws with the reason if it cannot. */
export function ensureCudaToolchain(log: (m: string) => void = () => {}): CudaToolchain {
  const dir = join(cacheDir(), KEY);
  const root = join(dir, 'nvidia', 'cu13');
  const tc = { root, nvcc: join(root, 'bin', 'nvcc'), ncclRoot: join(dir, 'nvidia', 'nccl') };
  if (existsSync(join(dir, '.complete'))) return tc;
  const py = python();
  const tmp = `${dir}.partial`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(join(tmp, 'wheels'), { recursive: true });
  log(`fetching the CUDA 13.0 toolchain wheels (~720 MB) into ${dir} ...`);
  const platforms = [
    'manylinux_2_28_x86_64',
    'manylinux_2_27_x86_64',
    'manylinux_2_17_x86_64',
    'manylinux2014_x86_64',
    'manylinux_2_12_x86_64',
    'manylinux2010_x86_64',
  ];
  const dl = spawnSync(
    py,
    [
      '-m',
      'pip',
      'download',
      '-q',
      '--no-deps',
      '--only-binary=:all:',
      '--disable-pip-version-check',
      '--python-version',
      '3.11',
      ...platforms.flatMap((p) => ['--platform', p]),
      '-d',
      join(tmp, 'wheels'),
      ...CUDA_WHEELS,
    ],
    { stdio: ['ignore', 'inherit', 'pipe'], encoding: 'utf8' },
  );
  if (dl.status !== 0)
    throw new Error(`pip download of the CUDA wheels failed: ${(dl.stderr ?? '').trim().split('\n').pop()}`);
  const unzip = spawnSync(
    py,
    [
      '-c',
      'import sys, zipfile, glob\nfor w in glob.glob(sys.argv[1] + "/*.whl"): zipfile.ZipFile(w).extractall(sys.argv[2])',
      join(tmp, 'wheels'),
      tmp,
    ],
    { stdio: 'inherit' },
  );
  if (unzip.status !== 0) throw new Error('unpacking the CUDA wheels failed');
  rmSync(join(tmp, 'wheels'), { recursive: true, force: true });
  const troot = join(tmp, 'nvidia', 'cu13');
  spawnSync('chmod', ['-R', 'u+x', join(troot, 'bin'), join(troot, 'nvvm', 'bin')]);
  // The wheels ship only versioned shared objects; linkers and CMake look for the plain names.
  const link = (libDir: string, versioned: string, plain: string) => {
    if (existsSync(join(libDir, versioned)) && !existsSync(join(libDir, plain)))
      symlinkSync(versioned, join(libDir, plain));
  };
  for (const [v, p] of [
    ['libcudart.so.13', 'libcudart.so'],
    ['libcublas.so.13', 'libcublas.so'],
    ['libcublasLt.so.13', 'libcublasLt.so'],
  ]) {
    link(join(troot, 'lib'), v!, p!);
  }
  const ncclLib = join(tmp, 'nvidia', 'nccl', 'lib');
  if (existsSync(ncclLib))
    for (const f of readdirSync(ncclLib)) if (/^libnccl\.so\.\d+$/.test(f)) link(ncclLib, f, 'libnccl.so');
  // CMake's FindCUDAToolkit expects lib64 beside bin/nvcc.
  if (!existsSync(join(troot, 'lib64'))) symlinkSync('lib', join(troot, 'lib64'));
  writeFileSync(join(tmp, '.complete'), CUDA_WHEELS.join('\n'));
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  return tc;
}

if (import.meta.main) {
  const tc = ensureCudaToolchain(console.log);
  console.log(JSON.stringify(tc, null, 2));
}
