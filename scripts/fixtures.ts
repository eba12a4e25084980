/**
 * `npm run fixtures`: regenerates the reference outputs the numerics tests compare against, with the
 * outside references themselves (HF transformers on a CPU torch, gguf-py, llama.cpp via
 * llama-cpp-python), in a virtual environment cached outside the repository and keyed by
 * scripts/fixtures/requirements.txt. CI does not run this; it uses the committed outputs.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cacheDir, ensureDefaultModel } from '../runtime/src/model/default-model.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const here = join(root, 'scripts', 'fixtures');
const out = join(root, 'test', 'fixtures');

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): void {
  console.log(`$ ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { stdio: 'inherit', env: { ...process.env, ...env } });
  if (r.status !== 0) throw new Error(`${cmd} failed with exit code ${r.status}`);
}

/** A venv with the pinned reference packages; built once per requirements hash. */
export function referenceVenv(): string {
  const req = join(here, 'requirements.txt');
  const key = createHash('sha256').update(readFileSync(req)).digest('hex').slice(0, 12);
  const venv = join(cacheDir(), `pyref-${key}`);
  const python = join(venv, 'bin', 'python');
  if (!existsSync(join(venv, '.complete'))) {
    rmSync(venv, { recursive: true, force: true });
    mkdirSync(cacheDir(), { recursive: true });
    run(process.env.PAGODA_PYTHON ?? 'python3', ['-m', 'venv', venv]);
    run(python, ['-m', 'pip', 'install', '-q', '--upgrade', 'pip']);
    // llama-cpp-python compiles llama.cpp from source (several minutes on two cores).
    run(python, ['-m', 'pip', 'install', '-q', '-r', req], { CMAKE_BUILD_PARALLEL_LEVEL: '2' });
    run(python, ['-c', `open(${JSON.stringify(join(venv, '.complete'))}, "w").write("ok")`]);
  }
  return python;
}

if (import.meta.main) {
  const python = referenceVenv();
  mkdirSync(join(out, 'tiny'), { recursive: true });
  run(python, [join(here, 'tiny_models.py'), join(out, 'tiny')]);
  run(python, [join(here, 'gguf_fixtures.py'), out]);
  const model = await ensureDefaultModel({ log: console.log });
  run(python, [join(here, 'llamacpp_reference.py'), model, join(out, 'smollm2-llamacpp.json')]);
  console.log(`fixtures written under ${out}`);
}
