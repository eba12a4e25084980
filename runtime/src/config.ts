/**
 * The runtime's configuration: one typed object built from CLI flags (vLLM's names) and environment
 * variables, validated once. `parseServeArgs` throws ConfigError with a message that names the flag.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export interface RuntimeConfig {
  /** undefined: the default model */
  model: string | undefined;
  servedModelName: string | undefined;
  host: string;
  port: number;
  device: 'cpu' | 'cuda';
  tensorParallelSize: number;
  maxModelLen: number | undefined;
  maxNumSeqs: number;
  maxNumBatchedTokens: number;
  gpuMemoryUtilization: number;
  blockSize: number;
  numKvBlocks: number | undefined;
  kvCacheMemory: number | undefined;
  enablePrefixCaching: boolean;
  asyncScheduling: boolean;
  apiKey: string | undefined;
  threads: number;
  weightDtype: 'auto' | 'f32' | 'f16' | 'bf16';
  /** seconds in-flight requests may take to finish after SIGTERM */
  drainTimeout: number;
  /** waiting requests beyond this get 429 */
  maxQueuedRequests: number;
  /** request body limit in bytes (413 beyond) */
  maxRequestBytes: number;
  logRequests: boolean;
}

export interface FlagDoc {
  flag: string;
  value?: string;
  env?: string;
  help: string;
}

/** Every `pagoda serve` flag with its documentation (printed by --help). */
export const SERVE_FLAGS: FlagDoc[] = [
  {
    flag: 'model',
    value: 'PATH',
    env: 'PAGODA_MODEL',
    help: 'HF model directory (config.json + safetensors) or a .gguf file. Default: SmolLM2-135M-Instruct (fetched and cached on first use).',
  },
  {
    flag: 'served-model-name',
    value: 'NAME',
    help: 'Model id clients send and /v1/models lists. Default: the model directory or file name.',
  },
  {
    flag: 'host',
    value: 'ADDR',
    env: 'HOST',
    help: 'Address to listen on. Default 127.0.0.1 (use 0.0.0.0 in a container).',
  },
  { flag: 'port', value: 'N', env: 'PORT', help: 'Port to listen on. Default 8000.' },
  {
    flag: 'device',
    value: 'auto|cpu|cuda',
    help: 'Backend. auto = cuda when this build has it and a GPU is visible, else cpu.',
  },
  { flag: 'tensor-parallel-size', value: 'N', help: 'GPUs to shard the model across (1, 2, 4, 8). Default 1.' },
  {
    flag: 'max-model-len',
    value: 'N',
    help: "Longest context (prompt + output) in tokens. Default: the model's, capped by the KV cache.",
  },
  { flag: 'max-num-seqs', value: 'N', help: 'Most sequences in one step. Default 256 (cuda), 32 (cpu).' },
  {
    flag: 'max-num-batched-tokens',
    value: 'N',
    help: 'Token budget of one step (prefill chunks + decodes). Default 8192 (cuda), 512 (cpu).',
  },
  {
    flag: 'gpu-memory-utilization',
    value: 'F',
    help: 'Share of GPU memory for weights, activations and KV cache. Default 0.9.',
  },
  { flag: 'block-size', value: 'N', help: 'Tokens per KV-cache block. Default 16.' },
  { flag: 'num-kv-blocks', value: 'N', help: 'Exact number of KV-cache blocks (overrides the memory-based size).' },
  {
    flag: 'kv-cache-memory',
    value: 'BYTES',
    help: 'CPU backend: bytes for the KV cache (accepts 512MiB, 2GiB). Default 1GiB.',
  },
  {
    flag: 'enable-prefix-caching',
    help: 'Reuse the KV cache of shared prompt prefixes across requests (default on).',
  },
  {
    flag: 'no-enable-prefix-caching',
    help: 'Turn prefix caching off (the last of the two flags wins).',
  },
  {
    flag: 'async-scheduling',
    help: 'Prepare and queue the next engine step while the current one runs (default on).',
  },
  {
    flag: 'no-async-scheduling',
    help: 'Prepare each step only after the previous one finished (the last of the two flags wins).',
  },
  {
    flag: 'api-key',
    value: 'KEY',
    env: 'PAGODA_API_KEY',
    help: 'Require "Authorization: Bearer KEY" on /v1 and /tokenize routes.',
  },
  {
    flag: 'threads',
    value: 'N',
    help: 'CPU backend worker threads. Default: one per core the process may use (affinity mask and cgroup CPU quota).',
  },
  {
    flag: 'weight-dtype',
    value: 'auto|f32|f16|bf16',
    help: "CPU backend weight storage. auto keeps the file's precision; quantized GGUF becomes f16.",
  },
  {
    flag: 'drain-timeout',
    value: 'SECONDS',
    help: 'After SIGTERM, how long in-flight requests may run before exit. Default 30.',
  },
  { flag: 'max-queued-requests', value: 'N', help: 'Waiting requests beyond this are refused with 429. Default 1024.' },
  { flag: 'max-request-bytes', value: 'N', help: 'Largest request body; larger gets 413. Default 4194304.' },
  { flag: 'log-requests', help: 'Log every request (default off).' },
];

function int(name: string, v: string | undefined, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(`--${name} must be an integer in [${min}, ${max}], got ${JSON.stringify(v)}`);
  }
  return n;
}

function float(name: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= min || n > max)
    throw new ConfigError(`--${name} must be a number in (${min}, ${max}], got ${JSON.stringify(v)}`);
  return n;
}

export function parseBytes(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const m = /^(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB|TB|TiB)?$/i.exec(v.trim());
  if (!m) throw new ConfigError(`--${name} must be a size like 512MiB or 2GiB, got ${JSON.stringify(v)}`);
  const units: Record<string, number> = {
    b: 1,
    kb: 1e3,
    kib: 1024,
    mb: 1e6,
    mib: 1024 ** 2,
    gb: 1e9,
    gib: 1024 ** 3,
    tb: 1e12,
    tib: 1024 ** 4,
  };
  return Math.floor(Number(m[1]) * units[(m[2] ?? 'b').toLowerCase()]!);
}

function oneOf<T extends string>(name: string, v: string | undefined, allowed: readonly T[]): T | undefined {
  if (v === undefined) return undefined;
  if (!allowed.includes(v as T))
    throw new ConfigError(`--${name} must be one of ${allowed.join(', ')}, got ${JSON.stringify(v)}`);
  return v as T;
}

/** CPU worker threads: one per core the process may use — the affinity mask, and the cgroup CPU quota
 *  of a container (`cpu.max`): a pod limited to 2 CPUs on a 64-core node gets 2, since a worker that the
 *  quota stalls holds up every other worker at the end of each parallel loop. */
export function defaultThreads(cpuMaxPath = '/sys/fs/cgroup/cpu.max'): number {
  let n = availableParallelism();
  try {
    const [quota, period] = readFileSync(cpuMaxPath, 'utf8').trim().split(/\s+/);
    const cpus = Number(quota) / Number(period);
    if (quota !== 'max' && Number.isFinite(cpus) && cpus > 0) n = Math.min(n, Math.max(1, Math.ceil(cpus)));
  } catch {
    // no cgroup v2 CPU controller: the affinity mask is all there is
  }
  return n;
}

export function parseServeArgs(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
  cudaAvailable = false,
): RuntimeConfig {
  const options: Record<string, { type: 'string' | 'boolean' }> = {};
  for (const f of SERVE_FLAGS) options[f.flag] = { type: f.value ? 'string' : 'boolean' };
  let values: Record<string, string | boolean | undefined>;
  let prefixCaching = true;
  let asyncScheduling = true;
  try {
    const parsed = parseArgs({ args: argv, options, allowPositionals: false, strict: true, tokens: true });
    values = parsed.values;
    // --X and --no-X pairs: the last one given wins (as in vLLM)
    for (const t of parsed.tokens) {
      if (t.kind === 'option' && t.name === 'enable-prefix-caching') prefixCaching = true;
      if (t.kind === 'option' && t.name === 'no-enable-prefix-caching') prefixCaching = false;
      if (t.kind === 'option' && t.name === 'async-scheduling') asyncScheduling = true;
      if (t.kind === 'option' && t.name === 'no-async-scheduling') asyncScheduling = false;
    }
  } catch (e) {
    throw new ConfigError(`${(e as Error).message}. Run \`pagoda serve --help\` for the flags.`);
  }
  const s = (k: string) => values[k] as string | undefined;
  const deviceFlag = oneOf('device', s('device'), ['auto', 'cpu', 'cuda'] as const) ?? 'auto';
  const device = deviceFlag === 'auto' ? (cudaAvailable ? 'cuda' : 'cpu') : deviceFlag;
  const tp = int('tensor-parallel-size', s('tensor-parallel-size'), 1, 8) ?? 1;
  if (![1, 2, 4, 8].includes(tp)) throw new ConfigError(`--tensor-parallel-size must be 1, 2, 4 or 8, got ${tp}`);
  if (tp > 1 && device !== 'cuda') throw new ConfigError('--tensor-parallel-size > 1 needs --device cuda');
  const cpu = device === 'cpu';
  const apiKey = s('api-key') ?? env.PAGODA_API_KEY ?? env.VLLM_API_KEY;
  const cfg: RuntimeConfig = {
    model: s('model') ?? env.PAGODA_MODEL,
    servedModelName: s('served-model-name'),
    host: s('host') ?? env.HOST ?? '127.0.0.1',
    port: int('port', s('port') ?? env.PORT, 0, 65535) ?? 8000,
    device,
    tensorParallelSize: tp,
    maxModelLen: int('max-model-len', s('max-model-len'), 16),
    maxNumSeqs: int('max-num-seqs', s('max-num-seqs'), 1, 4096) ?? (cpu ? 32 : 256),
    maxNumBatchedTokens: int('max-num-batched-tokens', s('max-num-batched-tokens'), 16) ?? (cpu ? 512 : 8192),
    gpuMemoryUtilization: float('gpu-memory-utilization', s('gpu-memory-utilization'), 0, 1) ?? 0.9,
    blockSize: int('block-size', s('block-size'), 1, 1024) ?? 16,
    numKvBlocks: int('num-kv-blocks', s('num-kv-blocks'), 1),
    kvCacheMemory: parseBytes('kv-cache-memory', s('kv-cache-memory')),
    enablePrefixCaching: prefixCaching,
    asyncScheduling,
    apiKey: apiKey === '' ? undefined : apiKey,
    threads: int('threads', s('threads'), 1, 1024) ?? defaultThreads(),
    weightDtype: oneOf('weight-dtype', s('weight-dtype'), ['auto', 'f32', 'f16', 'bf16'] as const) ?? 'auto',
    drainTimeout: int('drain-timeout', s('drain-timeout'), 0, 86400) ?? 30,
    maxQueuedRequests: int('max-queued-requests', s('max-queued-requests'), 1) ?? 1024,
    maxRequestBytes: int('max-request-bytes', s('max-request-bytes'), 1024) ?? 4 * 1024 * 1024,
    logRequests: values['log-requests'] === true,
  };
  if (cfg.maxModelLen !== undefined && cfg.maxNumBatchedTokens < cfg.blockSize) {
    throw new ConfigError('--max-num-batched-tokens must be at least --block-size');
  }
  return cfg;
}

export function serveHelp(): string {
  const lines = [
    'Usage: pagoda serve [flags]',
    '',
    'Serves an OpenAI-compatible API (/v1/completions, /v1/chat/completions, /v1/models, ...).',
    '',
    'Flags:',
  ];
  for (const f of SERVE_FLAGS) {
    const head = `  --${f.flag}${f.value ? ` ${f.value}` : ''}`;
    lines.push(`${head.padEnd(40)}${f.help}${f.env ? ` [env ${f.env}]` : ''}`);
  }
  lines.push(`  ${'--help'.padEnd(38)}This text.`);
  return lines.join('\n');
}
