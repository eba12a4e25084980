/** Scrapes a server's /metrics and reads samples out of the Prometheus text format. */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Scrape {
  samples: Sample[];
  /** `# TYPE` of each metric family */
  types: Map<string, string>;
  /** sum of the samples named `name` whose labels include `labels`; throws when there is none, unless
   *  `fallback` is given (a labelled counter appears only once it has counted something) */
  get(name: string, labels?: Record<string, string>, fallback?: number): number;
  has(name: string): boolean;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parseMetrics(text: string): Scrape {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line.startsWith('# TYPE ')) {
      const [, , name, type] = line.split(' ');
      types.set(name!, type!);
      continue;
    }
    if (line === '' || line.startsWith('#')) continue;
    const m = LINE.exec(line);
    if (!m) throw new Error(`unparsable metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(LABEL)) labels[l[1]!] = l[2]!;
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return {
    samples,
    types,
    get(name, want = {}, fallback) {
      let sum = 0;
      let found = false;
      for (const s of samples) {
        if (s.name !== name) continue;
        if (Object.entries(want).some(([k, v]) => s.labels[k] !== v)) continue;
        sum += s.value;
        found = true;
      }
      if (!found && fallback !== undefined) return fallback;
      if (!found) throw new Error(`metric ${name}${JSON.stringify(want)} is not exposed`);
      return sum;
    },
    has(name) {
      return samples.some((s) => s.name === name);
    },
  };
}

export async function scrape(baseUrl: string): Promise<Scrape> {
  const r = await fetch(`${baseUrl}/metrics`);
  if (r.status !== 200) throw new Error(`/metrics answered ${r.status}`);
  return parseMetrics(await r.text());
}

/** Polls until the engine holds no sequence and no KV block (aborts settle within a step or two). */
export async function waitForIdle(baseUrl: string, timeoutMs = 30_000): Promise<Scrape> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = await scrape(baseUrl);
    const idle =
      m.get('pagoda_num_requests_running') === 0 &&
      m.get('pagoda_num_requests_waiting') === 0 &&
      m.get('pagoda_kv_cache_usage_ratio') === 0;
    if (idle || Date.now() > deadline) return m;
    await new Promise((r) => setTimeout(r, 50));
  }
}
