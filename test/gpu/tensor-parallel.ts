/**
 * Tensor parallelism on N GPUs (default 2) against one GPU, with the same random weights:
 *   - teacher-forced logits of 4 prompts (prompt + the TP=1 greedy continuation) within bf16 tolerance;
 *   - greedy 32-token continuations through the whole engine (scheduler, decode graphs) identical, or the
 *     first difference shown to be a near-tie;
 *   - plans that cannot work are refused before loading, with the fix in the message;
 *   - a rank that stops taking part in the collectives ends the process, non-zero, within the watchdog
 *     timeout (PAGODA_TP_FAULT=hang@K, PAGODA_TP_TIMEOUT_S).
 * Prints one line per check; exits non-zero if any fails.
 * Usage: node test/gpu/tensor-parallel.ts MODELS_DIR [N]
 *        node test/gpu/tensor-parallel.ts --model DIR [N]   only the TP=N vs TP=1 comparison, on one model
 *                                                             (e.g. Qwen3-8B shapes from make_random_model.py)
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseServeArgs } from '../../runtime/src/config.ts';
import { defaultSamplingParams } from '../../runtime/src/engine/sampling-params.ts';
import { loadModel } from '../../runtime/src/model/load.ts';
import { loadNative as nativeModule } from '../../runtime/src/native/index.ts';
import { startEngine } from '../../runtime/src/runtime.ts';
import { ROOT } from '../helpers/fixtures.ts';
import { loadNative, promptLogits, relativeError } from '../helpers/native-run.ts';

/**
 * bf16 weights and activations on both sides; only the order of the f32 sums differs. Deep random-weight
 * models amplify any rounding difference layer by layer, so the bound is the larger of this and the
 * "bf16 floor": how far one GPU moves when its o/down projections round their outputs to bf16 (as HF
 * transformers does) instead of keeping float32 — two valid one-GPU evaluations of the same model.
 * A sharding bug (a wrong slice, a missing all-reduce) moves logits by O(1), far above either.
 */
const LOGITS_BOUND = 2e-2;
// Tensor parallelism sums the o and down projections in float32; give TP=1 float32 projections too, so
// the two sides differ only by how the work is split.
const withProjections = (dtype: 'f32' | 'bf16') => {
  process.env.PAGODA_PROJ_DTYPE = dtype;
};
withProjections('f32');

let failures = 0;
const line = (ok: boolean, what: string, detail: string) => {
  if (!ok) failures++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what.padEnd(64)} ${detail}`);
};

async function greedy(dir: string, tp: number, prompts: number[][]): Promise<number[][]> {
  const cfg = parseServeArgs(
    [
      ...['--model', dir, '--device', 'cuda', '--tensor-parallel-size', String(tp)],
      ...['--max-num-seqs', '8', '--max-model-len', '2048', '--gpu-memory-utilization', '0.5'],
    ],
    {},
  );
  const { engine } = await startEngine(cfg);
  const outs = await Promise.all(
    prompts.map(async (prompt) => {
      const tokens: number[] = [];
      const params = defaultSamplingParams({ temperature: 0, maxTokens: 32, ignoreEos: true, detokenize: false });
      for await (const ev of engine.generate({ prompt, params })) tokens.push(...ev.tokenIds);
      return tokens;
    }),
  );
  engine.close();
  return outs;
}

async function teacherLogits(dir: string, tp: number, seqs: number[][]): Promise<Float32Array[][]> {
  const model = loadModel(dir);
  const native = await loadNative(model, { device: 'cuda', tensorParallelSize: tp, maxNumSeqs: 64, maxModelLen: 2048 });
  const out: Float32Array[][] = [];
  for (const s of seqs)
    out.push(
      (await promptLogits(native, [s], model.config.vocabSize, { blockSize: 16, chunk: 64, batched: false }))[0]!,
    );
  native.close();
  return out;
}

/** Models made by make_models.py carry their prompts in reference.json; others get these, tokenized. */
const FALLBACK_PROMPTS = [
  'The capital of France is',
  'Write a haiku about the sea.',
  'def fibonacci(n):',
  'In 1969, the first humans to walk on the Moon were',
];

function promptsOf(dir: string): number[][] {
  const refFile = join(dir, 'reference.json');
  if (existsSync(refFile)) {
    const ref = JSON.parse(readFileSync(refFile, 'utf8')) as { greedy: { prompt: number[] }[] };
    return ref.greedy.map((g) => g.prompt);
  }
  const { tokenizer } = loadModel(dir);
  return FALLBACK_PROMPTS.map((text) => tokenizer.encode(text));
}

async function versusOneGpu(dir: string, name: string, tp: number) {
  const prompts = promptsOf(dir);
  const one = await greedy(dir, 1, prompts);
  const many = await greedy(dir, tp, prompts);
  const seqs = prompts.map((p, i) => [...p, ...one[i]!]);
  const L1 = await teacherLogits(dir, 1, seqs);
  const LN = await teacherLogits(dir, tp, seqs);
  withProjections('bf16');
  const Lbf16 = await teacherLogits(dir, 1, seqs);
  withProjections('f32');
  const worstError = (ours: Float32Array[][]) => {
    let worst = 0;
    for (const [i, rows] of L1.entries())
      for (const [t, row] of rows.entries()) worst = Math.max(worst, relativeError(ours[i]![t]!, row));
    return worst;
  };
  const worst = worstError(LN);
  const floor = worstError(Lbf16);
  const bound = Math.max(LOGITS_BOUND, floor);
  line(
    worst <= bound,
    `${name}: TP=${tp} vs TP=1 logits (4 prompts, every position)`,
    `max relative error ${worst.toExponential(2)} (bound ${bound.toExponential(2)}; bf16 floor ${floor.toExponential(2)})`,
  );
  prompts.forEach((p, i) => {
    const what = `${name}: TP=${tp} vs TP=1 greedy, prompt of ${p.length} tokens`;
    const a = one[i]!;
    const b = many[i]!;
    const d = a.findIndex((t, k) => t !== b[k]);
    if (d < 0) {
      line(a.length === 32 && b.length === 32, what, `32 tokens identical`);
      return;
    }
    // Same context on both sides up to d: TP=1's margin between the two picks vs the logit difference there.
    const r1 = L1[i]![p.length - 1 + d]!;
    const rN = LN[i]![p.length - 1 + d]!;
    let diff = 0;
    for (let k = 0; k < r1.length; k++) diff = Math.max(diff, Math.abs(r1[k]! - rN[k]!));
    const margin = r1[a[d]!]! - r1[b[d]!]!;
    line(
      margin <= 2 * diff,
      what,
      `same for ${d} tokens, then TP=1 ${a[d]}, TP=${tp} ${b[d]}: margin ${margin.toFixed(4)} <= 2 x max logit difference ${diff.toFixed(4)}`,
    );
  });
}

interface Exit {
  code: number | null;
  stderr: string;
  /** seconds from the injected fault's message to the exit (NaN if there was none) */
  afterFault: number;
}

function runCli(args: string[], env: Record<string, string> = {}, timeoutMs = 600_000): Promise<Exit> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, 'runtime', 'src', 'cli.ts'), ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    let faultAt = Number.NaN;
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (Number.isNaN(faultAt) && stderr.includes('PAGODA_TP_FAULT')) faultAt = performance.now();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr, afterFault: (performance.now() - faultAt) / 1000 });
    });
  });
}

async function refusals(dir: string, oddDir: string, gpus: number) {
  const gen = (model: string, tp: number) =>
    runCli(
      ['generate', '--model', model, '--device', 'cuda', '--tensor-parallel-size', String(tp), '--prompt', 'hi'],
      {},
      180_000,
    );
  const odd = await gen(oddDir, 2);
  line(
    odd.code !== 0 && /must divide the model's 3 attention heads/.test(odd.stderr),
    'TP=2 on a model with 3 attention heads is refused',
    odd.stderr.trim().split('\n').at(-1) ?? '',
  );
  const tooMany = gpus * 2 <= 8 ? gpus * 2 : 0;
  if (tooMany > 0) {
    const r = await gen(dir, tooMany);
    line(
      r.code !== 0 && new RegExp(`needs ${tooMany} GPUs but ${gpus} are visible`).test(r.stderr),
      `TP=${tooMany} on ${gpus} visible GPUs is refused`,
      r.stderr.trim().split('\n').at(-1) ?? '',
    );
  }
}

async function hungRank(dir: string, tp: number) {
  const timeout = 5;
  const r = await runCli(
    [
      ...['generate', '--model', dir, '--device', 'cuda', '--tensor-parallel-size', String(tp)],
      ...['--prompt', 'hello', '--max-tokens', '32', '--gpu-memory-utilization', '0.5'],
    ],
    { PAGODA_TP_FAULT: 'hang@5', PAGODA_TP_TIMEOUT_S: String(timeout) },
    180_000,
  );
  line(
    r.code !== 0 && r.code !== null && /did not finish within/.test(r.stderr) && r.afterFault <= timeout + 3,
    `TP=${tp}: a rank that stops ends the process within the watchdog`,
    `exit code ${r.code}, ${r.afterFault.toFixed(1)} s after the fault (timeout ${timeout} s): ` +
      (r.stderr.split('\n').find((l) => l.includes('collective failed')) ?? 'no watchdog message'),
  );
}

const args = process.argv.slice(2);
const single = args[0] === '--model';
if (single) args.shift();
const dir = args[0];
if (!dir) throw new Error('usage: tensor-parallel.ts MODELS_DIR [N] | --model DIR [N]');
const tp = Number(args[1] ?? 2);
if (single) {
  await versusOneGpu(dir, basename(dir), tp);
} else {
  const gpus = nativeModule().gpuCount?.() ?? 0;
  await versusOneGpu(join(dir, 'qwen3-0.6b'), 'Qwen3-0.6B shapes', tp);
  await versusOneGpu(join(dir, 'llama-1b'), 'Llama-3.2-1B shapes', tp);
  await refusals(join(dir, 'qwen3-small'), join(dir, 'odd-heads'), gpus);
  await hungRank(join(dir, 'qwen3-0.6b'), tp);
}
console.log(`tensor-parallel checks: ${failures === 0 ? 'all passed' : `${failures} failed`}`);
process.exitCode = failures === 0 ? 0 : 1;
