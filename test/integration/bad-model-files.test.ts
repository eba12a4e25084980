/**
 * Missing, truncated or corrupt model files, unsupported architectures and tensor types: the CLI exits
 * non-zero with one line that names the file and the problem — no stack trace, no crash dump.
 */
import { copyFileSync, cpSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.ts';
import { FIXTURES, tinyModelDir } from '../helpers/fixtures.ts';

const work = mkdtempSync(join(tmpdir(), 'pagoda-bad-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function copyModel(name: string): string {
  const dir = join(work, `${name}-${Math.random().toString(36).slice(2)}`);
  cpSync(tinyModelDir(name), dir, { recursive: true });
  return dir;
}

function copyGguf(): string {
  const path = join(work, `m-${Math.random().toString(36).slice(2)}.gguf`);
  copyFileSync(join(FIXTURES, 'gguf', 'llama-tiny.gguf'), path);
  return path;
}

/** Rewrites a safetensors file's JSON header. */
function editSafetensorsHeader(file: string, edit: (h: Record<string, unknown>) => void): void {
  const buf = readFileSync(file);
  const len = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + len).toString('utf8')) as Record<string, unknown>;
  edit(header);
  let text = JSON.stringify(header);
  // Keep the data offset: pad with spaces (allowed by the format) to the old length.
  if (text.length > len) throw new Error('edited header grew');
  text = text.padEnd(len, ' ');
  const out = Buffer.concat([buf.subarray(0, 8), Buffer.from(text), buf.subarray(8 + len)]);
  writeFileSync(file, out);
}

/** Changes the ggml type id of one tensor in a GGUF header. */
function setGgufTensorType(file: string, tensor: string, type: number): void {
  const buf = readFileSync(file);
  const name = Buffer.from(tensor);
  const at = buf.indexOf(Buffer.concat([Buffer.from(new BigUint64Array([BigInt(name.length)]).buffer), name]));
  if (at < 0) throw new Error(`no tensor ${tensor}`);
  let p = at + 8 + name.length;
  const nd = buf.readUInt32LE(p);
  p += 4 + 8 * nd;
  buf.writeUInt32LE(type, p);
  writeFileSync(file, buf);
}

interface Case {
  name: string;
  make: () => string;
  /** substrings the one-line error must contain (the file, then the problem) */
  expect: (path: string) => string[];
}

const cases: Case[] = [
  { name: 'missing path', make: () => join(work, 'nope'), expect: (p) => [p, 'no such file or directory'] },
  {
    name: 'directory without a model',
    make: () => mkdtempSync(join(work, 'empty-')),
    expect: (p) => [p, 'not a model'],
  },
  {
    name: 'truncated GGUF',
    make: () => {
      const p = copyGguf();
      truncateSync(p, 200_000);
      return p;
    },
    expect: (p) => [p, 'truncated'],
  },
  {
    name: 'GGUF with a bad magic',
    make: () => {
      const p = copyGguf();
      const b = readFileSync(p);
      b.write('XXXX', 0);
      writeFileSync(p, b);
      return p;
    },
    expect: (p) => [p, 'not a GGUF file'],
  },
  {
    name: 'GGUF with an unsupported tensor type (Q4_K)',
    make: () => {
      const p = copyGguf();
      setGgufTensorType(p, 'blk.0.ffn_down.weight', 12);
      return p;
    },
    expect: (p) => [p, 'unsupported type Q4_K'],
  },
  {
    name: 'GGUF of an unsupported architecture',
    make: () => {
      const p = copyGguf();
      const b = readFileSync(p);
      const at = b.indexOf(Buffer.from('general.architecture'));
      // value: u32 type (8 = string), u64 length, bytes "llama" → "gptj!"
      b.write('gptj!', at + 'general.architecture'.length + 4 + 8);
      writeFileSync(p, b);
      return p;
    },
    expect: (p) => [p, 'unsupported architecture "gptj!"'],
  },
  {
    name: 'truncated safetensors shard',
    make: () => {
      const d = copyModel('qwen2-tiny-sharded');
      truncateSync(join(d, 'model-00002-of-00004.safetensors'), 1000);
      return d;
    },
    expect: (d) => [join(d, 'model-00002-of-00004.safetensors'), 'truncated'],
  },
  {
    name: 'missing shard',
    make: () => {
      const d = copyModel('qwen2-tiny-sharded');
      rmSync(join(d, 'model-00003-of-00004.safetensors'));
      return d;
    },
    expect: (d) => [join(d, 'model-00003-of-00004.safetensors'), 'missing'],
  },
  {
    name: 'corrupt safetensors header',
    make: () => {
      const d = copyModel('llama-tiny');
      const f = join(d, 'model.safetensors');
      const b = readFileSync(f);
      b.write('{{{{', 8);
      writeFileSync(f, b);
      return d;
    },
    expect: (d) => [join(d, 'model.safetensors'), 'not valid JSON'],
  },
  {
    name: 'safetensors tensor of an unsupported type',
    make: () => {
      const d = copyModel('llama-tiny');
      editSafetensorsHeader(join(d, 'model.safetensors'), (h) => {
        (h['model.norm.weight'] as { dtype: string }).dtype = 'I32';
      });
      return d;
    },
    expect: (d) => [join(d, 'model.safetensors'), 'unsupported type I32'],
  },
  {
    name: 'a tensor missing from the checkpoint',
    make: () => {
      const d = copyModel('llama-tiny');
      editSafetensorsHeader(join(d, 'model.safetensors'), (h) => {
        delete h['model.layers.1.mlp.up_proj.weight'];
      });
      return d;
    },
    expect: (d) => [d, 'missing tensor model.layers.1.mlp.up_proj.weight'],
  },
  {
    name: 'unsupported architecture in config.json',
    make: () => {
      const d = copyModel('llama-tiny');
      const c = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'));
      c.model_type = 'gpt2';
      writeFileSync(join(d, 'config.json'), JSON.stringify(c));
      return d;
    },
    expect: (d) => [join(d, 'config.json'), 'unsupported architecture model_type="gpt2"'],
  },
  {
    name: 'config.json without hidden_size',
    make: () => {
      const d = copyModel('llama-tiny');
      const c = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'));
      delete c.hidden_size;
      writeFileSync(join(d, 'config.json'), JSON.stringify(c));
      return d;
    },
    expect: (d) => [join(d, 'config.json'), 'has no hidden_size'],
  },
  {
    name: 'config.json that is not JSON',
    make: () => {
      const d = copyModel('llama-tiny');
      writeFileSync(join(d, 'config.json'), '{"hidden_size": 64,');
      return d;
    },
    expect: (d) => [join(d, 'config.json'), 'not valid JSON'],
  },
  {
    name: 'missing tokenizer.json',
    make: () => {
      const d = copyModel('llama-tiny');
      rmSync(join(d, 'tokenizer.json'));
      return d;
    },
    expect: (d) => [d, 'missing tokenizer.json'],
  },
  {
    name: 'tensor shape that does not match the config',
    make: () => {
      const d = copyModel('llama-tiny');
      const c = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'));
      c.intermediate_size = 128;
      writeFileSync(join(d, 'config.json'), JSON.stringify(c));
      return d;
    },
    expect: (d) => [join(d, 'model.safetensors'), 'expected [128, 64]'],
  },
];

describe('bad model files give one clear error and a non-zero exit', () => {
  for (const c of cases) {
    it(c.name, () => {
      const path = c.make();
      const r = runCli(['generate', '--model', path, '--prompt', 'hi', '--max-tokens', '2']);
      expect(r.status, r.stderr).toBe(1);
      const lines = r.stderr.trim().split('\n');
      expect(lines, r.stderr).toHaveLength(1);
      expect(lines[0]!.startsWith('pagoda: ')).toBe(true);
      for (const s of c.expect(path)) expect(lines[0]).toContain(s);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    });
  }
});
