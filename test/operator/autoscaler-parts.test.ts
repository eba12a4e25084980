/**
 * The autoscaler's small parts: the Prometheus text reader, the metric per the contract, scrape
 * targets (pod IP, file map), the spec defaults, the HPA it emits in hpa mode and the status it mirrors
 * from one.
 */
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { InferenceDeployment } from '../../operator/src/api/types.ts';
import { hpaStatus, parseQuantity, toQuantity } from '../../operator/src/autoscaler/hpa-status.ts';
import { autoscalingMode, policyOf } from '../../operator/src/autoscaler/policy.ts';
import { PromParseError, parsePromText } from '../../operator/src/autoscaler/prom-text.ts';
import { metricValue, scrape } from '../../operator/src/autoscaler/scrape.ts';
import { FileMapTargets, PodIpTargets } from '../../operator/src/autoscaler/targets.ts';
import { planFor } from '../../operator/src/plan/plan.ts';

const EXPOSITION = `# HELP pagoda_num_requests_running Sequences in the running batch.
# TYPE pagoda_num_requests_running gauge
pagoda_num_requests_running{model_name="SmolLM2-135M-Instruct"} 3
# HELP vllm:num_requests_running Sequences in the running batch.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="SmolLM2-135M-Instruct"} 3
# TYPE pagoda_num_requests_waiting gauge
pagoda_num_requests_waiting{model_name="SmolLM2-135M-Instruct"} 2
# TYPE pagoda_kv_cache_usage_ratio gauge
pagoda_kv_cache_usage_ratio{model_name="SmolLM2-135M-Instruct"} 0.4375
# TYPE pagoda_time_to_first_token_seconds histogram
pagoda_time_to_first_token_seconds_bucket{le="+Inf",model_name="SmolLM2-135M-Instruct"} 12
pagoda_info{model_name="a \\"quoted\\" name, with\\\\ escapes\\n",device="cpu"} 1 1733050000000
pagoda_process_cpu_seconds_total 1.5e+2
`;

describe('Prometheus text format', () => {
  it('reads names, labels (with escapes), values and optional timestamps; skips comments', () => {
    const samples = parsePromText(EXPOSITION);
    expect(samples).toHaveLength(7);
    expect(samples[0]).toEqual({
      name: 'pagoda_num_requests_running',
      labels: { model_name: 'SmolLM2-135M-Instruct' },
      value: 3,
    });
    expect(samples.find((s) => s.name === 'vllm:num_requests_running')?.value).toBe(3);
    expect(samples.find((s) => s.name === 'pagoda_info')?.labels).toEqual({
      model_name: 'a "quoted" name, with\\ escapes\n',
      device: 'cpu',
    });
    expect(samples.at(-1)?.value).toBe(150);
  });

  it('parses only what keep() accepts', () => {
    const samples = parsePromText(EXPOSITION, (n) => n === 'pagoda_kv_cache_usage_ratio');
    expect(samples.map((s) => s.value)).toEqual([0.4375]);
  });

  it.each([
    ['NaN', Number.NaN],
    ['+Inf', Number.POSITIVE_INFINITY],
    ['-Inf', Number.NEGATIVE_INFINITY],
    ['-1.5e-3', -0.0015],
    ['.5', 0.5],
  ])('reads the value %s', (text, value) => {
    expect(parsePromText(`m ${text}`)[0]?.value).toBe(value);
  });

  it.each([
    ['m{a="1"', 'unterminated label set'],
    ['m{a="1} 2', 'unterminated value of label a'],
    ['m{a=1} 2', 'quoted value expected for label a'],
    ['m 0x10', 'bad value 0x10'],
    ['m', 'value expected'],
    ['m 1 2 3', 'value expected'],
    ['m 1 soon', 'bad timestamp soon'],
    ['9m 1', 'bad metric name'],
  ])('refuses %s with a line number and what is wrong', (line, what) => {
    expect(() => parsePromText(`# ok\n${line}\n`)).toThrow(PromParseError);
    expect(() => parsePromText(`# ok\n${line}\n`)).toThrow(`metrics line 2: ${what}`);
  });
});

describe('the metric per the contract', () => {
  it('requests = running + waiting; kvCacheUsage = the ratio', () => {
    expect(metricValue(EXPOSITION, 'requests')).toBe(5);
    expect(metricValue(EXPOSITION, 'kvCacheUsage')).toBe(0.4375);
  });

  it('says which contract metric is missing', () => {
    expect(() => metricValue('pagoda_num_requests_running 1\n', 'requests')).toThrow(
      'pagoda_num_requests_waiting is not exposed: not a Pagoda runtime, or one older than metrics contract 1',
    );
    expect(() => metricValue('pagoda_kv_cache_usage_ratio NaN\n', 'kvCacheUsage')).toThrow('has the value NaN');
  });

  it('scrapes over HTTP, and reports status codes, refusals, timeouts and endless bodies as sentences', async () => {
    let endlessBytes = 0;
    const server = createServer((req, res) => {
      if (req.url === '/metrics') res.end(EXPOSITION);
      else if (req.url === '/slow/metrics') setTimeout(() => res.end(EXPOSITION), 2000);
      else if (req.url === '/endless/metrics') {
        // chunked, no content-length, never ends: the scraper must stop reading, not buffer it all
        const chunk = Buffer.alloc(64 << 10, 'x');
        const more = () => {
          while (!res.destroyed && res.write(chunk)) endlessBytes += chunk.length;
          if (!res.destroyed) res.once('drain', more);
        };
        more();
      } else res.writeHead(503).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    try {
      expect(await scrape(`${base}/metrics`, 'requests', 1000)).toBe(5);
      await expect(scrape(`${base}/down`, 'requests', 1000)).rejects.toThrow('HTTP 503');
      await expect(scrape(`${base}/slow/metrics`, 'requests', 200)).rejects.toThrow('no answer in 200 ms');
      await expect(scrape(`${base}/endless/metrics`, 'requests', 5000)).rejects.toThrow(
        "more than 4194304 bytes, more than a runtime's metrics",
      );
      expect(endlessBytes).toBeLessThan(64 << 20);
      const closed = createServer();
      await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
      const port = (closed.address() as { port: number }).port;
      await new Promise((r) => closed.close(r));
      await expect(scrape(`http://127.0.0.1:${port}/metrics`, 'requests', 1000)).rejects.toThrow('ECONNREFUSED');
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});

describe('scrape targets', () => {
  it('pod IP and the runtime port', () => {
    const t = new PodIpTargets();
    expect(t.resolve({ namespace: 'ml', name: 'p', podIP: '10.1.2.3' })).toEqual({
      url: 'http://10.1.2.3:8000/metrics',
    });
    expect(t.resolve({ namespace: 'ml', name: 'p', podIP: 'fd00::5' })).toEqual({
      url: 'http://[fd00::5]:8000/metrics',
    });
    expect(t.resolve({ namespace: 'ml', name: 'p' })).toEqual({ error: 'the pod has no IP yet' });
  });

  it('a file map, re-read when replaced', () => {
    const dir = mkdtempSync(join(tmpdir(), 'targets-'));
    const path = join(dir, 'map.json');
    const t = new FileMapTargets(path);
    expect('error' in t.resolve({ namespace: 'ml', name: 'a' })).toBe(true);
    const write = (map: unknown) => {
      writeFileSync(`${path}.tmp`, JSON.stringify(map));
      renameSync(`${path}.tmp`, path);
    };
    write({ 'ml/a': 'http://127.0.0.1:4001/' });
    expect(t.resolve({ namespace: 'ml', name: 'a' })).toEqual({ url: 'http://127.0.0.1:4001/metrics' });
    expect(t.resolve({ namespace: 'ml', name: 'b' })).toEqual({
      error: 'the metrics target map has no entry for ml/b',
    });
    write({ 'ml/a': 'http://127.0.0.1:4001', 'ml/b': 'http://127.0.0.1:4002' });
    expect(t.resolve({ namespace: 'ml', name: 'b' })).toEqual({ url: 'http://127.0.0.1:4002/metrics' });
    write(['not', 'a', 'map']);
    expect(t.resolve({ namespace: 'ml', name: 'a' })).toMatchObject({
      error: expect.stringContaining('expected an object'),
    });
    rmSync(dir, { recursive: true });
  });
});

function cr(autoscaling?: InferenceDeployment['spec']['autoscaling']): InferenceDeployment {
  return {
    apiVersion: 'inference.pagoda.dev/v1alpha1',
    kind: 'InferenceDeployment',
    metadata: { name: 'chat', namespace: 'ml', uid: 'uid-1', generation: 1 },
    spec: {
      model: { name: 'Qwen/Qwen3-8B', source: { pvc: { claimName: 'weights' } } },
      gpu: { product: 'NVIDIA-H100-80GB-HBM3' },
      ...(autoscaling ? { autoscaling } : {}),
    },
  };
}

describe('policy defaults', () => {
  it('absent means none; present means builtin with the CRD defaults', () => {
    expect(autoscalingMode(cr())).toBe('none');
    expect(autoscalingMode(cr({ maxReplicas: 2, target: 4 }))).toBe('builtin');
    expect(policyOf(cr({ maxReplicas: 2, target: 4 }))).toEqual({
      metric: 'requests',
      minReplicas: 1,
      maxReplicas: 2,
      target: 4,
      tolerance: 0.1,
      metricWindowMs: 30_000,
      scaleUpWindowMs: 0,
      scaleDownWindowMs: 300_000,
    });
    expect(policyOf(cr({ mode: 'none' }))).toBe('autoscaling is off');
    expect(policyOf(cr({ target: 4 }))).toContain('required');
  });
});

describe('hpa mode', () => {
  const children = (c: InferenceDeployment) => {
    const r = planFor(c, { defaultImage: 'img' });
    if (!r.planned) throw new Error(r.message);
    return r.children;
  };

  it('emits an autoscaling/v2 HPA on the scale subresource with a Pods metric and the windows', () => {
    const hpa = children(
      cr({
        mode: 'hpa',
        minReplicas: 2,
        maxReplicas: 8,
        metric: 'kvCacheUsage',
        target: 0.75,
        scaleDown: { stabilizationWindowSeconds: 600 },
      }),
    ).horizontalPodAutoscaler;
    expect(hpa).toMatchObject({
      apiVersion: 'autoscaling/v2',
      kind: 'HorizontalPodAutoscaler',
      metadata: {
        name: 'chat',
        namespace: 'ml',
        labels: { 'inference.pagoda.dev/name': 'chat', 'app.kubernetes.io/managed-by': 'pagoda-operator' },
        ownerReferences: [{ kind: 'InferenceDeployment', name: 'chat', uid: 'uid-1', controller: true }],
      },
      spec: {
        scaleTargetRef: { apiVersion: 'inference.pagoda.dev/v1alpha1', kind: 'InferenceDeployment', name: 'chat' },
        minReplicas: 2,
        maxReplicas: 8,
        metrics: [
          {
            type: 'Pods',
            pods: {
              metric: { name: 'pagoda_kv_cache_usage_ratio' },
              target: { type: 'AverageValue', averageValue: '750m' },
            },
          },
        ],
        behavior: { scaleUp: { stabilizationWindowSeconds: 0 }, scaleDown: { stabilizationWindowSeconds: 600 } },
      },
    });
    const requests = children(cr({ mode: 'hpa', maxReplicas: 4, target: 16 })).horizontalPodAutoscaler;
    expect(requests?.spec).toMatchObject({
      metrics: [{ pods: { metric: { name: 'pagoda_num_requests' }, target: { averageValue: '16' } } }],
    });
  });

  it('emits none in builtin mode, mode none, or without autoscaling', () => {
    for (const a of [undefined, { maxReplicas: 4, target: 16 }, { mode: 'none' as const }]) {
      expect(children(cr(a)).horizontalPodAutoscaler).toBeUndefined();
    }
  });

  it('quantities both ways', () => {
    expect([toQuantity(2), toQuantity(2.5), toQuantity(0.8)]).toEqual(['2', '2500m', '800m']);
    expect([parseQuantity('2500m'), parseQuantity('3'), parseQuantity('1k'), parseQuantity('x')]).toEqual([
      2.5,
      3,
      1000,
      undefined,
    ]);
  });

  it('status mirrors the HPA and the condition that explains it', () => {
    expect(hpaStatus('chat', undefined)).toMatchObject({
      mode: 'hpa',
      horizontalPodAutoscaler: 'chat',
      reason: 'Creating',
    });
    const s = hpaStatus('chat', {
      metadata: { name: 'chat' },
      status: {
        currentReplicas: 2,
        desiredReplicas: 3,
        lastScaleTime: '2026-12-01T10:00:00Z',
        currentMetrics: [{ type: 'Pods', pods: { current: { averageValue: '1500m' } } }],
        conditions: [
          { type: 'AbleToScale', status: 'True', reason: 'SucceededGetScale', message: 'ok' },
          {
            type: 'ScalingActive',
            status: 'False',
            reason: 'FailedGetPodsMetric',
            message: 'unable to get metric pagoda_num_requests',
          },
        ],
      },
    });
    expect(s).toEqual({
      mode: 'hpa',
      horizontalPodAutoscaler: 'chat',
      currentReplicas: 2,
      desiredReplicas: 3,
      lastScaleTime: '2026-12-01T10:00:00Z',
      currentValue: 1.5,
      reason: 'FailedGetPodsMetric',
      message: 'HorizontalPodAutoscaler chat: unable to get metric pagoda_num_requests',
    });
  });
});
