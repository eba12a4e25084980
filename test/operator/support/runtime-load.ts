/**
 * Real runtime processes behind fake pods, and load on them, for the autoscaler's integration test.
 *
 * The local control plane's pods run on kwok nodes: they are API objects that turn Running and Ready, but
 * no container starts and their IPs route nowhere. The operator's scrape targets are pluggable
 * (--metrics-target-map): PodTargetMap starts real `pagoda serve` processes (CPU backend, the default
 * model) on localhost and maps each Ready pod of an InferenceDeployment to one of them in the file the
 * operator reads, as a Service would route to the pod. ClosedLoopLoad sends completions to the processes
 * behind the Ready pods, the way clients reach a model through its Service. Everything the autoscaler
 * does stays real: it lists the pods, resolves each to a URL, scrapes /metrics over HTTP, parses the
 * runtime's own exposition, decides and writes the scale subresource.
 */
import { readdirSync, renameSync, writeFileSync } from 'node:fs';
import { setPriority } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { collectionPath, type KubeClient, RESOURCES } from '../../../operator/src/kube/rest.ts';
import { parseMetrics } from '../../helpers/metrics.ts';
import { type ServeProcess, spawnServe } from '../../helpers/server.ts';

export const SERVED_MODEL = 'SmolLM2-135M-Instruct';

/**
 * Lowers the CPU priority of a process's threads except its main one: the engine's compute threads give
 * way to the control plane and the operator on a small machine, while the main thread (HTTP, /metrics)
 * keeps answering promptly. Linux only (threads from /proc); elsewhere nothing changes.
 */
function deprioritiseWorkers(pid: number): void {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return;
  }
  for (const tid of tids) {
    if (Number(tid) === pid) continue;
    try {
      setPriority(Number(tid), 15);
    } catch {}
  }
}

/** Starts n `pagoda serve` processes whose compute threads run at low CPU priority. */
export async function startRuntimes(n: number, args: string[] = []): Promise<ServeProcess[]> {
  const procs: ServeProcess[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const p = await spawnServe(args);
      if (p.child.pid) deprioritiseWorkers(p.child.pid);
      procs.push(p);
    }
  } catch (e) {
    await stopRuntimes(procs);
    throw e;
  }
  return procs;
}

export async function stopRuntimes(procs: readonly ServeProcess[]): Promise<void> {
  await Promise.all(
    procs.map(async (p) => {
      if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
      await p.exited;
    }),
  );
}

/** running + waiting on one process, read from its /metrics (what the autoscaler sums). */
export async function inFlight(url: string): Promise<number> {
  const m = parseMetrics(await (await fetch(`${url}/metrics`)).text());
  return m.get('pagoda_num_requests_running') + m.get('pagoda_num_requests_waiting');
}

interface PodLike {
  metadata: { name: string; deletionTimestamp?: string };
  status?: { phase?: string; conditions?: { type: string; status: string }[] };
}

/** Keeps the operator's target map in step with the Ready pods of one InferenceDeployment. */
export class PodTargetMap {
  private readonly assigned = new Map<string, string>(); // pod → process URL
  private stopped = false;
  private loop: Promise<void> | undefined;
  private readonly client: KubeClient;
  private readonly namespace: string;
  private readonly name: string;
  private readonly path: string;
  private readonly pool: readonly string[];

  constructor(opts: { client: KubeClient; namespace: string; name: string; path: string; pool: readonly string[] }) {
    this.client = opts.client;
    this.namespace = opts.namespace;
    this.name = opts.name;
    this.path = opts.path;
    this.pool = opts.pool;
    this.write();
  }

  /** Process URLs behind Ready pods (where a Service would send requests). */
  urls(): string[] {
    return [...this.assigned.values()];
  }

  start(): void {
    this.loop = (async () => {
      while (!this.stopped) {
        await this.sync().catch(() => undefined);
        await sleep(200);
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  private async sync(): Promise<void> {
    const list = await this.client.list<PodLike>(collectionPath(RESOURCES.pod, this.namespace), {
      labelSelector: `inference.pagoda.dev/name=${this.name}`,
    });
    const ready = new Set(
      list.items
        .filter(
          (p) =>
            !p.metadata.deletionTimestamp &&
            p.status?.phase === 'Running' &&
            p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
        )
        .map((p) => p.metadata.name),
    );
    let changed = false;
    for (const pod of [...this.assigned.keys()]) {
      if (!ready.has(pod)) {
        this.assigned.delete(pod);
        changed = true;
      }
    }
    for (const pod of ready) {
      if (this.assigned.has(pod)) continue;
      const taken = new Set(this.assigned.values());
      const free = this.pool.find((u) => !taken.has(u));
      if (!free) throw new Error(`more Ready pods than runtime processes (${this.pool.length})`);
      this.assigned.set(pod, free);
      changed = true;
    }
    if (changed) this.write();
  }

  private write(): void {
    const map = Object.fromEntries([...this.assigned].map(([pod, url]) => [`${this.namespace}/${pod}`, url]));
    writeFileSync(`${this.path}.tmp`, JSON.stringify(map));
    renameSync(`${this.path}.tmp`, this.path); // atomic: the operator never reads half a file
  }
}

/**
 * `concurrency` clients, each sending one completion after another (a closed loop) to the processes
 * behind the Ready pods, round robin. Every request generates many tokens, so the sum of running +
 * waiting over the processes stays at the concurrency while the load runs.
 */
export class ClosedLoopLoad {
  private workers: { stop: AbortController; done: Promise<void> }[] = [];
  private next = 0;
  private readonly urls: () => string[];
  errors = 0;

  constructor(urls: () => string[]) {
    this.urls = urls;
  }

  get concurrency(): number {
    return this.workers.length;
  }

  setConcurrency(n: number): void {
    while (this.workers.length < n) {
      const stop = new AbortController();
      this.workers.push({ stop, done: this.work(stop.signal) });
    }
    while (this.workers.length > n) this.workers.pop()?.stop.abort();
  }

  /** Stops every client and aborts their requests (the runtime cancels them). */
  async stop(): Promise<void> {
    const all = this.workers;
    this.workers = [];
    for (const w of all) w.stop.abort();
    await Promise.all(all.map((w) => w.done));
  }

  private async work(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const urls = this.urls();
      if (urls.length === 0) {
        await sleep(100);
        continue;
      }
      const url = urls[this.next++ % urls.length] as string;
      try {
        const res = await fetch(`${url}/v1/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            model: SERVED_MODEL,
            prompt: 'Count to one thousand:',
            max_tokens: 400,
            ignore_eos: true,
          }),
          signal,
        });
        await res.text();
      } catch {
        if (signal.aborted) return;
        this.errors++;
        await sleep(100);
      }
    }
  }
}
