/** The per-key work queue: serialisation per key, coalescing, backoff, requeue, stop. */
import { describe, expect, it } from 'vitest';
import { WorkQueue } from '../../operator/src/controller/queue.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('WorkQueue', () => {
  it('never runs one key twice at once, and runs it again if it changed meanwhile', async () => {
    let active = 0;
    let maxActive = 0;
    const runs: string[] = [];
    const q = new WorkQueue({
      concurrency: 4,
      handler: async (key) => {
        active++;
        maxActive = Math.max(maxActive, active);
        runs.push(key);
        await sleep(20);
        active--;
        return undefined;
      },
    });
    q.start();
    q.add('a');
    await sleep(5);
    q.add('a'); // while a runs → one more run afterwards
    q.add('a'); // coalesced with the previous add
    await q.idle();
    expect(runs).toEqual(['a', 'a']);
    expect(maxActive).toBe(1);
    await q.stop();
  });

  it('runs different keys in parallel up to the concurrency', async () => {
    let active = 0;
    let maxActive = 0;
    const q = new WorkQueue({
      concurrency: 3,
      handler: async () => {
        active++;
        maxActive = Math.max(maxActive, active);
        await sleep(20);
        active--;
        return undefined;
      },
    });
    const depths: number[] = [];
    q.start();
    for (const k of ['a', 'b', 'c', 'd', 'e', 'f']) q.add(k);
    depths.push(q.depth);
    await q.idle();
    expect(maxActive).toBe(3);
    expect(depths[0]).toBe(3);
    await q.stop();
  });

  it('retries a failing key with growing delays and stops retrying once it succeeds', async () => {
    const times: number[] = [];
    const errors: number[] = [];
    const q = new WorkQueue({
      concurrency: 1,
      baseBackoffMs: 20,
      handler: async () => {
        times.push(Date.now());
        if (times.length < 4) throw new Error('boom');
        return undefined;
      },
      onError: (_k, _e, retryIn) => errors.push(retryIn),
    });
    q.start();
    q.add('k');
    await sleep(400);
    expect(times.length).toBe(4);
    expect(errors).toEqual([20, 40, 80]);
    const gaps = times.slice(1).map((t, i) => t - (times[i] as number));
    expect(gaps[2]).toBeGreaterThanOrEqual(75);
    await q.stop();
  });

  it('requeues after the delay a handler asks for', async () => {
    let n = 0;
    const q = new WorkQueue({
      concurrency: 1,
      handler: async () => {
        n++;
        return n < 3 ? { requeueAfterMs: 10 } : undefined;
      },
    });
    q.start();
    q.add('k');
    await sleep(150);
    expect(n).toBe(3);
    await q.stop();
  });

  it('stop waits for running handlers and cancels delayed adds', async () => {
    let finished = false;
    let runs = 0;
    const q = new WorkQueue({
      concurrency: 1,
      handler: async () => {
        runs++;
        await sleep(50);
        finished = true;
        return { requeueAfterMs: 10 };
      },
    });
    q.start();
    q.add('k');
    await sleep(5);
    await q.stop();
    expect(finished).toBe(true);
    await sleep(50);
    expect(runs).toBe(1);
  });
});
