/**
 * One scrape of one InferenceDeployment: read the metric from each of its Ready pods (through the target
 * resolver, with a shared cap on scrapes in flight) and sum it. The result is the window's sample plus
 * the reasons of the pods that could not be read.
 */
import type { AutoscalingMetric } from '../api/types.ts';
import type { PodView } from '../controller/status.ts';
import { scrape } from './scrape.ts';
import type { TargetResolver } from './targets.ts';

export interface Measurement {
  /** The metric summed over the pods that answered. */
  total: number;
  answered: number;
  /** Ready pods that could not be read ("<pod>: <why>"). */
  errors: string[];
}

/** A counting semaphore: at most `max` scrapes at once over all objects. */
export class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  private readonly max: number;

  constructor(max: number) {
    this.max = max;
  }

  async run<T>(f: () => Promise<T>): Promise<T> {
    if (this.active >= this.max) await new Promise<void>((r) => this.waiting.push(r));
    this.active++;
    try {
      return await f();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }
}

/** Running, Ready and not being deleted: a pod that serves, so one to measure. */
export function isServing(p: PodView): boolean {
  return (
    !p.metadata.deletionTimestamp &&
    p.status?.phase === 'Running' &&
    !!p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')
  );
}

export async function measure(opts: {
  namespace: string;
  pods: readonly PodView[];
  metric: AutoscalingMetric;
  targets: TargetResolver;
  limiter: Limiter;
  timeoutMs: number;
}): Promise<Measurement> {
  const results = await Promise.all(
    opts.pods.filter(isServing).map(async (p) => {
      const pod = p.metadata.name;
      const target = opts.targets.resolve({ namespace: opts.namespace, name: pod, podIP: p.status?.podIP });
      if ('error' in target) return { pod, error: target.error };
      try {
        return { pod, value: await opts.limiter.run(() => scrape(target.url, opts.metric, opts.timeoutMs)) };
      } catch (e) {
        return { pod, error: (e as Error).message };
      }
    }),
  );
  const m: Measurement = { total: 0, answered: 0, errors: [] };
  for (const r of results) {
    if (r.value !== undefined) {
      m.total += r.value;
      m.answered++;
    } else {
      m.errors.push(`${r.pod}: ${r.error}`);
    }
  }
  return m;
}
