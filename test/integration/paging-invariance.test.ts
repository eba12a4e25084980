/**
 * Paging invariants of the CPU engine: a prompt's logits are bit-identical whether it runs as one
 * prefill, in chunks, or token by token; whatever the block size and block placement; alone or batched
 * with other prompts. (The kernels are batch-invariant by construction, so exact equality is demanded.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LoadedModel, loadModel } from '../../runtime/src/model/load.ts';
import type { NativeEngine } from '../../runtime/src/native/index.ts';
import { tinyModelDir, tinyReference } from '../helpers/fixtures.ts';
import { loadNative, promptLogits, type RunOptions } from '../helpers/native-run.ts';

function expectIdentical(a: Float32Array[][], b: Float32Array[][]) {
  expect(a.length).toBe(b.length);
  a.forEach((rows, i) => {
    expect(rows.length).toBe(b[i]!.length);
    rows.forEach((row, t) => {
      const other = b[i]![t]!;
      let diff = 0;
      for (let k = 0; k < row.length; k++) if (row[k] !== other[k]) diff++;
      expect(diff, `prompt ${i} position ${t}: ${diff} logits differ`).toBe(0);
    });
  });
}

for (const name of ['qwen3-tiny', 'qwen2-tiny-sharded']) {
  describe(`paging invariance (${name})`, () => {
    let model: LoadedModel;
    const engines = new Map<number, NativeEngine>();
    const ref = tinyReference(name);
    const prompts = ref.prompts;
    beforeAll(async () => {
      model = loadModel(tinyModelDir(name));
      for (const bs of [1, 7, 16, 32]) engines.set(bs, await loadNative(model, { blockSize: bs, numBlocks: 512 }));
    });
    afterAll(() => {
      for (const e of engines.values()) e.close();
    });
    const run = (o: RunOptions) => promptLogits(engines.get(o.blockSize)!, prompts, ref.vocab, o);

    it('one prefill = chunks of 5 = token by token', async () => {
      const whole = await run({ blockSize: 16, chunk: Number.POSITIVE_INFINITY, batched: false });
      expectIdentical(await run({ blockSize: 16, chunk: 5, batched: false }), whole);
      expectIdentical(await run({ blockSize: 16, chunk: 1, batched: false }), whole);
    });

    it('across block sizes 1, 7, 16, 32 and block placements', async () => {
      const base = await run({ blockSize: 16, chunk: Number.POSITIVE_INFINITY, batched: false });
      for (const bs of [1, 7, 32])
        expectIdentical(await run({ blockSize: bs, chunk: 3, batched: false, firstBlock: 50 }), base);
    });

    it('alone or batched with the other prompts, mixing chunk sizes in one step', async () => {
      const alone = await run({ blockSize: 16, chunk: Number.POSITIVE_INFINITY, batched: false });
      expectIdentical(await run({ blockSize: 16, chunk: Number.POSITIVE_INFINITY, batched: true }), alone);
      expectIdentical(await run({ blockSize: 7, chunk: 4, batched: true, firstBlock: 3 }), alone);
    });
  });
}
