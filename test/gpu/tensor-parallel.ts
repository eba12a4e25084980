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
