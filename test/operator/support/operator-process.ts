/** Runs `node operator/src/main.ts` as a real process, as users run it with `npm run operator`. */
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from '../../../scripts/cluster/cluster.ts';
import { eventually } from './wait.ts';

export interface OperatorProcess {
  child: ChildProcess;
  port: number;
  identity: string;
  logs(): string;
  metric(name: string, labels?: string): Promise<number>;
  ready(): Promise<boolean>;
  /** SIGTERM (graceful) or SIGKILL; resolves with the exit code once it has exited. */
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<number | null>;
}

export async function startOperator(opts: {
  kubeconfig: string;
  identity: string;
  args?: string[];
  env?: Record<string, string>;
}): Promise<OperatorProcess> {
  let output = '';
  const child = spawn(
    process.execPath,
    [
      join(REPO_ROOT, 'operator', 'src', 'main.ts'),
      // Port 0: the operator binds a free port and logs it (no race between picking and binding).
      '--http-port=0',
      '--http-host=127.0.0.1',
      `--identity=${opts.identity}`,
      ...(opts.args ?? []),
    ],
    { env: { ...process.env, KUBECONFIG: opts.kubeconfig, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child.stdout?.on('data', (d) => {
    output += d;
  });
  child.stderr?.on('data', (d) => {
    output += d;
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const port = await eventually(
    `operator ${opts.identity} started`,
    async () => {
      if (child.exitCode !== null) throw new Error(`the operator exited with ${child.exitCode}: ${output}`);
      const m = /"msg":"pagoda operator started".*?"http":"[^"]*:(\d+)"/.exec(output);
      return m ? Number(m[1]) : undefined;
    },
    { timeoutMs: 30_000 },
  );
  const base = `http://127.0.0.1:${port}`;
  const proc: OperatorProcess = {
    child,
    port,
    identity: opts.identity,
    logs: () => output,
    async metric(name, labels) {
      const text = await (await fetch(`${base}/metrics`)).text();
      const prefix = labels ? `${name}{${labels}}` : name;
      let sum = 0;
      for (const line of text.split('\n')) {
        if (line.startsWith(`${prefix} `) || (!labels && line.startsWith(`${name}{`)))
          sum += Number(line.split(' ').at(-1));
      }
      return sum;
    },
    async ready() {
      return (await fetch(`${base}/readyz`).catch(() => undefined))?.status === 200;
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
  await eventually(
    `operator ${opts.identity} serving /healthz`,
    async () => {
      if (child.exitCode !== null) throw new Error(`the operator exited with ${child.exitCode}: ${output}`);
      return (await fetch(`${base}/healthz`).catch(() => undefined))?.status === 200;
    },
    { timeoutMs: 30_000 },
  );
  return proc;
}
