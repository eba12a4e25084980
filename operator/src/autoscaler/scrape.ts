/**
 * Reads one pod's autoscaling metric from its /metrics, per the runtime's metrics contract
 * (docs/metrics.md): requests = pagoda_num_requests_running + pagoda_num_requests_waiting;
 * kvCacheUsage = pagoda_kv_cache_usage_ratio. Samples of a name are summed over their labels (one
 * model per runtime: one sample each). Any failure is an error with a sentence a user can act on.
 */
import type { AutoscalingMetric } from '../api/types.ts';
import { parsePromText } from './prom-text.ts';

export const CONTRACT_METRICS: Record<AutoscalingMetric, readonly string[]> = {
  requests: ['pagoda_num_requests_running', 'pagoda_num_requests_waiting'],
  kvCacheUsage: ['pagoda_kv_cache_usage_ratio'],
};

/** Larger expositions are refused (the runtime's is tens of kilobytes). */
const MAX_BYTES = 4 << 20;

/** The metric's value from an exposition's text. */
export function metricValue(text: string, metric: AutoscalingMetric): number {
  const names = CONTRACT_METRICS[metric];
  const samples = parsePromText(text, (n) => names.includes(n));
  let sum = 0;
  for (const name of names) {
    const of = samples.filter((s) => s.name === name);
    if (of.length === 0) {
      throw new Error(`${name} is not exposed: not a Pagoda runtime, or one older than metrics contract 1`);
    }
    for (const s of of) {
      if (!Number.isFinite(s.value) || s.value < 0) throw new Error(`${name} has the value ${s.value}`);
      sum += s.value;
    }
  }
  return sum;
}

/** The body as text, read chunk by chunk: a body without a length that goes past `max` bytes is cut off
 * there instead of being buffered whole. */
async function readAtMost(res: Response, max: number, url: string): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > max) {
      await reader.cancel();
      throw new Error(`GET ${url}: more than ${max} bytes, more than a runtime's metrics`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** GETs url and returns the metric's value; rejects with a short reason. */
export async function scrape(url: string, metric: AutoscalingMetric, timeoutMs: number): Promise<number> {
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), headers: { Accept: 'text/plain' } });
  } catch (e) {
    const err = e as Error & { cause?: { code?: string; message?: string } };
    if (err.name === 'TimeoutError') throw new Error(`GET ${url}: no answer in ${timeoutMs} ms`);
    // fetch says only "fetch failed"; the cause has the reason (ECONNREFUSED, EHOSTUNREACH, …).
    throw new Error(`GET ${url}: ${err.cause?.code ?? err.cause?.message ?? err.message}`);
  }
  if (!res.ok) {
    await res.body?.cancel();
    throw new Error(`GET ${url}: HTTP ${res.status}`);
  }
  const length = Number(res.headers.get('content-length') ?? 0);
  if (length > MAX_BYTES) {
    await res.body?.cancel();
    throw new Error(`GET ${url}: ${length} bytes is more than a runtime's metrics`);
  }
  const text = await readAtMost(res, MAX_BYTES, url);
  try {
    return metricValue(text, metric);
  } catch (e) {
    throw new Error(`${url}: ${(e as Error).message}`);
  }
}
