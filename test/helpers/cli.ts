/** Runs the `pagoda` CLI as a child process, as users do. */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './fixtures.ts';

export const CLI = join(ROOT, 'runtime', 'src', 'cli.ts');

export function runCli(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 60_000) {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: timeoutMs,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
