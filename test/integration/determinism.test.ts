/**
 * Determinism on the default model (issue item 5): a greedy request's tokens are identical whether it
 * runs alone, in a batch of 32 with other requests (prefills and decodes mixed, other rows sampling),
 * with its prompt chunked, after a prefix-cache hit, or after being preempted and recomputed.
 * The kernels are batch-invariant by design, so exact equality is demanded.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine, FinishedSequenceStats } from '../../runtime/src/engine/engine.ts';
import { defaultSamplingParams } from '../../runtime/src/engine/sampling-params.ts';
import { drain, startDefaultEngine } from '../helpers/default-engine.ts';

const MAX_TOKENS = 40;
const greedy = defaultSamplingParams({ temperature: 0, maxTokens: MAX_TOKENS, ignoreEos: true });
const TEXT =
  'In the beginning the lighthouse keeper climbed the stairs every evening, one hundred and twelve of them, ' +
  'to light the lamp that warned the ships away from the rocks. ';

async function tokensOf(engine: Engine, prompt: number[], params = greedy): Promise<number[]> {
  const out: number[] = [];
  for (const ev of await drain(engine.generate({ prompt, params }))) out.push(...ev.tokenIds);
  return out;
}

function watch(engine: Engine): FinishedSequenceStats[] {
  const seen: FinishedSequenceStats[] = [];
  engine.setObserver({ onSequenceFinished: (s) => seen.push(s) });
  return seen;
}

let engine: Engine;
let prompt: number[];
let alone: number[];

beforeAll(async () => {
  engine = await startDefaultEngine(['--max-num-seqs', '32', '--max-num-batched-tokens', '512']);
  prompt = engine.model.tokenizer.encode(`${TEXT}Tell the story of one stormy night.`);
  alone = await tokensOf(engine, prompt);
});
afterAll(() => engine?.close());

describe('greedy determinism', () => {
  it('alone, twice', async () => {
    expect(alone).toHaveLength(MAX_TOKENS);
    expect(await tokensOf(engine, prompt)).toEqual(alone);
  });

  it('in a batch of 32 with other prompts, lengths and sampling settings', async () => {
    const tok = engine.model.tokenizer;
    const others = Array.from({ length: 31 }, (_, i) => {
      const p = tok.encode(
        `${'Once more, '.repeat(i % 7)}request number ${i}: write about ${['cats', 'rain', 'ships', 'code'][i % 4]}.`,
      );
      const params = defaultSamplingParams({
        temperature: i % 3 === 0 ? 0 : 1,
        seed: i,
        topP: i % 2 ? 0.9 : 1,
        maxTokens: 5 + ((i * 7) % 50),
        ignoreEos: true,
        presencePenalty: i % 5 === 0 ? 0.5 : 0,
        logprobs: i % 4 === 0 ? 3 : undefined,
      });
      return tokensOf(engine, p, params);
    });
    // start ours in the middle of the crowd, so its prefill shares steps with others' decodes
    const ours = tokensOf(engine, prompt);
    const results = await Promise.all([ours, ...others]);
    expect(results[0]).toEqual(alone);
    expect(engine.scheduler.running.length).toBe(0);
  });

  it('with its prompt prefilled in chunks of 16 tokens', async () => {
    const chunked = await startDefaultEngine(['--max-num-batched-tokens', '16']);
    try {
      expect(prompt.length).toBeGreaterThan(32); // three chunks at least
      expect(await tokensOf(chunked, prompt)).toEqual(alone);
    } finally {
      chunked.close();
    }
  });

  it('after a prefix-cache hit (same prompt, and a prompt that shares the prefix)', async () => {
    const seen = watch(engine);
    const again = await tokensOf(engine, prompt);
    expect(again).toEqual(alone);
    expect(seen.at(-1)!.cachedTokens).toBeGreaterThanOrEqual(Math.floor((prompt.length - 1) / 16) * 16 - 16);
    expect(seen.at(-1)!.cachedTokens).toBeGreaterThan(0);
    // a sibling prompt: reference without the cache (fresh engine), then with a hit here
    const sibling = engine.model.tokenizer.encode(`${TEXT}Describe the keeper's cat.`);
    const fresh = await startDefaultEngine(['--no-enable-prefix-caching']);
    let reference: number[];
    try {
      reference = await tokensOf(fresh, sibling);
    } finally {
      fresh.close();
    }
    expect(await tokensOf(engine, sibling)).toEqual(reference);
    expect(seen.at(-1)!.cachedTokens).toBeGreaterThan(0);
  });
});

describe('after preemption', () => {
  let tiny: Engine;
  beforeAll(async () => {
    // 14 blocks of 16 tokens: six requests of ~75 tokens cannot all hold their blocks at once
    tiny = await startDefaultEngine(['--num-kv-blocks', '14', '--max-num-seqs', '8']);
  });
  afterAll(() => tiny?.close());

  it('gives the same tokens as running alone', async () => {
    const seen = watch(tiny);
    const tok = tiny.model.tokenizer;
    const crowd = Array.from({ length: 5 }, (_, i) =>
      tokensOf(tiny, tok.encode(`Story ${i}: ${'the sea was calm and grey. '.repeat(2)}`), greedy),
    );
    const ours = tokensOf(tiny, prompt);
    const results = await Promise.all([...crowd, ours]);
    expect(results.at(-1)).toEqual(alone);
    expect(tiny.scheduler.numPreemptions).toBeGreaterThan(0);
    // ours was admitted last, so it is the first victim
    const mine = seen.find((s) => s.promptTokens === prompt.length && s.completionTokens === MAX_TOKENS);
    expect(mine?.preemptions).toBeGreaterThan(0);
    expect(tiny.blocks.stats().numUsed).toBe(0);
  });
});
