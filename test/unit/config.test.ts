/**
 * `pagoda serve` flags: --help documents every flag (in the code and as the real CLI prints it), each
 * flag the issue names parses into the config, env fallbacks work, and bad values are refused with a
 * message naming the flag.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, defaultThreads, parseServeArgs, SERVE_FLAGS, serveHelp } from '../../runtime/src/config.ts';
import { runCli } from '../helpers/cli.ts';
import { ROOT } from '../helpers/fixtures.ts';

/** vLLM-style flags the runtime must accept (issue "Runtime server", item 7). */
const REQUIRED = [
  'model',
  'host',
  'port',
  'device',
  'tensor-parallel-size',
  'max-model-len',
  'max-num-seqs',
  'max-num-batched-tokens',
  'gpu-memory-utilization',
  'block-size',
  'served-model-name',
  'api-key',
  'enable-prefix-caching',
  'no-enable-prefix-caching',
];

describe('pagoda serve --help', () => {
  it('documents every flag, each with a sentence', () => {
    const help = serveHelp();
    for (const f of SERVE_FLAGS) {
      expect(help).toMatch(new RegExp(`^  --${f.flag}\\b.*\\S{3,}`, 'm'));
      expect(f.help.length).toBeGreaterThan(15);
    }
    for (const flag of REQUIRED) expect(SERVE_FLAGS.map((f) => f.flag)).toContain(flag);
  });

  it('is documented flag by flag in docs/runtime.md', () => {
    const doc = readFileSync(join(ROOT, 'docs', 'runtime.md'), 'utf8');
    for (const f of SERVE_FLAGS) expect(doc, `--${f.flag}`).toContain(`\`--${f.flag}`);
  });

  it('is what the real CLI prints, exiting 0', () => {
    const r = runCli(['serve', '--help']);
    expect(r.status).toBe(0);
    for (const flag of [...REQUIRED, 'help']) expect(r.stdout).toContain(`--${flag}`);
    expect(r.stdout.trim()).toBe(serveHelp().trim());
  });
});

describe('flag parsing', () => {
  it('maps every flag onto the config', () => {
    const cfg = parseServeArgs([
      '--model',
      '/models/x',
      '--served-model-name',
      'my-model',
      '--host',
      '0.0.0.0',
      '--port',
      '9000',
      '--device',
      'cuda',
      '--tensor-parallel-size',
      '4',
      '--max-model-len',
      '4096',
      '--max-num-seqs',
      '64',
      '--max-num-batched-tokens',
      '2048',
      '--gpu-memory-utilization',
      '0.8',
      '--block-size',
      '32',
      '--num-kv-blocks',
      '100',
      '--kv-cache-memory',
      '2GiB',
      '--api-key',
      'k',
      '--threads',
      '3',
      '--weight-dtype',
      'bf16',
      '--drain-timeout',
      '45',
      '--max-queued-requests',
      '10',
      '--max-request-bytes',
      '65536',
      '--log-requests',
    ]);
    expect(cfg).toEqual({
      model: '/models/x',
      servedModelName: 'my-model',
      host: '0.0.0.0',
      port: 9000,
      device: 'cuda',
      tensorParallelSize: 4,
      maxModelLen: 4096,
      maxNumSeqs: 64,
      maxNumBatchedTokens: 2048,
      gpuMemoryUtilization: 0.8,
      blockSize: 32,
      numKvBlocks: 100,
      kvCacheMemory: 2 * 1024 ** 3,
      enablePrefixCaching: true,
      asyncScheduling: true,
      apiKey: 'k',
      threads: 3,
      weightDtype: 'bf16',
      drainTimeout: 45,
      maxQueuedRequests: 10,
      maxRequestBytes: 65536,
      logRequests: true,
    });
  });

  it('has defaults that depend on the device', () => {
    const cpu = parseServeArgs(['--device', 'cpu'], {});
    expect(cpu).toMatchObject({
      device: 'cpu',
      maxNumSeqs: 32,
      maxNumBatchedTokens: 512,
      port: 8000,
      host: '127.0.0.1',
    });
    expect(cpu.enablePrefixCaching).toBe(true);
    const gpu = parseServeArgs(['--device', 'auto'], {}, true);
    expect(gpu).toMatchObject({ device: 'cuda', maxNumSeqs: 256, maxNumBatchedTokens: 8192 });
    expect(parseServeArgs([], {}, false).device).toBe('cpu');
  });

  it('turns prefix caching off and on, the last flag winning', () => {
    expect(parseServeArgs(['--no-enable-prefix-caching'], {}).enablePrefixCaching).toBe(false);
    expect(parseServeArgs(['--enable-prefix-caching'], {}).enablePrefixCaching).toBe(true);
    expect(parseServeArgs(['--enable-prefix-caching', '--no-enable-prefix-caching'], {}).enablePrefixCaching).toBe(
      false,
    );
    expect(parseServeArgs(['--no-enable-prefix-caching', '--enable-prefix-caching'], {}).enablePrefixCaching).toBe(
      true,
    );
  });

  it('turns async scheduling off and on, the last flag winning', () => {
    expect(parseServeArgs([], {}).asyncScheduling).toBe(true);
    expect(parseServeArgs(['--no-async-scheduling'], {}).asyncScheduling).toBe(false);
    expect(parseServeArgs(['--no-async-scheduling', '--async-scheduling'], {}).asyncScheduling).toBe(true);
  });

  it('reads the environment when a flag is absent, the flag winning otherwise', () => {
    const env = { PAGODA_API_KEY: 'from-env', PORT: '7000', HOST: '::', PAGODA_MODEL: '/m' };
    expect(parseServeArgs([], env)).toMatchObject({ apiKey: 'from-env', port: 7000, host: '::', model: '/m' });
    expect(parseServeArgs(['--api-key', 'flag', '--port', '1'], env)).toMatchObject({ apiKey: 'flag', port: 1 });
    expect(parseServeArgs([], { VLLM_API_KEY: 'v' }).apiKey).toBe('v');
    expect(parseServeArgs([], { PAGODA_API_KEY: '' }).apiKey).toBeUndefined();
  });

  it.each([
    [['--port', '70000'], /--port must be an integer in \[0, 65535\]/],
    [['--port', 'eighty'], /--port must be an integer/],
    [['--device', 'tpu'], /--device must be one of auto, cpu, cuda/],
    [['--tensor-parallel-size', '3', '--device', 'cuda'], /--tensor-parallel-size must be 1, 2, 4 or 8/],
    [['--tensor-parallel-size', '2', '--device', 'cpu'], /--tensor-parallel-size > 1 needs --device cuda/],
    [['--gpu-memory-utilization', '1.5'], /--gpu-memory-utilization must be a number in \(0, 1\]/],
    [['--gpu-memory-utilization', '0'], /--gpu-memory-utilization must be a number in \(0, 1\]/],
    [['--max-model-len', '8'], /--max-model-len must be an integer in \[16,/],
    [['--max-num-seqs', '0'], /--max-num-seqs must be an integer in \[1, 4096\]/],
    [['--block-size', '0'], /--block-size must be an integer in \[1, 1024\]/],
    [['--kv-cache-memory', 'lots'], /--kv-cache-memory must be a size like 512MiB/],
    [['--weight-dtype', 'int4'], /--weight-dtype must be one of auto, f32, f16, bf16/],
    [['--no-such-flag'], /Unknown option '--no-such-flag'.*pagoda serve --help/],
    [['--port'], /--port.*argument missing|requires an argument|pagoda serve --help/],
  ])('refuses %j', (argv, message) => {
    expect(() => parseServeArgs(argv, {})).toThrow(ConfigError);
    expect(() => parseServeArgs(argv, {})).toThrow(message);
  });

  it('the real CLI reports a bad flag in one line and exits 2', () => {
    const r = runCli(['serve', '--port', 'x']);
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toBe('pagoda: --port must be an integer in [0, 65535], got "x"');
  });
});

describe('default CPU threads', () => {
  it('follow a cgroup CPU quota below the core count, and ignore "max"', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pagoda-cgroup-'));
    try {
      writeFileSync(join(dir, 'cpu.max'), '100000 100000\n');
      expect(defaultThreads(join(dir, 'cpu.max'))).toBe(1);
      writeFileSync(join(dir, 'cpu.max'), '150000 100000\n');
      expect(defaultThreads(join(dir, 'cpu.max'))).toBe(Math.min(2, availableParallelism()));
      writeFileSync(join(dir, 'cpu.max'), 'max 100000\n');
      expect(defaultThreads(join(dir, 'cpu.max'))).toBe(availableParallelism());
      expect(defaultThreads(join(dir, 'missing'))).toBe(availableParallelism());
      writeFileSync(join(dir, 'cpu.max'), 'garbage 100000\n'); // unreadable quota: ignored, never NaN
      expect(defaultThreads(join(dir, 'cpu.max'))).toBe(availableParallelism());
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
