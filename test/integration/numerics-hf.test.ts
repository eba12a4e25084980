/**
 * The CPU engine against HF transformers: tiny random-weight Qwen3, Qwen2, Llama (Llama-3 rope
 * scaling, tied and untied embeddings, f32 / bf16 / f16 / sharded safetensors, GGUF plain and
 * quantized). Logits of every prompt position must agree to 1e-4 relative error.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel } from '../../runtime/src/model/load.ts';
import { FIXTURES, readReference, TINY_MODELS, tinyModelDir, tinyReference } from '../helpers/fixtures.ts';
import { loadNative, promptLogits, relativeError } from '../helpers/native-run.ts';

const TOLERANCE = 1e-4;

async function worstError(modelPath: string, ref: ReturnType<typeof tinyReference>, weightDtype: 'auto' | 'f32') {
  const model = loadModel(modelPath);
  const engine = await loadNative(model, { weightDtype });
  try {
    const got = await promptLogits(engine, ref.prompts, ref.vocab, {
      blockSize: 16,
      chunk: Number.POSITIVE_INFINITY,
      batched: true,
    });
    let worst = 0;
    ref.prompts.forEach((p, i) => {
      for (let t = 0; t < p.length; t++) worst = Math.max(worst, relativeError(got[i]![t]!, ref.logits[i]![t]!));
    });
    return { worst, model };
  } finally {
    engine.close();
  }
}

describe('logits match HF transformers', () => {
  for (const name of TINY_MODELS) {
    it(`${name} (safetensors)`, async () => {
      const { worst, model } = await worstError(tinyModelDir(name), tinyReference(name), 'auto');
      expect(model.format).toBe('safetensors');
      expect(worst).toBeLessThan(TOLERANCE);
    });
  }

  it('covers each architecture feature', () => {
    const features = TINY_MODELS.map((n) => loadModel(tinyModelDir(n)).config);
    expect(features.some((c) => c.arch === 'qwen3' && c.qkNorm)).toBe(true);
    expect(features.some((c) => c.arch === 'qwen2' && c.attentionBias)).toBe(true);
    expect(features.some((c) => c.ropeScaling.type === 'llama3')).toBe(true);
    expect(features.some((c) => c.tieWordEmbeddings)).toBe(true);
    expect(features.some((c) => !c.tieWordEmbeddings)).toBe(true);
  });

  for (const name of ['llama-tiny', 'llama-tiny-quant']) {
    it(`${name}.gguf (q/k rope permutation undone; quantized weights dequantized)`, async () => {
      const ref = readReference(
        join(FIXTURES, 'gguf', `${name}.reference.json`),
        join(FIXTURES, 'gguf', `${name}.reference-logits.bin`),
      );
      // f32 storage: the comparison is exact math on the dequantized values
      const { worst, model } = await worstError(join(FIXTURES, 'gguf', `${name}.gguf`), ref, 'f32');
      expect(model.format).toBe('gguf');
      expect(worst).toBeLessThan(TOLERANCE);
    });
  }

  it('a GGUF tokenizer encodes like the tokenizer.json it was converted from', () => {
    const gguf = loadModel(join(FIXTURES, 'gguf', 'llama-tiny.gguf')).tokenizer;
    const hf = loadModel(tinyModelDir('llama-tiny')).tokenizer;
    for (const text of [
      'Hello, world!',
      'Paged attention keeps 12345 blocks.',
      '<|im_start|>user\nHi<|im_end|>\n',
      ' spaces  and\ttabs\n',
    ]) {
      expect(gguf.encode(text)).toEqual(hf.encode(text));
      expect(gguf.decode(gguf.encode(text), { skipSpecial: false })).toBe(text);
    }
  });
});
