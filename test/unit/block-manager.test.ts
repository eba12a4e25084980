/**
 * Block manager and scheduler properties (fast-check): reference counts are exact, no block is freed
 * twice, every block is free once all sequences end or are aborted, and prefix-cache hits hand out the
 * very blocks that hold the prefix.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BlockManager } from '../../runtime/src/engine/block-manager.ts';
import { defaultSamplingParams } from '../../runtime/src/engine/sampling-params.ts';
import { Scheduler } from '../../runtime/src/engine/scheduler.ts';
import { Sequence } from '../../runtime/src/engine/sequence.ts';

const params = defaultSamplingParams({ maxTokens: 1000 });

function checkInvariants(bm: BlockManager, live: Sequence[]) {
  const holders = new Map<number, number>();
  for (const s of live) {
    expect(new Set(s.blockTable).size, `sequence ${s.id} holds a block twice`).toBe(s.blockTable.length);
    for (const b of s.blockTable) holders.set(b, (holders.get(b) ?? 0) + 1);
  }
  let free = 0;
  for (let b = 0; b < bm.numBlocks; b++) {
    expect(bm.refCount(b), `block ${b}`).toBe(holders.get(b) ?? 0);
    if (bm.refCount(b) === 0) free++;
  }
  expect(bm.numFreeBlocks).toBe(free);
  for (const s of live) {
    if (s.status !== 'running') continue;
    // a running sequence holds blocks for everything computed, and nothing beyond its known tokens
    expect(s.blockTable.length).toBeGreaterThanOrEqual(bm.blocksFor(s.numComputed));
    expect(s.blockTable.length).toBeLessThanOrEqual(bm.blocksFor(s.numTokens));
  }
}

type Op = { kind: 'add'; prefix: number; len: number } | { kind: 'step' } | { kind: 'abort'; pick: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant('add' as const),
    prefix: fc.integer({ min: 0, max: 2 }),
    len: fc.integer({ min: 1, max: 40 }),
  }),
  fc.constant({ kind: 'step' as const }),
  fc.constant({ kind: 'step' as const }),
  fc.record({ kind: fc.constant('abort' as const), pick: fc.nat() }),
);

/** Prompts share one of three prefixes, so the prefix cache is exercised. */
function prompt(prefix: number, len: number, salt: number): number[] {
  const base = Array.from({ length: 24 }, (_, i) => (prefix * 31 + i * 7) % 50);
  return [...base, ...Array.from({ length: len }, (_, i) => (salt * 13 + i) % 50)];
}

describe('block manager + scheduler properties', () => {
  it('keeps reference counts exact and frees everything at the end', () => {
    fc.assert(
      fc.property(
        fc.array(opArb, { minLength: 1, maxLength: 80 }),
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 12, max: 40 }),
        fc.boolean(),
        (ops, blockSize, numBlocks, caching) => {
          const bm = new BlockManager(numBlocks, blockSize, caching);
          // Every admitted prompt must fit: the scheduler is only asked for what the cache can hold.
          const maxTokens = numBlocks * blockSize;
          const sched = new Scheduler(bm, { maxNumBatchedTokens: 32, maxNumSeqs: 6 });
          const live: Sequence[] = [];
          let id = 0;
          const end = (s: Sequence) => {
            s.status = 'finished';
            sched.remove(s);
            live.splice(live.indexOf(s), 1);
          };
          for (const op of ops) {
            if (op.kind === 'add') {
              const p = prompt(op.prefix, op.len, id);
              if (p.length + 8 > maxTokens) continue;
              const s = new Sequence(++id, p, params, id);
              sched.add(s);
              live.push(s);
            } else if (op.kind === 'abort') {
              if (live.length > 0) end(live[op.pick % live.length]!);
            } else {
              const plan = sched.schedule();
              for (const x of plan.scheduled) {
                x.seq.numComputed += x.numTokens;
                bm.cacheComputedBlocks(x.seq);
                if (x.samples) x.seq.tokens.push((x.seq.numTokens * 3) % 50);
              }
              for (const s of [...live]) if (s.numOutputTokens >= 8) end(s);
            }
            checkInvariants(bm, live);
          }
          for (const s of [...live]) end(s);
          checkInvariants(bm, []);
          expect(bm.numFreeBlocks).toBe(numBlocks);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('hands out the cached blocks of a computed prefix, and never double-frees', () => {
    const bm = new BlockManager(32, 4, true);
    const a = new Sequence(1, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], params, 1);
    bm.allocate(a);
    expect(a.numCachedTokens).toBe(0);
    a.numComputed = 10;
    bm.cacheComputedBlocks(a);
    const b = new Sequence(2, [1, 2, 3, 4, 5, 6, 7, 8, 99, 98, 97], params, 2);
    bm.allocate(b);
    expect(b.blockTable.slice(0, 2)).toEqual(a.blockTable.slice(0, 2));
    expect(b.numComputed).toBe(8);
    expect(bm.refCount(a.blockTable[0]!)).toBe(2);
    // a prompt that differs inside the first block shares nothing
    const c = new Sequence(3, [1, 2, 3, 5, 5, 6, 7, 8, 9], params, 3);
    bm.allocate(c);
    expect(c.numCachedTokens).toBe(0);
    bm.release(a);
    bm.release(b);
    bm.release(c);
    expect(bm.numFreeBlocks).toBe(32);
    // freed blocks keep their prefix: a new request still hits them (LRU eviction happens only on reuse)
    const d = new Sequence(4, [1, 2, 3, 4, 5, 6, 7, 8, 0], params, 4);
    bm.allocate(d);
    expect(d.numCachedTokens).toBe(8);
    expect(bm.hits).toBeGreaterThan(0);
    const holder = { ...d, blockTable: [...d.blockTable] } as Sequence;
    bm.release(d);
    expect(() => bm.release(holder)).toThrow(/double free/);
  });

  it('never serves the block holding the last prompt token from the cache', () => {
    const bm = new BlockManager(16, 4, true);
    const a = new Sequence(1, [1, 2, 3, 4, 5, 6, 7, 8], params, 1);
    bm.allocate(a);
    a.numComputed = 8;
    bm.cacheComputedBlocks(a);
    const same = new Sequence(2, [1, 2, 3, 4, 5, 6, 7, 8], params, 2);
    bm.allocate(same);
    expect(same.numCachedTokens).toBe(4);
    expect(same.numUncomputed).toBe(4);
  });

  it('preempts the newest running sequence when blocks run out, and recomputes it later', () => {
    const bm = new BlockManager(4, 4, false);
    const sched = new Scheduler(bm, { maxNumBatchedTokens: 64, maxNumSeqs: 8 });
    const a = new Sequence(1, [1, 2, 3, 4, 5, 6, 7], params, 1);
    const b = new Sequence(2, [9, 8, 7, 6, 5, 4, 3], params, 2);
    sched.add(a);
    sched.add(b);
    const simulate = () => {
      const plan = sched.schedule();
      for (const x of plan.scheduled) {
        x.seq.numComputed += x.numTokens;
        if (x.samples) x.seq.tokens.push(0);
      }
      return plan;
    };
    expect(simulate().scheduled.map((x) => x.seq.id)).toEqual([1, 2]); // prompts: 2 blocks each, cache full
    expect(simulate().preempted).toEqual([]); // 8th token of each still fits its second block
    const plan = simulate(); // the 9th token needs a third block: b, admitted last, gives its blocks up
    expect(plan.preempted.map((s) => s.id)).toEqual([2]);
    expect(plan.scheduled.map((x) => x.seq.id)).toEqual([1]);
    expect(b.status).toBe('waiting');
    expect(b.blockTable).toEqual([]);
    expect(b.numComputed).toBe(0);
    expect(b.numTokens).toBe(9); // its output so far is kept and recomputed as prompt
    expect(sched.waiting[0]).toBe(b);
    expect(sched.numPreemptions).toBe(1);
  });
});
