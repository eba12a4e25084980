/**
 * WeightStore::read_bf16 — how the CUDA backend reads its (shard of each) matrix — gives bit for bit
 * what the float32 path it replaced gave (read_f32, slice, round to bf16) for every file dtype, whole
 * matrices and row/column shards, GGUF's rope permutation included; bad slices are refused. Also prints
 * the time of both paths on a 128 MiB bf16 matrix (figures for docs/perf.md come from larger runs).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCppCheck } from '../helpers/cpp-program.ts';

interface Row {
  case: string;
  same?: boolean;
  error?: string;
  read_bf16_ms?: number;
  f32_path_ms?: number;
}

const dir = mkdtempSync(join(tmpdir(), 'pagoda-bf16-'));
let rows: Row[] = [];

beforeAll(() => {
  const sources = ['weights.cc', 'dequant.cc', 'half.cc'].map((f) => `native/src/engine/${f}`);
  rows = runCppCheck<Row>(
    dir,
    'weights_bf16_check',
    ['test/unit/native/weights_bf16_check.cc', ...sources],
    [dir, '8192'],
  );
}, 180_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('read_bf16', () => {
  for (const dtype of ['bf16', 'f16', 'f32', 'q8_0', 'bf16-rope'])
    for (const slice of ['whole', 'rows', 'cols', 'block'])
      it(`${dtype}, ${slice}: the same bits as the float32 path`, () => {
        expect(rows.find((r) => r.case === `${dtype} ${slice}`)?.same).toBe(true);
      });

  it('refuses a slice outside the tensor', () => {
    expect(rows.find((r) => r.case === 'out of range')?.error).toBe(
      'read_bf16: slice outside tensor bf16 of shape [96, 128]',
    );
  });

  it('on a 128 MiB bf16 matrix: same bits, and the time of both paths', () => {
    for (const c of ['time whole', 'time column half']) {
      const r = rows.find((x) => x.case === c)!;
      expect(r.same).toBe(true);
      console.log(`${c}: read_bf16 ${r.read_bf16_ms} ms, float32 path ${r.f32_path_ms} ms`);
    }
  });
});
