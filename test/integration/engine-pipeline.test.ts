/**
 * The pipelined engine loop on the default model: step k+1 is prepared and queued while step k runs;
 * a sequence that ends at step k has its token from step k+1 thrown away and keeps its KV blocks until
 * step k+1 is processed; aborts, stops, preemptions and prefix-cache hits mixed at random still give
 * every request exactly the tokens it gets alone, and every block comes back.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine, SequenceEvent } from '../../runtime/src/engine/engine.ts';
import { defaultSamplingParams, type SamplingParams } from '../../runtime/src/engine/sampling-params.ts';
import { drain, startDefaultEngine } from '../helpers/default-engine.ts';

const greedy = (over: Partial<SamplingParams> = {}) =>
  defaultSamplingParams({ temperature: 0, maxTokens: 24, ignoreEos: true, ...over });

async function tokensOf(engine: Engine, prompt: number[], params: SamplingParams): Promise<number[]> {
  return (await drain(engine.generate({ prompt, params }))).flatMap((e) => e.tokenIds);
}

let engine: Engine;
let prompt: number[];

beforeAll(async () => {
  engine = await startDefaultEngine();
  prompt = engine.model.tokenizer.encode('The lighthouse keeper climbed the stairs and');
});
afterAll(() => engine?.close());

describe('pipelined engine loop', () => {
  it('prepares and submits step k+1 before step k is processed', async () => {
    const before = { ...engine.counters };
    const out = await tokensOf(engine, prompt, greedy({ maxTokens: 32 }));
    expect(out).toHaveLength(32);
    const steps = engine.counters.steps - before.steps;
    // one prefill that samples the first token, then one decode per further token: a sequence whose
    // pending token is its last by length is not scheduled again, so nothing is wasted
    expect(steps).toBe(32);
    expect(engine.counters.pipelinedSteps - before.pipelinedSteps).toBe(steps - 1);
    expect(engine.counters.discardedTokens - before.discardedTokens).toBe(0);
  });

  it('drops the one extra token of a sequence that stopped, and frees its blocks only after that step', async () => {
    const reference = await tokensOf(engine, prompt, greedy());
    const k = reference.findIndex((t, i) => i >= 3 && !reference.slice(0, i).includes(t));
    const discarded = engine.counters.discardedTokens;
    const events: SequenceEvent[] = [];
    let usedAtFinish = -1;
    for await (const ev of engine.generate({ prompt, params: greedy({ stopTokenIds: [reference[k]!] }) })) {
      events.push(ev);
      // the step after the stopping one is in flight and still writes this sequence's blocks
      if (ev.finished) usedAtFinish = engine.blocks.stats().numUsed;
    }
    expect(events.flatMap((e) => e.tokenIds)).toEqual(reference.slice(0, k + 1));
    expect(events.at(-1)!.finishReason).toBe('stop');
    expect(usedAtFinish).toBeGreaterThan(0);
    await engine.idle();
    expect(engine.blocks.stats().numUsed).toBe(0);
    expect(engine.counters.discardedTokens - discarded).toBe(1);
  });

  it('--no-async-scheduling runs one step at a time, with the same tokens', async () => {
    const serial = await startDefaultEngine(['--no-async-scheduling']);
    try {
      const params = greedy({ maxTokens: 16, temperature: 0.8, seed: 11 });
      expect(await tokensOf(serial, prompt, params)).toEqual(await tokensOf(engine, prompt, params));
      expect(serial.counters.steps).toBeGreaterThan(16);
      expect(serial.counters.pipelinedSteps).toBe(0);
    } finally {
      serial.close();
    }
  });

  it('returns every block of an aborted request once its in-flight step is processed', async () => {
    const it = engine.generate({ prompt, params: greedy({ maxTokens: 200 }) });
    let n = 0;
    for await (const _ of it) if (++n === 5) break;
    await engine.idle();
    expect(engine.blocks.stats().numUsed).toBe(0);
    expect(engine.numRunning).toBe(0);
  });
});

describe('pipeline under random aborts, stops and preemptions (fast-check)', () => {
  let tiny: Engine;
  const prompts: number[][] = [];
  const alone: number[][] = [];
  beforeAll(async () => {
    // 10 blocks of 16 tokens: a few requests at once must preempt one another
    tiny = await startDefaultEngine(['--num-kv-blocks', '10', '--max-num-seqs', '6', '--max-num-batched-tokens', '48']);
    const tok = tiny.model.tokenizer;
    const shared = 'A long shared beginning about ships and the sea, repeated for the prefix cache: ';
    for (let i = 0; i < 6; i++)
      prompts.push(tok.encode(i % 2 ? `${shared}story ${i}.` : `Tell me about ${['cats', 'rain', 'maps'][i % 3]}.`));
    for (const p of prompts) alone.push(await tokensOf(tiny, p, greedy({ maxTokens: 40 })));
  });
  afterAll(() => tiny?.close());

  it('gives each request its tokens alone, and frees every block', async () => {
    const request = fc.record({
      prompt: fc.integer({ min: 0, max: prompts.length - 1 }),
      maxTokens: fc.integer({ min: 1, max: 40 }),
      // abort after this many events (0 = never)
      abortAfter: fc.integer({ min: 0, max: 12 }),
      // stop at the first occurrence of the output token at this index (-1 = no stop token)
      stopAt: fc.integer({ min: -1, max: 30 }),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(request, { minLength: 1, maxLength: 8 }), async (reqs) => {
        const runs = reqs.map(async (r) => {
          const ref = alone[r.prompt]!.slice(0, r.maxTokens);
          const stopToken = r.stopAt >= 0 && r.stopAt < ref.length ? ref[r.stopAt]! : undefined;
          const expected = stopToken === undefined ? ref : ref.slice(0, ref.indexOf(stopToken) + 1);
          const params = greedy({ maxTokens: r.maxTokens, stopTokenIds: stopToken === undefined ? [] : [stopToken] });
          const got: number[] = [];
          let events = 0;
          for await (const ev of tiny.generate({ prompt: prompts[r.prompt]!, params })) {
            got.push(...ev.tokenIds);
            if (r.abortAfter > 0 && ++events >= r.abortAfter) break;
          }
          // an aborted request got a prefix of its tokens; the others got all of them
          if (r.abortAfter > 0 && got.length < expected.length) expect(got).toEqual(expected.slice(0, got.length));
          else expect(got).toEqual(expected);
        });
        await Promise.all(runs);
        await tiny.idle();
        expect(tiny.blocks.stats().numUsed).toBe(0);
        expect(tiny.numRunning + tiny.numWaiting).toBe(0);
      }),
      {
        numRuns: 12,
        // one run certain to preempt: eight full-length requests at once
        examples: [
          [
            Array.from({ length: 8 }, (_, i) => ({
              prompt: i % prompts.length,
              maxTokens: 40,
              abortAfter: 0,
              stopAt: -1,
            })),
          ],
        ],
      },
    );
    expect(tiny.scheduler.numPreemptions).toBeGreaterThan(0);
    expect(tiny.counters.discardedTokens).toBeGreaterThan(0);
  });
});
