/** Paths and readers for the committed reference fixtures (made by `npm run fixtures`). */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
export const ROOT = join(FIXTURES, '..', '..');

export function readF32(path: string): Float32Array {
  const b = readFileSync(path);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

export interface Reference {
  prompts: number[][];
  vocab: number;
  /** logits[prompt][position] */
  logits: Float32Array[][];
}

/** Reads <base>.json + <base>-logits.bin style references ("reference.json" + "reference-logits.bin"). */
export function readReference(jsonPath: string, binPath: string): Reference {
  const meta = JSON.parse(readFileSync(jsonPath, 'utf8')) as { prompts: number[][]; vocab: number };
  const flat = readF32(binPath);
  let off = 0;
  const logits = meta.prompts.map((p) =>
    p.map(() => {
      const row = flat.subarray(off, off + meta.vocab);
      off += meta.vocab;
      return row;
    }),
  );
  return { prompts: meta.prompts, vocab: meta.vocab, logits };
}

export const TINY_MODELS = [
  'qwen3-tiny',
  'qwen2-tiny-sharded',
  'llama3-tiny',
  'llama-tiny-bf16',
  'qwen3-tiny-f16',
  'llama-tiny',
] as const;

export function tinyModelDir(name: string): string {
  return join(FIXTURES, 'tiny', name);
}

export function tinyReference(name: string): Reference {
  const dir = tinyModelDir(name);
  return readReference(join(dir, 'reference.json'), join(dir, 'reference-logits.bin'));
}
