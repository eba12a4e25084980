/**
 * Drives the native engine directly (no scheduler) for numerics tests: runs prompts through the paged
 * KV cache in chunks of a chosen size and returns the logits of every position.
 */
import type { LoadedModel } from '../../runtime/src/model/load.ts';
import { createNativeEngine, type EngineOptions, type NativeEngine } from '../../runtime/src/native/index.ts';

export async function loadNative(model: LoadedModel, options: EngineOptions = {}): Promise<NativeEngine> {
  const engine = createNativeEngine();
  await engine.load({
    config: model.config,
    tensors: model.tensors,
    options: { numBlocks: 256, blockSize: 16, ...options },
  });
  return engine;
}

export interface RunOptions {
  blockSize: number;
  /** tokens per step for each prompt (Infinity = whole prompt in one step) */
  chunk: number;
  /** run all prompts in the same steps (batched) or one after another */
  batched: boolean;
  /** physical block ids are taken from this offset, so tests can place sequences anywhere in the cache */
  firstBlock?: number;
}

/** Logits [prompt][position] as Float32Array rows of `vocab` values. */
export async function promptLogits(
  engine: NativeEngine,
  prompts: number[][],
  vocab: number,
  opts: RunOptions,
): Promise<Float32Array[][]> {
  const { blockSize } = opts;
  let nextBlock = opts.firstBlock ?? 0;
  const tables = prompts.map((p) => {
    const n = Math.ceil(p.length / blockSize);
    // Interleave physical blocks in reverse so logical order never matches physical order.
    const ids = Array.from({ length: n }, (_, i) => nextBlock + n - 1 - i);
    nextBlock += n;
    return ids;
  });
  const out: Float32Array[][] = prompts.map(() => []);
  const done = prompts.map(() => 0);
  const groups = opts.batched ? [prompts.map((_, i) => i)] : prompts.map((_, i) => [i]);
  for (const group of groups) {
    while (group.some((i) => done[i]! < prompts[i]!.length)) {
      const active = group.filter((i) => done[i]! < prompts[i]!.length);
      const tokenIds: number[] = [];
      const positions: number[] = [];
      const slots: number[] = [];
      const queryStart = [0];
      const contextLens: number[] = [];
      const maxBlocks = Math.max(...active.map((i) => tables[i]!.length));
      const blockTables = new Int32Array(active.length * maxBlocks);
      const counts: number[] = [];
      active.forEach((i, s) => {
        const p = prompts[i]!;
        const n = Math.min(opts.chunk, p.length - done[i]!);
        for (let j = 0; j < n; j++) {
          const pos = done[i]! + j;
          tokenIds.push(p[pos]!);
          positions.push(pos);
          slots.push(tables[i]![Math.floor(pos / blockSize)]! * blockSize + (pos % blockSize));
        }
        counts.push(n);
        queryStart.push(tokenIds.length);
        contextLens.push(done[i]! + n);
        blockTables.set(tables[i]!, s * maxBlocks);
      });
      const rows = Int32Array.from({ length: tokenIds.length }, (_, k) => k);
      const r = await engine.step({
        tokenIds: Int32Array.from(tokenIds),
        positions: Int32Array.from(positions),
        queryStart: Int32Array.from(queryStart),
        contextLens: Int32Array.from(contextLens),
        blockTables,
        maxBlocksPerSeq: maxBlocks,
        slotMapping: Int32Array.from(slots),
        logitRows: rows,
        sample: false,
        returnLogits: true,
      });
      let row = 0;
      active.forEach((i, s) => {
        for (let j = 0; j < counts[s]!; j++, row++) out[i]!.push(r.logits!.slice(row * vocab, (row + 1) * vocab));
        done[i]! += counts[s]!;
      });
    }
  }
  return out;
}

/** max |a - b| / max |b| over a logits row set: the relative error the tests bound. */
export function relativeError(ours: Float32Array, ref: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    num = Math.max(num, Math.abs(ours[i]! - ref[i]!));
    den = Math.max(den, Math.abs(ref[i]!));
  }
  return num / den;
}
