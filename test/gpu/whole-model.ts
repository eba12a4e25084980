/**
 * GPU numerics of whole models: the CUDA backend's greedy continuations against HF transformers
 * (references made on the same GPU by make_models.py), and CUDA against the CPU backend on a small model.
 * Prints one line per check; exits non-zero if any fails.
 * Usage: node test/gpu/whole-model.ts MODELS_DIR
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseServeArgs } from '../../runtime/src/config.ts';
import { defaultSamplingParams } from '../../runtime/src/engine/sampling-params.ts';
import { loadModel } from '../../runtime/src/model/load.ts';
import { startEngine } from '../../runtime/src/runtime.ts';
import { readF32 } from '../helpers/fixtures.ts';
import { loadNative, promptLogits, relativeError } from '../helpers/native-run.ts';

/** Teacher-forced logits, Pagoda (bf16 weights and activations, f32 accumulation) vs HF running the
 *  same bf16 weights in float32. */
export const LOGITS_BOUND = 5e-2;

interface Ref {
  greedy: { prompt: number[]; continuation: number[]; top: [number, number][][] }[];
}

let failures = 0;
const line = (ok: boolean, what: string, detail: string) => {
  if (!ok) failures++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what.padEnd(60)} ${detail}`);
};

async function greedyVsHf(dir: string, name: string) {
  const ref = JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8')) as Ref;
  const cfg = parseServeArgs(
    ['--model', dir, '--device', 'cuda', '--max-num-seqs', '8', '--max-model-len', '4096'],
    {},
  );
  const { engine } = await startEngine(cfg);
  // all prompts at once: the batch mixes prefill and decode on the GPU
  const outs = await Promise.all(
    ref.greedy.map(async (g) => {
      const tokens: number[] = [];
      const tops: { token: number; logprob: number }[][] = [];
      const params = defaultSamplingParams({
        temperature: 0,
        maxTokens: 32,
        ignoreEos: true,
        logprobs: 2,
        detokenize: false,
      });
      for await (const ev of engine.generate({ prompt: g.prompt, params })) {
        tokens.push(...ev.tokenIds);
        for (const lp of ev.logprobs ?? []) tops.push(lp.top);
      }
      return { tokens, tops };
    }),
  );
  engine.close();
  // Teacher-forced: Pagoda's logits for the positions that predict HF's continuation.
  const model = loadModel(dir);
  const native = await loadNative(model, { device: 'cuda', maxNumSeqs: 64, maxModelLen: 4096, numBlocks: 512 });
  const V = model.config.vocabSize;
  let worst = 0;
  const rowsOf: Float32Array[][] = [];
  const teachers: Float32Array[] = [];
  for (const [i, g] of ref.greedy.entries()) {
    const [rows] = await promptLogits(native, [[...g.prompt, ...g.continuation]], V, {
      blockSize: 16,
      chunk: 64,
      batched: false,
    });
    rowsOf.push(rows!);
    const teacher = readF32(join(dir, `teacher-${i}.bin`));
    teachers.push(teacher);
    for (let k = 0; k < 32; k++)
      worst = Math.max(worst, relativeError(rows![g.prompt.length - 1 + k]!, teacher.subarray(k * V, (k + 1) * V)));
  }
  native.close();
  line(
    worst <= LOGITS_BOUND,
    `${name}: teacher-forced logits vs HF`,
    `max relative error ${worst.toExponential(2)} (bound ${LOGITS_BOUND})`,
  );
  // Greedy: identical, or the first different pick is explained by the numeric difference measured at
  // that very step (same context on both sides): HF's margin between its pick and Pagoda's is at most
  // twice the largest logit difference between the two engines there.
  ref.greedy.forEach((g, i) => {
    const { tokens } = outs[i]!;
    const what = `${name}: greedy, prompt of ${g.prompt.length} tokens`;
    const d = tokens.findIndex((t, k) => t !== g.continuation[k]);
    if (d < 0) {
      line(true, what, '32 tokens identical to HF');
      return;
    }
    const ours = rowsOf[i]![g.prompt.length - 1 + d]!;
    const theirs = teachers[i]!.subarray(d * V, (d + 1) * V);
    let diff = 0;
    for (let k = 0; k < V; k++) diff = Math.max(diff, Math.abs(ours[k]! - theirs[k]!));
    const margin = theirs[g.continuation[d]!]! - theirs[tokens[d]!]!;
    line(
      margin <= 2 * diff,
      what,
      `same for ${d} tokens, then HF ${g.continuation[d]}, Pagoda ${tokens[d]}: HF's margin ${margin.toFixed(4)} <= 2 x max logit difference ${diff.toFixed(4)}`,
    );
  });
}

async function cpuVsCuda(dir: string) {
  const model = loadModel(dir);
  const g = new Array(3)
    .fill(0)
    .map((_, i) => Array.from({ length: 20 + 37 * i }, (_, k) => (k * 131 + i * 7) % model.config.vocabSize));
  const cpu = await loadNative(model, { device: 'cpu' });
  const cuda = await loadNative(model, { device: 'cuda', maxNumSeqs: 64, maxModelLen: 512 });
  // chunks of 13: the prefill kernel over cached context; chunks of 1: decode steps (graph replays)
  for (const chunk of [13, 1]) {
    const opts = { blockSize: 16, chunk, batched: true };
    const want = await promptLogits(cpu, g, model.config.vocabSize, opts);
    const got = await promptLogits(cuda, g, model.config.vocabSize, opts);
    let worst = 0;
    for (const [i, rows] of want.entries())
      for (const [t, row] of rows.entries()) worst = Math.max(worst, relativeError(got[i]![t]!, row));
    line(
      worst <= 2e-2,
      `CUDA vs CPU logits (qwen3-small bf16, chunks of ${chunk})`,
      `max relative error ${worst.toExponential(2)} (bound 2e-2)`,
    );
  }
  cpu.close();
  cuda.close();
}

const dir = process.argv[2];
if (!dir) throw new Error('usage: whole-model.ts MODELS_DIR');
await greedyVsHf(join(dir, 'qwen3-0.6b'), 'Qwen3-0.6B shapes');
await greedyVsHf(join(dir, 'llama-1b'), 'Llama-3.2-1B shapes');
await cpuVsCuda(join(dir, 'qwen3-small'));
console.log(`whole-model checks: ${failures === 0 ? 'all passed' : `${failures} failed`}`);
process.exitCode = failures === 0 ? 0 : 1;
