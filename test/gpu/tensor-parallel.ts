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
 * Logits are compared twice. With float32 o/down projections (PAGODA_PROJ_DTYPE=f32) the two sides differ
 * only in the order of float32 sums, so the bound is the larger of 2e-2 and the "bf16 floor": how far one
 * GPU moves when its projections round to bf16 instead of keeping float32 — two valid one-GPU evaluations
 * (deep random-weight models amplify any rounding difference layer by layer). With bf16 projections (the
 * default, what serving runs) each rank also rounds its partial sum before the all-reduce adds them; TP=N
 * and TP=1 are then each within about one such rounding of the float32 evaluation, so by the triangle
 * inequality the bound is twice the floor (and at least 2e-2).
 * A sharding bug (a wrong slice, a missing all-reduce) moves logits by O(1), far above either.
 */
const LOGITS_BOUND = 2e-2;
type ProjDtype = 'f32' | 'bf16';
const withProjections = (dtype: ProjDtype) => {
  process.env.PAGODA_PROJ_DTYPE = dtype;
};

// Non-zero unless the checks below run to the end and all pass (a run that stops early must not pass).
process.exitCode = 1;
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
  withProjections('bf16');
  const one = await greedy(dir, 1, prompts);
  const many = await greedy(dir, tp, prompts);
  const seqs = prompts.map((p, i) => [...p, ...one[i]!]);
  const logits = async (n: number, dtype: ProjDtype) => {
    withProjections(dtype);
    return teacherLogits(dir, n, seqs);
  };
  const L1 = await logits(1, 'bf16');
  const LN = await logits(tp, 'bf16');
  const L1f = await logits(1, 'f32');
  const LNf = await logits(tp, 'f32');
  withProjections('bf16');
  const worstError = (ours: Float32Array[][], ref: Float32Array[][]) => {
    let worst = 0;
    for (const [i, rows] of ref.entries())
      for (const [t, row] of rows.entries()) worst = Math.max(worst, relativeError(ours[i]![t]!, row));
    return worst;
  };
  const floor = worstError(L1, L1f);
  const compare = (ours: Float32Array[][], ref: Float32Array[][], bound: number, what: string) => {
    const worst = worstError(ours, ref);
    line(
      worst <= bound,
      `${name}: TP=${tp} vs TP=1 logits, ${what}`,
      `max relative error ${worst.toExponential(2)} (bound ${bound.toExponential(2)}; bf16 floor ${floor.toExponential(2)})`,
    );
  };
  compare(LNf, L1f, Math.max(LOGITS_BOUND, floor), 'f32 projections');
  compare(LN, L1, Math.max(LOGITS_BOUND, 2 * floor), 'bf16 projections');
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
