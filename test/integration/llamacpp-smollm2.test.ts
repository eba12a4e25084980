/**
 * The default model against llama.cpp on the same GGUF file (references in
 * test/fixtures/smollm2-llamacpp.json, made by `npm run fixtures` with llama-cpp-python):
 * the same tokenization, and greedy 32-token continuations identical — or, where they part, a near-tie:
 * both engines' top two logits within NEAR_TIE of each other and each engine's pick the other's second.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../runtime/src/engine/engine.ts';
import { defaultSamplingParams } from '../../runtime/src/engine/sampling-params.ts';
import { drain, startDefaultEngine } from '../helpers/default-engine.ts';
import { FIXTURES } from '../helpers/fixtures.ts';

/** logits; llama.cpp multiplies Q4_1 weights by 8-bit-quantized activations, Pagoda by float32 ones */
const NEAR_TIE = 0.25;

interface Greedy {
  text: string;
  ids: number[];
  continuation: number[];
  top2: [number, number, number, number][];
}
const ref = JSON.parse(readFileSync(join(FIXTURES, 'smollm2-llamacpp.json'), 'utf8')) as {
  greedy: Greedy[];
  tokenize: { text: string; ids: number[] }[];
};

describe('SmolLM2 GGUF vs llama.cpp', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await startDefaultEngine();
  });
  afterAll(() => engine.close());

  it('tokenizes like llama.cpp', () => {
    for (const t of ref.tokenize) expect(engine.model.tokenizer.encode(t.text), JSON.stringify(t.text)).toEqual(t.ids);
  });

  it('greedy continuations agree, and any divergence is a near-tie', async () => {
    let identical = 0;
    for (const g of ref.greedy) {
      expect(engine.model.tokenizer.encode(g.text)).toEqual(g.ids);
      const events = await drain(
        engine.generate({
          prompt: g.ids,
          params: defaultSamplingParams({ temperature: 0, maxTokens: 32, ignoreEos: true, logprobs: 2 }),
        }),
      );
      const ours = events.flatMap((e) => e.tokenIds);
      const lps = events.flatMap((e) => e.logprobs ?? []);
      expect(ours).toHaveLength(32);
      const d = ours.findIndex((t, i) => t !== g.continuation[i]);
      if (d < 0) {
        identical++;
        continue;
      }
      const [refFirst, refFirstLogit, refSecond, refSecondLogit] = g.top2[d]!;
      const ourTop = lps[d]!.top;
      const where = `prompt ${JSON.stringify(g.text.slice(-40))} token ${d}`;
      expect(ours[d], where).toBe(refSecond);
      expect(ourTop[1]!.token, where).toBe(refFirst);
      expect(refFirstLogit - refSecondLogit, `${where}: llama.cpp's margin`).toBeLessThan(NEAR_TIE);
      expect(ourTop[0]!.logprob - ourTop[1]!.logprob, `${where}: Pagoda's margin`).toBeLessThan(NEAR_TIE);
    }
    expect(identical).toBeGreaterThanOrEqual(3);
  });
});
