/**
 * Builds the pinned control-plane binaries (etcd, kube-*, kubectl, kwok, helm) from the wrapper Go
 * modules in ./go and caches them outside the clone, keyed by version and by a hash of the wrapper's
 * go.mod/go.sum. A warm cache costs nothing; a cold one takes minutes (see docs/cluster.md).
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { cacheDir } from '../../runtime/src/model/default-model.ts';
import { isAlive } from './processes.ts';
import { TOOL_GROUPS, type ToolGroup } from './versions.ts';

const GO_DIR = join(import.meta.dirname, 'go');

export type ToolName =
  | 'etcd'
  | 'kube-apiserver'
  | 'kube-controller-manager'
  | 'kube-scheduler'
  | 'kubectl'
  | 'kwok'
  | 'helm';
export type ToolPaths = Readonly<Record<ToolName, string>>;

type Log = (message: string) => void;

function groupDir(group: ToolGroup): string {
  const hash = createHash('sha256');
  for (const file of ['go.mod', 'go.sum']) hash.update(readFileSync(join(GO_DIR, group.module, file)));
  hash.update(JSON.stringify(group.versionVars));
  return join(cacheDir(), 'cluster-bin', `${group.module}-${group.version}-${hash.digest('hex').slice(0, 10)}`);
}

function goEnv(): NodeJS.ProcessEnv {
  const root = cacheDir();
  return {
    ...process.env,
    GOMODCACHE: join(root, 'go', 'mod'),
    GOCACHE: join(root, 'go', 'build'),
    GOFLAGS: '-mod=readonly -buildvcs=false -trimpath',
    CGO_ENABLED: '0',
  };
}

function checkGo(): void {
  const r = spawnSync('go', ['version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    throw new Error(
      'building the local control plane needs Go >= 1.26 on PATH (https://go.dev/dl); the binaries are then cached under ' +
        join(cacheDir(), 'cluster-bin'),
    );
  }
}

/** A lock directory (mkdir is atomic), so two processes never build the same group at once. */
export async function withLock<T>(path: string, fn: () => Promise<T>): Promise<T> {
  mkdirSync(join(path, '..'), { recursive: true });
  for (;;) {
    try {
      mkdirSync(path);
      writeFileSync(join(path, 'pid'), String(process.pid));
      break;
    } catch {
      let holder: number;
      try {
        holder = Number(readFileSync(join(path, 'pid'), { encoding: 'utf8', flag: 'a+' }) || 0);
      } catch {
        continue; // released between our mkdir and this read: try again
      }
      if (holder > 0 && !isAlive(holder)) rmSync(path, { recursive: true, force: true });
      else await sleep(2000);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(path, { recursive: true, force: true });
  }
}

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('error', reject);
    child.on('exit', (code, signal) =>
      code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')} failed (${signal ?? `exit ${code}`})`)),
    );
  });
}

async function buildGroup(group: ToolGroup, dir: string, log: Log): Promise<void> {
  const names = Object.keys(group.binaries);
  if (names.every((n) => existsSync(join(dir, n)))) return;
  await withLock(`${dir}.lock`, async () => {
    if (names.every((n) => existsSync(join(dir, n)))) return; // another process built it meanwhile
    checkGo();
    const started = Date.now();
    log(`building ${names.join(', ')} ${group.version} (cold builds take minutes; cached afterwards in ${dir})`);
    const tmp = `${dir}.tmp`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    const ldflags = ['-s', '-w', ...Object.entries(group.versionVars).map(([k, v]) => `-X=${k}=${v}`)].join(' ');
    // nice: the build must not starve whatever else shares the machine (tests, an editor, a runtime).
    // One `go build` per group shares the compile of common packages; with several packages `-o dir/`
    // names each binary after its package (all of ours end in the binary's name), with one `-o` names it.
    const single = names.length === 1 ? names[0] : undefined;
    await run(
      'nice',
      [
        '-n',
        '10',
        'go',
        'build',
        `-ldflags=${ldflags}`,
        '-o',
        single ? join(tmp, single) : `${tmp}/`,
        ...Object.values(group.binaries),
      ],
      join(GO_DIR, group.module),
      goEnv(),
    );
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
    log(`built ${names.join(', ')} in ${Math.round((Date.now() - started) / 1000)} s`);
  });
}

/**
 * kwok does nothing without Stage definitions (how nodes and pods change state). Its module ships the
 * standard "fast" set as YAML; they are copied from the pinned module next to the kwok binary.
 */
const KWOK_STAGES = [
  'kustomize/stage/node/fast/node-initialize.yaml',
  'kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml',
  'kustomize/stage/pod/fast/pod-ready.yaml',
  'kustomize/stage/pod/fast/pod-complete.yaml',
  'kustomize/stage/pod/fast/pod-delete.yaml',
];

function ensureKwokStages(dir: string): void {
  const target = join(dir, 'stages.yaml');
  if (existsSync(target)) return;
  const r = spawnSync('go', ['list', '-m', '-f', '{{.Dir}}', 'sigs.k8s.io/kwok'], {
    cwd: join(GO_DIR, 'kwok'),
    env: goEnv(),
    encoding: 'utf8',
  });
  const moduleDir = r.stdout.trim();
  if (r.status !== 0 || !moduleDir) throw new Error(`cannot locate the kwok module: ${r.stderr}`);
  const docs = KWOK_STAGES.map((f) => readFileSync(join(moduleDir, f), 'utf8').trim());
  writeFileSync(`${target}.tmp`, `${docs.join('\n---\n')}\n`);
  renameSync(`${target}.tmp`, target);
}

/** Builds whatever is missing from the cache and returns the path of every binary. */
export async function ensureTools(log: Log = (m) => console.log(`cluster: ${m}`)): Promise<ToolPaths> {
  const paths: Record<string, string> = {};
  for (const group of TOOL_GROUPS) {
    const dir = groupDir(group);
    await buildGroup(group, dir, log);
    if (group.module === 'kwok') ensureKwokStages(dir);
    for (const name of Object.keys(group.binaries)) paths[name] = join(dir, name);
  }
  return paths as ToolPaths;
}

if (import.meta.main) {
  const paths = await ensureTools();
  for (const [name, path] of Object.entries(paths)) console.log(`${name}\t${path}`);
}
