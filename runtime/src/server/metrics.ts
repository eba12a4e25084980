/**
 * The metrics contract (docs/metrics.md): one prom-client Registry with Pagoda's own `pagoda_*` names
 * and the same values under vLLM's `vllm:*` names, so existing dashboards, routers and autoscalers work.
 * Gauges are read from the engine at scrape time; counters and histograms are fed by engine callbacks.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { Engine, FinishedSequenceStats } from '../engine/engine.ts';

export const METRICS_CONTRACT_VERSION = '1';

const TTFT_BUCKETS = [
  0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560,
];
const ITL_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];
const E2E_BUCKETS = [0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680];

type Labels = 'model_name';

/** A value published under Pagoda's name and vLLM's. */
interface Twin<M> {
  ours: M;
  theirs: M;
}

export class RuntimeMetrics {
  readonly registry = new Registry();
  private readonly model: string;
  private readonly counters: {
    prompt: Twin<Counter<Labels>>;
    generation: Twin<Counter<Labels>>;
    preemptions: Twin<Counter<Labels>>;
    prefixQueries: Twin<Counter<Labels>>;
    prefixHits: Twin<Counter<Labels>>;
  };
  private readonly success: [Counter<Labels | 'finished_reason'>, Counter<Labels | 'finished_reason'>];
  private readonly ttft: [Histogram<Labels>, Histogram<Labels>];
  private readonly itl: [Histogram<Labels>, Histogram<Labels>];
  private readonly e2e: [Histogram<Labels>, Histogram<Labels>];
  private readonly httpErrors: Counter<'status'>;
  /** engine counter values already published (counters only go up by the difference) */
  private seen = { prompt: 0, generation: 0, preemptions: 0, prefixQueries: 0, prefixHits: 0 };

  constructor(engine: Engine, modelName: string) {
    this.model = modelName;
    const registers = [this.registry];
    const labelNames = ['model_name'] as const;
    collectDefaultMetrics({ register: this.registry, prefix: 'pagoda_' });
    const sync = () => this.syncCounters(engine);
    const gaugeTwin = (ours: string, theirs: string, help: string, read: () => number) => {
      for (const name of [ours, theirs]) {
        new Gauge({
          name,
          help,
          labelNames,
          registers,
          collect() {
            this.set({ model_name: modelName }, read());
          },
        });
      }
    };
    gaugeTwin(
      'pagoda_num_requests_running',
      'vllm:num_requests_running',
      'Sequences in the running batch.',
      () => engine.numRunning,
    );
    gaugeTwin(
      'pagoda_num_requests_waiting',
      'vllm:num_requests_waiting',
      'Sequences waiting to be admitted.',
      () => engine.numWaiting,
    );
    gaugeTwin(
      'pagoda_kv_cache_usage_ratio',
      'vllm:kv_cache_usage_perc',
      'Share of KV-cache blocks in use (0..1).',
      () => {
        const s = engine.blocks.stats();
        return s.numUsed / s.numBlocks;
      },
    );
    new Gauge({
      name: 'pagoda_kv_cache_capacity_tokens',
      help: 'Tokens the KV cache holds in all.',
      labelNames,
      registers,
      collect() {
        this.set({ model_name: modelName }, engine.info.numBlocks * engine.info.blockSize);
      },
    });
    new Gauge({
      name: 'pagoda_kv_cache_blocks',
      help: 'KV-cache blocks by state: used (held by a sequence), cached (free, holding a reusable prefix), free.',
      labelNames: ['model_name', 'state'],
      registers,
      collect() {
        const s = engine.blocks.stats();
        this.set({ model_name: modelName, state: 'used' }, s.numUsed);
        this.set({ model_name: modelName, state: 'cached' }, s.numCachedFree);
        this.set({ model_name: modelName, state: 'free' }, s.numBlocks - s.numUsed - s.numCachedFree);
      },
    });
    new Gauge({
      name: 'pagoda_info',
      help: 'Constant 1, labelled with the runtime configuration.',
      labelNames: ['model_name', 'device', 'block_size', 'contract_version'],
      registers,
      collect() {
        this.set(
          {
            model_name: modelName,
            device: engine.info.device,
            block_size: String(engine.info.blockSize),
            contract_version: METRICS_CONTRACT_VERSION,
          },
          1,
        );
      },
    });
    const counterTwin = (ours: string, theirs: string, help: string) =>
      ({
        ours: new Counter({ name: ours, help, labelNames, registers, collect: sync }),
        theirs: new Counter({ name: theirs, help, labelNames, registers, collect: sync }),
      }) as Twin<Counter<Labels>>;
    this.counters = {
      prompt: counterTwin(
        'pagoda_prompt_tokens_total',
        'vllm:prompt_tokens_total',
        'Prompt tokens of requests whose prefill completed.',
      ),
      generation: counterTwin('pagoda_generation_tokens_total', 'vllm:generation_tokens_total', 'Generated tokens.'),
      preemptions: counterTwin(
        'pagoda_num_preemptions_total',
        'vllm:num_preemptions_total',
        'Sequences preempted (blocks taken back, recomputed later).',
      ),
      prefixQueries: counterTwin(
        'pagoda_prefix_cache_queries_total',
        'vllm:prefix_cache_queries_total',
        'Prompt tokens looked up in the prefix cache.',
      ),
      prefixHits: counterTwin(
        'pagoda_prefix_cache_hits_total',
        'vllm:prefix_cache_hits_total',
        'Prompt tokens found in the prefix cache.',
      ),
    };
    const successHelp = 'Finished requests by reason (stop, length, abort, error).';
    const successLabels = ['model_name', 'finished_reason'] as const;
    this.success = [
      new Counter({ name: 'pagoda_request_success_total', help: successHelp, labelNames: successLabels, registers }),
      new Counter({ name: 'vllm:request_success_total', help: successHelp, labelNames: successLabels, registers }),
    ];
    const hist = (
      ours: string,
      theirs: string,
      help: string,
      buckets: number[],
    ): [Histogram<Labels>, Histogram<Labels>] => [
      new Histogram({ name: ours, help, labelNames, buckets, registers }),
      new Histogram({ name: theirs, help, labelNames, buckets, registers }),
    ];
    this.ttft = hist(
      'pagoda_time_to_first_token_seconds',
      'vllm:time_to_first_token_seconds',
      'Time to first token.',
      TTFT_BUCKETS,
    );
    this.itl = hist(
      'pagoda_inter_token_latency_seconds',
      'vllm:inter_token_latency_seconds',
      'Time between consecutive tokens of a sequence.',
      ITL_BUCKETS,
    );
    this.e2e = hist(
      'pagoda_e2e_request_latency_seconds',
      'vllm:e2e_request_latency_seconds',
      'Arrival to last token.',
      E2E_BUCKETS,
    );
    this.httpErrors = new Counter({
      name: 'pagoda_http_errors_total',
      help: 'HTTP responses with an error status, by status.',
      labelNames: ['status'],
      registers,
    });
    engine.setObserver({ onSequenceFinished: (s) => this.onFinished(s) });
  }

  countHttpError(status: number): void {
    this.httpErrors.inc({ status: String(status) });
  }

  private syncCounters(engine: Engine): void {
    const now = {
      prompt: engine.counters.promptTokens,
      generation: engine.counters.generationTokens,
      preemptions: engine.scheduler.numPreemptions,
      prefixQueries: engine.blocks.queries * engine.blocks.blockSize,
      prefixHits: engine.blocks.hits * engine.blocks.blockSize,
    };
    for (const key of Object.keys(now) as (keyof typeof now)[]) {
      const delta = now[key] - this.seen[key];
      if (delta > 0) {
        this.counters[key].ours.inc({ model_name: this.model }, delta);
        this.counters[key].theirs.inc({ model_name: this.model }, delta);
      }
    }
    this.seen = now;
  }

  private onFinished(s: FinishedSequenceStats): void {
    const labels = { model_name: this.model };
    for (const c of this.success) c.inc({ ...labels, finished_reason: s.reason });
    if (s.firstToken !== undefined) for (const h of this.ttft) h.observe(labels, s.firstToken - s.arrival);
    for (let i = 1; i < s.tokenTimes.length; i++) {
      for (const h of this.itl) h.observe(labels, s.tokenTimes[i]! - s.tokenTimes[i - 1]!);
    }
    for (const h of this.e2e) h.observe(labels, s.finished - s.arrival);
  }
}
