/**
 * Logit biases in the native step (CPU backend, a tiny real model): added after the penalties, -Infinity
 * bans a token, +bias forces one, rows are independent; malformed bias inputs are refused with the
 * field named and the KV cache untouched for the next step.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel } from '../../runtime/src/model/load.ts';
import type { NativeEngine, StepBatch } from '../../runtime/src/native/index.ts';
import { tinyModelDir } from '../helpers/fixtures.ts';
import { loadNative } from '../helpers/native-run.ts';

const model = loadModel(tinyModelDir('qwen3-tiny'));
const V = model.config.vocabSize;
let engine: NativeEngine;

beforeAll(async () => {
  engine = await loadNative(model, { device: 'cpu' });
});
afterAll(() => engine?.close());

/** Two one-token prompts (blocks 0 and 1), greedy, with the given biases. */
function step(bias: Partial<StepBatch> = {}): StepBatch {
  return {
    tokenIds: Int32Array.from([11, 42]),
    positions: Int32Array.from([0, 0]),
    queryStart: Int32Array.from([0, 1, 2]),
    contextLens: Int32Array.from([1, 1]),
    blockTables: Int32Array.from([0, 1]),
    maxBlocksPerSeq: 1,
    slotMapping: Int32Array.from([0, 16]),
    logitRows: Int32Array.from([0, 1]),
    returnLogits: true,
    temperature: Float32Array.from([0, 0]),
    topP: Float32Array.from([1, 1]),
    topK: Int32Array.from([0, 0]),
    minP: Float32Array.from([0, 0]),
    presencePenalty: Float32Array.from([0, 0]),
    frequencyPenalty: Float32Array.from([0, 0]),
    repetitionPenalty: Float32Array.from([1, 1]),
    seed: Uint32Array.from([1, 0, 2, 0]),
    sampleStep: Int32Array.from([0, 0]),
    outputOffsets: Int32Array.from([0, 0, 0]),
    outputTokens: new Int32Array(0),
    contextOffsets: Int32Array.from([0, 0, 0]),
    contextTokens: new Int32Array(0),
    ...bias,
  };
}

const argmax = (row: Float32Array, skip = -1) => {
  let best = skip === 0 ? 1 : 0;
  for (let i = 0; i < row.length; i++) if (i !== skip && row[i]! > row[best]!) best = i;
  return best;
};

describe('logit biases in the native step', () => {
  it('ban the greedy token of row 0 and force a token in row 1, each row on its own', async () => {
    const plain = await engine.step(step());
    const row0 = plain.logits!.slice(0, V);
    const top0 = plain.tokens[0]!;
    expect(top0).toBe(argmax(row0));
    const forced = (plain.tokens[1]! + 1234) % V;
    const r = await engine.step(
      step({
        biasOffsets: Int32Array.from([0, 1, 2]),
        biasTokens: Int32Array.from([top0, forced]),
        biasValues: Float32Array.from([Number.NEGATIVE_INFINITY, 1000]),
      }),
    );
    expect(r.tokens[0]).toBe(argmax(row0, top0)); // the runner-up
    expect(r.tokens[1]).toBe(forced);
    // the returned logits and logprobs stay the model's own
    expect(r.logits).toEqual(plain.logits);
  });

  it('refuses malformed biases with the field named, and the next step still works', async () => {
    const bad: [Partial<StepBatch>, RegExp][] = [
      [
        { biasOffsets: Int32Array.from([0, 1]), biasTokens: Int32Array.from([5]), biasValues: Float32Array.from([1]) },
        /biasOffsets/,
      ],
      [
        {
          biasOffsets: Int32Array.from([0, 1, 1]),
          biasTokens: Int32Array.from([V]),
          biasValues: Float32Array.from([1]),
        },
        /logit bias token outside the vocabulary/,
      ],
      [
        {
          biasOffsets: Int32Array.from([0, 1, 1]),
          biasTokens: Int32Array.from([5]),
          biasValues: Float32Array.from([Number.POSITIVE_INFINITY]),
        },
        /below \+infinity/,
      ],
      [
        {
          biasOffsets: Int32Array.from([0, 2, 1]),
          biasTokens: Int32Array.from([5, 6]),
          biasValues: Float32Array.from([1, 1]),
        },
        /bias offsets out of range/,
      ],
      [
        { biasOffsets: Int32Array.from([0, 1, 1]), biasTokens: Int32Array.from([5]), biasValues: new Float32Array(0) },
        /biasValues and biasTokens differ/,
      ],
    ];
    for (const [fields, message] of bad) await expect(engine.step(step(fields))).rejects.toThrow(message);
    const ok = await engine.step(step());
    expect(ok.tokens.length).toBe(2);
  });
});
