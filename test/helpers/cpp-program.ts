/**
 * Builds a small C++ check program against native/src (plain C++, no Node-API) and runs it: for tests
 * of engine pieces that are easiest to drive from C++. The program prints one JSON object per line.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './fixtures.ts';

/** Compiles `sources` (paths relative to the repository) into `dir` and returns the JSON lines it prints. */
export function runCppCheck<T>(dir: string, name: string, sources: string[], args: string[] = []): T[] {
  const exe = join(dir, name);
  const cc = spawnSync(
    'c++',
    ['-std=c++20', '-O2', '-I', join(ROOT, 'native', 'src'), ...sources.map((s) => join(ROOT, s)), '-o', exe],
    { encoding: 'utf8' },
  );
  if (cc.status !== 0) throw new Error(`compiling ${name} failed:\n${cc.stderr}`);
  const run = spawnSync(exe, args, { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`${name} exited with ${run.status}:\n${run.stderr}`);
  return run.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as T);
}
