/**
 * The tensor-parallel sharding rules of the CUDA backend (native/src/backends/cuda/shard.h, plain C++)
 * for 1, 2, 4 and 8 GPUs, checked on the CPU: shards put back together give every matrix exactly,
 * each rank's query heads read the KV head it holds (KV heads replicated when the GPUs outnumber them),
 * and unfit plans are refused with the fix in the message. The GPU runs themselves are `npm run test:gpu`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCppCheck } from '../helpers/cpp-program.ts';

interface Row {
  model: string;
  tp: number;
  ok: boolean;
  error: string;
}

const dir = mkdtempSync(join(tmpdir(), 'pagoda-shard-'));
let rows: Row[] = [];

beforeAll(() => {
  rows = runCppCheck<Row>(dir, 'shard_check', ['test/unit/native/shard_check.cc']);
}, 120_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const row = (model: string, tp: number) => rows.find((r) => r.model === model && r.tp === tp)!;

describe('tensor-parallel shards', () => {
  for (const model of ['qwen3-8b', 'qwen3-32b', 'llama-1b', 'kv4', 'kv2'])
    for (const tp of [1, 2, 4, 8])
      it(`${model} at TP=${tp}: shards rebuild every matrix, heads read their KV head`, () => {
        expect(row(model, tp)).toEqual({ model, tp, ok: true, error: '' });
      });

  it('refuses a size that does not divide the attention heads', () => {
    expect(row('heads12', 4).error).toBe('');
    expect(row('heads12', 8).error).toBe("--tensor-parallel-size 8 must divide the model's 12 attention heads");
  });

  it('refuses a size that neither divides the KV heads nor is a multiple of them', () => {
    expect(row('kv3', 1).error).toBe('');
    expect(row('kv3', 2).error).toBe(
      "--tensor-parallel-size 2 must divide the model's 3 KV heads, or be a multiple of them",
    );
    expect(row('kv3', 4).error).toMatch(/must divide the model's 3 KV heads/);
  });

  it('refuses more GPUs than are visible, naming where the count comes from', () => {
    expect(row('qwen3-8b on 2 GPUs', 4).error).toBe(
      "--tensor-parallel-size 4 needs 4 GPUs but 2 are visible (check the pod's GPU limit and CUDA_VISIBLE_DEVICES)",
    );
  });
});
