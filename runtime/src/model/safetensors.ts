/**
 * safetensors headers: an 8-byte little-endian header length, a JSON header mapping tensor names to
 * {dtype, shape, data_offsets}, then the data. Sharded checkpoints list their files in
 * model.safetensors.index.json.
 */
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { ModelLoadError } from './errors.ts';

export interface SafetensorsTensor {
  name: string;
  file: string;
  dtype: string;
  shape: number[];
  offset: number;
  nbytes: number;
}

const DTYPES: Record<string, { name: string; bytes: number }> = {
  F32: { name: 'f32', bytes: 4 },
  F16: { name: 'f16', bytes: 2 },
  BF16: { name: 'bf16', bytes: 2 },
};

/** Maps a safetensors dtype to the engine's name; undefined when Pagoda cannot load it. */
export function engineDtype(st: string): string | undefined {
  return DTYPES[st]?.name;
}

export function readSafetensorsHeader(file: string): SafetensorsTensor[] {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    throw new ModelLoadError(file, `cannot open: ${(e as Error).message}`);
  }
  try {
    const size = fstatSync(fd).size;
    if (size < 8) throw new ModelLoadError(file, `truncated: ${size} bytes is too short for a safetensors file`);
    const lenBuf = Buffer.alloc(8);
    readSync(fd, lenBuf, 0, 8, 0);
    const headerLen = Number(lenBuf.readBigUInt64LE(0));
    if (headerLen <= 0 || 8 + headerLen > size) {
      throw new ModelLoadError(file, `corrupt safetensors header length ${headerLen} (file has ${size} bytes)`);
    }
    const header = Buffer.alloc(headerLen);
    readSync(fd, header, 0, headerLen, 8);
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(header.toString('utf8')) as Record<string, unknown>;
    } catch {
      throw new ModelLoadError(file, 'corrupt safetensors header: not valid JSON');
    }
    const dataStart = 8 + headerLen;
    const out: SafetensorsTensor[] = [];
    for (const [name, raw] of Object.entries(json)) {
      if (name === '__metadata__') continue;
      const t = raw as { dtype?: string; shape?: number[]; data_offsets?: [number, number] };
      if (!t || typeof t.dtype !== 'string' || !Array.isArray(t.shape) || !Array.isArray(t.data_offsets)) {
        throw new ModelLoadError(file, `corrupt safetensors header entry for ${name}`);
      }
      const [begin, end] = t.data_offsets;
      if (dataStart + end > size) {
        throw new ModelLoadError(
          file,
          `truncated: tensor ${name} ends at byte ${dataStart + end} but the file has ${size}`,
        );
      }
      out.push({ name, file, dtype: t.dtype, shape: t.shape, offset: dataStart + begin, nbytes: end - begin });
    }
    return out;
  } finally {
    closeSync(fd);
  }
}

/** All tensors of a model directory: model.safetensors, or the shards named by the index. */
export function readSafetensorsDir(dir: string): SafetensorsTensor[] {
  const index = join(dir, 'model.safetensors.index.json');
  if (existsSync(index)) {
    let map: Record<string, string>;
    try {
      map = (JSON.parse(readFileSync(index, 'utf8')) as { weight_map: Record<string, string> }).weight_map;
    } catch {
      throw new ModelLoadError(index, 'not a valid safetensors index (weight_map missing or bad JSON)');
    }
    const files = [...new Set(Object.values(map))];
    const all: SafetensorsTensor[] = [];
    for (const f of files) {
      const path = join(dir, f);
      if (!existsSync(path)) throw new ModelLoadError(path, 'missing: listed in model.safetensors.index.json');
      all.push(...readSafetensorsHeader(path));
    }
    return all;
  }
  const single = join(dir, 'model.safetensors');
  if (!existsSync(single)) throw new ModelLoadError(dir, 'no model.safetensors or model.safetensors.index.json');
  return readSafetensorsHeader(single);
}
