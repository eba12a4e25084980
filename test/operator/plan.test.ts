/** The pure planner: sizing arithmetic, TP choice, refusals with what would fit, and the children it emits. */
import { describe, expect, it } from 'vitest';
import type { InferenceDeployment, InferenceDeploymentSpec } from '../../operator/src/api/types.ts';
import { GPU_PRODUCTS, lookupModel, MODEL_CATALOG } from '../../operator/src/plan/catalog.ts';
import { CONFIG_HASH_ANNOTATION, NAME_LABEL } from '../../operator/src/plan/names.ts';
import { type PlanResult, planFor } from '../../operator/src/plan/plan.ts';
import { budgetFor, GIB, size, tensorParallelProblem } from '../../operator/src/plan/sizing.ts';

const H100 = 'NVIDIA-H100-80GB-HBM3';

function cr(
  spec: Partial<InferenceDeploymentSpec> & { model?: InferenceDeploymentSpec['model'] },
): InferenceDeployment {
  return {
    apiVersion: 'inference.pagoda.dev/v1alpha1',
    kind: 'InferenceDeployment',
    metadata: { name: 'chat', namespace: 'ml', uid: 'uid-1', generation: 1 },
    spec: {
      model: { name: 'Qwen/Qwen3-8B', source: { pvc: { claimName: 'weights' } } },
      gpu: { product: H100 },
      ...spec,
    },
  };
}

const model = (name: string): InferenceDeploymentSpec['model'] => ({ name, source: { pvc: { claimName: 'weights' } } });

function planned(r: PlanResult): Extract<PlanResult, { planned: true }> {
  if (!r.planned) throw new Error(`expected a plan, got ${r.reason}: ${r.message}`);
  return r;
}

const opts = { defaultImage: 'ghcr.io/pagoda-ai/pagoda-runtime:0.1.0' };

describe('sizing arithmetic', () => {
  it('counts weights at 2 bytes per parameter and KV per token from the shape', () => {
    const arch = MODEL_CATALOG['meta-llama/Llama-3.1-8B-Instruct']!;
    const b = budgetFor(
      { modelName: 'l', arch, maxModelLen: 8192, gpuMemoryGiB: 80, gpuMemoryUtilization: 0.9, gpusPerNode: 8 },
      1,
    );
    expect(b.weightsGiB).toBeCloseTo((8_030_261_248 * 2) / GIB, 6);
    // 2 (K,V) × 32 layers × 8 KV heads × 128 head dim × 2 bytes
    expect(b.kvBytesPerToken).toBe(131_072);
    expect(b.kvGiBForMaxModelLen).toBeCloseTo(1, 6);
    expect(b.usableGiBPerGpu).toBeCloseTo(72, 6);
  });

  it('shards KV heads up to TP = kvHeads and replicates them beyond', () => {
    const arch = { parameters: 1e9, layers: 10, hiddenSize: 1024, attentionHeads: 16, kvHeads: 2, headDim: 64 };
    const input = {
      modelName: 'm',
      arch,
      maxModelLen: 1024,
      gpuMemoryGiB: 80,
      gpuMemoryUtilization: 0.9,
      gpusPerNode: 8,
    };
    const perToken = (tp: number) => budgetFor(input, tp).kvBytesPerToken;
    expect(perToken(1)).toBe(2 * 10 * 2 * 64 * 2);
    expect(perToken(2)).toBe(2 * 10 * 1 * 64 * 2);
    expect(perToken(4)).toBe(perToken(2));
    expect(perToken(8)).toBe(perToken(2));
  });

  it.each([
    [1, 'ok'],
    [3, 'not one of 1, 2, 4, 8'],
    [16, 'not one of 1, 2, 4, 8'],
    [8, 'exceeds gpu.perNode (4)'],
  ] as const)('rejects TP %d unless it is a power of two within the node (%s)', (tp, want) => {
    const arch = MODEL_CATALOG['Qwen/Qwen3-8B']!;
    const problem = tensorParallelProblem(arch, tp, 4);
    if (want === 'ok') expect(problem).toBeUndefined();
    else expect(problem).toContain(want);
  });
});

describe('tensor-parallel choice (table)', () => {
  // model, GPU product, maxModelLen, perNode, explicit TP → expected TP or refusal reason
  const table: [string, string, number | undefined, number | undefined, number | undefined, number | string][] = [
    ['Qwen/Qwen3-0.6B', H100, 32768, 8, undefined, 1],
    ['Qwen/Qwen3-8B', H100, 32768, 8, undefined, 1],
    ['Qwen/Qwen3-8B', 'NVIDIA-L4', 32768, 8, undefined, 2],
    ['Qwen/Qwen3-14B', H100, 32768, 8, undefined, 1],
    ['Qwen/Qwen3-14B', 'NVIDIA-L4', 32768, 8, undefined, 2],
    ['Qwen/Qwen3-32B', H100, 32768, 8, undefined, 2],
    ['Qwen/Qwen3-32B', H100, 32768, 8, 1, 'DoesNotFit'],
    ['Qwen/Qwen3-32B', H100, 32768, 8, 4, 4],
    ['Qwen/Qwen3-32B', 'NVIDIA-H200', 32768, 8, undefined, 1],
    ['meta-llama/Llama-3.1-8B-Instruct', H100, undefined, 8, undefined, 1],
    ['meta-llama/Llama-3.1-70B-Instruct', H100, undefined, 8, undefined, 4],
    ['meta-llama/Llama-3.1-70B-Instruct', H100, 8192, 8, undefined, 4],
    ['meta-llama/Llama-3.1-70B-Instruct', 'NVIDIA-L4', undefined, 8, undefined, 'DoesNotFit'],
    ['meta-llama/Llama-3.1-70B-Instruct', H100, undefined, 2, undefined, 'DoesNotFit'],
    ['HuggingFaceTB/SmolLM2-135M-Instruct', 'Tesla-T4', undefined, 8, undefined, 1],
    ['HuggingFaceTB/SmolLM2-135M-Instruct', 'Tesla-T4', undefined, 8, 2, 'InvalidTensorParallel'],
    ['Qwen/Qwen2.5-7B-Instruct', 'Tesla-T4', undefined, 8, undefined, 2],
    ['Qwen/Qwen2.5-7B-Instruct', H100, undefined, 8, 8, 'InvalidTensorParallel'],
    ['Qwen/Qwen3-4B', 'NVIDIA-A10G', 40960, 8, undefined, 1],
  ];

  it.each(table)('%s on %s, maxModelLen %s, perNode %s, tensor %s → %s', (name, product, len, perNode, tp, want) => {
    const r = planFor(
      cr({
        model: model(name),
        gpu: { product, ...(perNode ? { perNode } : {}) },
        ...(len ? { maxModelLen: len } : {}),
        ...(tp ? { parallelism: { tensor: tp } } : {}),
      }),
      opts,
    );
    if (typeof want === 'number') {
      const p = planned(r).plan;
      expect(p.tensorParallelSize).toBe(want);
      expect(p.tensorParallelSource).toBe(tp ? 'Spec' : 'Computed');
      expect(p.weightsGiBPerGpu + p.overheadGiBPerGpu + p.kvCacheGiBPerGpu).toBeCloseTo(p.usableGiBPerGpu, 1);
      expect(p.maxKvTokens).toBeGreaterThanOrEqual(p.maxModelLen);
    } else {
      expect(r.planned).toBe(false);
      if (!r.planned) expect(r.reason).toBe(want);
    }
  });

  it('picks the smallest fitting size, never a larger one', () => {
    for (const [name, arch] of Object.entries(MODEL_CATALOG)) {
      for (const memoryGiB of [16, 24, 40, 80, 140]) {
        const input = {
          modelName: name,
          arch,
          maxModelLen: 4096,
          gpuMemoryGiB: memoryGiB,
          gpuMemoryUtilization: 0.9,
          gpusPerNode: 8,
        };
        const s = size(input);
        if (!s.ok) continue;
        for (const smaller of [1, 2, 4, 8].filter((t) => t < s.budget.tensorParallelSize)) {
          if (!tensorParallelProblem(arch, smaller, 8)) expect(budgetFor(input, smaller).fits).toBe(false);
        }
      }
    }
  });
});

describe('refusals say what would fit', () => {
  it('explicit TP too small names the TP, the context and the memory that would fit', () => {
    const r = planFor(cr({ model: model('Qwen/Qwen3-32B'), maxModelLen: 32768, parallelism: { tensor: 1 } }), opts);
    expect(r).toMatchObject({ planned: false, reason: 'DoesNotFit' });
    if (r.planned) return;
    expect(r.message).toContain('parallelism.tensor=1 does not fit Qwen/Qwen3-32B');
    expect(r.message).toContain('77.1 GiB per GPU > 71.6 GiB usable');
    expect(r.message).toMatch(/Would fit: TP=2 .*; or maxModelLen ≤ \d+ at TP=1; or GPUs with ≥ [\d.]+ GiB at TP=1\./);
  });

  it('a model too large for any TP names the largest TP tried and the GPU memory it needs', () => {
    const r = planFor(cr({ model: model('meta-llama/Llama-3.1-70B-Instruct'), gpu: { product: 'NVIDIA-L4' } }), opts);
    if (r.planned) throw new Error('expected refusal');
    expect(r.message).toMatch(/^No tensor-parallel size fits meta-llama\/Llama-3.1-70B-Instruct \(tried 1, 2, 4, 8/);
    expect(r.message).toMatch(/at TP=8, .* > 20.3 GiB usable/);
    expect(r.message).toMatch(/maxModelLen ≤ \d+ at TP=8; or GPUs with ≥ 27.9 GiB at TP=8/);
  });

  it('weights that cannot fit at all suggest only bigger GPUs', () => {
    const r = planFor(
      cr({ model: model('meta-llama/Llama-3.1-70B-Instruct'), gpu: { memoryGiB: 8, perNode: 8 }, maxModelLen: 4096 }),
      opts,
    );
    if (r.planned) throw new Error('expected refusal');
    expect(r.message).not.toContain('maxModelLen ≤');
    expect(r.message).toContain('GPUs with ≥');
  });

  it.each([
    [{ model: model('acme/unknown-7b') }, 'UnknownModel', 'set spec.model.architecture'],
    [{ gpu: { product: 'Acme-X1' } }, 'GpuMemoryUnknown', 'gpu.product Acme-X1 is not in the built-in GPU table'],
    [{ gpu: {} }, 'GpuMemoryUnknown', 'gpu.product is not set; set spec.gpu.memoryGiB'],
    [{ maxModelLen: 65536 }, 'MaxModelLenTooLong', 'exceeds the 40960-token context'],
    [
      {
        model: {
          ...model('acme/custom'),
          architecture: { parameters: 1e9, layers: 8, hiddenSize: 1024, attentionHeads: 8, kvHeads: 8, headDim: 128 },
        },
      },
      'MaxModelLenUnknown',
      'spec.maxModelLen is not set',
    ],
  ] as const)('%j → %s', (spec, reason, text) => {
    const r = planFor(cr(spec as Partial<InferenceDeploymentSpec>), opts);
    expect(r).toMatchObject({ planned: false, reason });
    if (!r.planned) expect(r.message).toContain(text);
  });
});

describe('catalog', () => {
  it('knows the required models, case-insensitively, with consistent head counts', () => {
    for (const name of [
      'Qwen/Qwen3-0.6B',
      'Qwen/Qwen3-1.7B',
      'Qwen/Qwen3-4B',
      'Qwen/Qwen3-8B',
      'Qwen/Qwen3-14B',
      'Qwen/Qwen3-32B',
      'meta-llama/Llama-3.1-8B-Instruct',
      'meta-llama/Llama-3.1-70B-Instruct',
      'HuggingFaceTB/SmolLM2-135M-Instruct',
      'Qwen/Qwen2.5-7B-Instruct',
    ]) {
      const arch = lookupModel(name.toLowerCase());
      expect(arch, name).toBeDefined();
      expect(arch!.attentionHeads % arch!.kvHeads).toBe(0);
    }
    expect(lookupModel('meta-llama/Llama-3.1-70B')).toBe(MODEL_CATALOG['meta-llama/Llama-3.1-70B-Instruct']);
  });

  it('resolves the architecture from the Hugging Face repo when the served name is an alias', () => {
    const r = planFor(
      cr({ model: { name: 'chat', source: { huggingFace: { repo: 'Qwen/Qwen3-32B' } } }, maxModelLen: 32768 }),
      opts,
    );
    expect(planned(r).plan.tensorParallelSize).toBe(2);
  });

  it('custom architecture overrides the catalog', () => {
    const r = planFor(
      cr({
        model: {
          ...model('Qwen/Qwen3-8B'),
          architecture: {
            parameters: 60e9,
            layers: 60,
            hiddenSize: 8192,
            attentionHeads: 64,
            kvHeads: 8,
            headDim: 128,
          },
        },
        maxModelLen: 8192,
      }),
      opts,
    );
    expect(planned(r).plan.tensorParallelSize).toBe(2);
  });

  it('GPU memory comes from spec.gpu.memoryGiB before the product table', () => {
    const r = planFor(cr({ gpu: { product: H100, memoryGiB: 40 }, maxModelLen: 4096 }), opts);
    expect(planned(r).plan.gpuMemoryGiB).toBe(40);
    expect(GPU_PRODUCTS[H100]).toBeCloseTo(79.6);
  });
});

describe('children', () => {
  // biome-ignore lint/suspicious/noExplicitAny: the tests dig into nested Kubernetes objects by path
  type Obj = Record<string, any>;
  const children = (spec: Partial<InferenceDeploymentSpec>) => planned(planFor(cr(spec), opts)).children;
  const podSpec = (spec: Partial<InferenceDeploymentSpec>): Obj =>
    (children(spec).deployment.spec as Obj).template.spec;

  it('Deployment requests TP GPUs and runs `pagoda serve` with the planned flags', () => {
    const r = planned(planFor(cr({ model: model('Qwen/Qwen3-32B'), maxModelLen: 32768, replicas: 3 }), opts));
    const dep = r.children.deployment as Obj;
    expect(dep.spec.replicas).toBe(3);
    expect(r.plan.totalGpus).toBe(6);
    const c = dep.spec.template.spec.containers[0];
    expect(c.resources.limits['nvidia.com/gpu']).toBe('2');
    expect(c.resources.requests['nvidia.com/gpu']).toBe('2');
    expect(c.image).toBe(opts.defaultImage);
    expect(c.command).toEqual(['pagoda']);
    expect(c.args.join(' ')).toBe(
      'serve --model /models --served-model-name Qwen/Qwen3-32B --host 0.0.0.0 --port 8000 --device cuda ' +
        '--tensor-parallel-size 2 --max-model-len 32768 --max-num-seqs 256 --gpu-memory-utilization 0.9 --drain-timeout 30',
    );
    expect(r.endpoint).toBe('http://chat.ml.svc:8000/v1');
    expect(r.selector).toBe(`${NAME_LABEL}=chat`);
  });

  it('probes, shm, security context, grace period, scheduling', () => {
    const s = podSpec({
      runtime: { drainTimeoutSeconds: 60, extraArgs: ['--enable-prefix-caching'] },
      podTemplate: { nodeSelector: { pool: 'gpu' }, tolerations: [{ key: 'spot', operator: 'Exists' }] },
    });
    const c = s.containers[0];
    expect(c.startupProbe.httpGet.path).toBe('/health/ready');
    expect(c.startupProbe.periodSeconds * c.startupProbe.failureThreshold).toBeGreaterThanOrEqual(600);
    expect(c.readinessProbe.httpGet.path).toBe('/health/ready');
    expect(c.livenessProbe.httpGet.path).toBe('/health');
    expect(c.args.at(-1)).toBe('--enable-prefix-caching');
    expect(s.terminationGracePeriodSeconds).toBeGreaterThan(60);
    expect(s.volumes.find((v: Obj) => v.name === 'dshm').emptyDir.medium).toBe('Memory');
    expect(c.volumeMounts.map((m: Obj) => m.mountPath)).toEqual(['/models', '/dev/shm', '/tmp']);
    expect(s.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    expect(c.securityContext).toMatchObject({ allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
    expect(s.automountServiceAccountToken).toBe(false);
    expect(s.nodeSelector).toEqual({ pool: 'gpu', 'nvidia.com/gpu.product': H100 });
    expect(s.tolerations).toEqual([
      { key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' },
      { key: 'spot', operator: 'Exists' },
    ]);
  });

  it('large models get a longer startup allowance', () => {
    const small = podSpec({}).containers[0].startupProbe;
    const big = podSpec({ model: model('meta-llama/Llama-3.1-70B-Instruct') }).containers[0].startupProbe;
    expect(big.failureThreshold).toBeGreaterThan(small.failureThreshold);
  });

  it('Hugging Face source downloads in an init container with the token from the Secret', () => {
    const s = podSpec({
      model: {
        name: 'Qwen/Qwen3-8B',
        source: { huggingFace: { repo: 'Qwen/Qwen3-8B', revision: 'abc123', tokenSecretRef: { name: 'hf' } } },
      },
    });
    const init = s.initContainers[0];
    expect(init.args).toEqual([
      'download',
      '--repo',
      'Qwen/Qwen3-8B',
      '--revision',
      'abc123',
      '--dir',
      '/models/Qwen/Qwen3-8B',
    ]);
    expect(init.env[0]).toEqual({ name: 'HF_TOKEN', valueFrom: { secretKeyRef: { name: 'hf', key: 'token' } } });
    expect(s.containers[0].args.slice(1, 3)).toEqual(['--model', '/models/Qwen/Qwen3-8B']);
    expect(s.volumes[0].emptyDir.sizeLimit).toMatch(/^\d+Gi$/);
  });

  it.each([
    [{ pvc: { claimName: 'w', subPath: 'qwen' } }, { persistentVolumeClaim: { claimName: 'w', readOnly: true } }],
    [{ hostPath: { path: '/data/qwen' } }, { hostPath: { path: '/data/qwen', type: 'Directory' } }],
  ])('model volume for %j', (source, volume) => {
    const s = podSpec({ model: { name: 'Qwen/Qwen3-8B', source } });
    expect(s.volumes[0]).toEqual({ name: 'model', ...volume });
    expect(s.initContainers).toBeUndefined();
  });

  it('Service on port 8000 and a PDB, all owned by the CR', () => {
    const ch = children({});
    for (const obj of [ch.deployment, ch.service, ch.podDisruptionBudget]) {
      expect(obj.metadata.ownerReferences).toEqual([
        {
          apiVersion: 'inference.pagoda.dev/v1alpha1',
          kind: 'InferenceDeployment',
          name: 'chat',
          uid: 'uid-1',
          controller: true,
          blockOwnerDeletion: true,
        },
      ]);
    }
    expect((ch.service.spec as Obj).ports).toEqual([
      { name: 'http', port: 8000, targetPort: 'http', protocol: 'TCP', appProtocol: 'http' },
    ]);
    expect((ch.podDisruptionBudget.spec as Obj).maxUnavailable).toBe(1);
  });

  it('the config hash changes with anything that reaches the pod, and only then', () => {
    const hash = (spec: Partial<InferenceDeploymentSpec>) =>
      (children(spec).deployment.spec as Obj).template.metadata.annotations[CONFIG_HASH_ANNOTATION];
    const base = hash({});
    expect(hash({})).toBe(base);
    expect(hash({ replicas: 5 })).toBe(base);
    expect(hash({ parallelism: { tensor: 2 } })).not.toBe(base);
    expect(hash({ runtime: { env: [{ name: 'A', value: '1' }] } })).not.toBe(base);
    expect(hash({ model: model('Qwen/Qwen3-4B') })).not.toBe(base);
  });
});
