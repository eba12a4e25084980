/**
 * GGUF reader (versions 2 and 3): metadata key/values and tensor descriptors. Tensor data is not read
 * here; the native loader maps the file and decodes the ranges this returns.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { ModelLoadError } from './errors.ts';

export type GgufValue = number | bigint | boolean | string | GgufValue[];

export interface GgufTensorInfo {
  name: string;
  /** ggml order: dims[0] is the innermost (contiguous) dimension. */
  dims: number[];
  ggmlType: number;
  /** absolute byte offset of the data in the file */
  offset: number;
  nbytes: number;
}

export interface GgufFile {
  path: string;
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
  fileSize: number;
}

/** ggml type ids and their block layout (elements, bytes). Only these can be loaded. */
export const GGML_TYPES: Record<number, { name: string; blockElems: number; blockBytes: number }> = {
  0: { name: 'f32', blockElems: 1, blockBytes: 4 },
  1: { name: 'f16', blockElems: 1, blockBytes: 2 },
  2: { name: 'q4_0', blockElems: 32, blockBytes: 18 },
  3: { name: 'q4_1', blockElems: 32, blockBytes: 20 },
  8: { name: 'q8_0', blockElems: 32, blockBytes: 34 },
  14: { name: 'q6_k', blockElems: 256, blockBytes: 210 },
  30: { name: 'bf16', blockElems: 1, blockBytes: 2 },
};

const GGML_TYPE_NAMES: Record<number, string> = {
  6: 'Q5_0',
  7: 'Q5_1',
  9: 'Q8_1',
  10: 'Q2_K',
  11: 'Q3_K',
  12: 'Q4_K',
  13: 'Q5_K',
  15: 'Q8_K',
  16: 'IQ2_XXS',
  17: 'IQ2_XS',
  18: 'IQ3_XXS',
  19: 'IQ1_S',
  20: 'IQ4_NL',
  21: 'IQ3_S',
  22: 'IQ2_S',
  23: 'IQ4_XS',
  24: 'I8',
  25: 'I16',
  26: 'I32',
  27: 'I64',
  28: 'F64',
  29: 'IQ1_M',
};

export function ggmlTypeName(t: number): string {
  return GGML_TYPES[t]?.name.toUpperCase() ?? GGML_TYPE_NAMES[t] ?? `type ${t}`;
}

const MAGIC = 0x46554747; // "GGUF" little-endian

/** Buffered sequential reader over a file descriptor; throws ModelLoadError on a short read. */
class Reader {
  private buf = Buffer.alloc(0);
  private bufStart = 0;
  pos = 0;
  private readonly fd: number;
  private readonly path: string;
  private readonly size: number;
  constructor(fd: number, path: string, size: number) {
    this.fd = fd;
    this.path = path;
    this.size = size;
  }

  private need(n: number): Buffer {
    if (this.pos + n > this.size) {
      throw new ModelLoadError(this.path, `truncated GGUF header: needs byte ${this.pos + n}, file has ${this.size}`);
    }
    const end = this.bufStart + this.buf.length;
    if (this.pos < this.bufStart || this.pos + n > end) {
      const len = Math.min(Math.max(n, 1 << 20), this.size - this.pos);
      this.buf = Buffer.alloc(len);
      readSync(this.fd, this.buf, 0, len, this.pos);
      this.bufStart = this.pos;
    }
    const off = this.pos - this.bufStart;
    this.pos += n;
    return this.buf.subarray(off, off + n);
  }
  u8 = () => this.need(1).readUInt8(0);
  i8 = () => this.need(1).readInt8(0);
  u16 = () => this.need(2).readUInt16LE(0);
  i16 = () => this.need(2).readInt16LE(0);
  u32 = () => this.need(4).readUInt32LE(0);
  i32 = () => this.need(4).readInt32LE(0);
  f32 = () => this.need(4).readFloatLE(0);
  f64 = () => this.need(8).readDoubleLE(0);
  u64 = () => this.need(8).readBigUInt64LE(0);
  i64 = () => this.need(8).readBigInt64LE(0);
  count(what: string): number {
    const v = this.u64();
    if (v > BigInt(this.size)) throw new ModelLoadError(this.path, `corrupt GGUF: ${what} count ${v} is impossible`);
    return Number(v);
  }
  str(): string {
    const n = this.count('string length');
    return this.need(n).toString('utf8');
  }
}

function readValue(r: Reader, type: number, path: string): GgufValue {
  switch (type) {
    case 0:
      return r.u8();
    case 1:
      return r.i8();
    case 2:
      return r.u16();
    case 3:
      return r.i16();
    case 4:
      return r.u32();
    case 5:
      return r.i32();
    case 6:
      return r.f32();
    case 7:
      return r.u8() !== 0;
    case 8:
      return r.str();
    case 9: {
      const itemType = r.u32();
      const n = r.count('array');
      const out: GgufValue[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = readValue(r, itemType, path);
      return out;
    }
    case 10:
      return r.u64();
    case 11:
      return r.i64();
    case 12:
      return r.f64();
    default:
      throw new ModelLoadError(path, `corrupt GGUF: unknown metadata value type ${type}`);
  }
}

export function readGguf(path: string): GgufFile {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new ModelLoadError(path, `cannot open: ${(e as Error).message}`);
  }
  try {
    const size = fstatSync(fd).size;
    const r = new Reader(fd, path, size);
    if (size < 24 || r.u32() !== MAGIC) throw new ModelLoadError(path, 'not a GGUF file (bad magic)');
    const version = r.u32();
    if (version !== 2 && version !== 3) throw new ModelLoadError(path, `unsupported GGUF version ${version}`);
    const tensorCount = r.count('tensor');
    const kvCount = r.count('metadata');
    const metadata = new Map<string, GgufValue>();
    for (let i = 0; i < kvCount; i++) {
      const key = r.str();
      metadata.set(key, readValue(r, r.u32(), path));
    }
    const infos: { name: string; dims: number[]; ggmlType: number; rel: number }[] = [];
    for (let i = 0; i < tensorCount; i++) {
      const name = r.str();
      const nd = r.u32();
      if (nd > 4) throw new ModelLoadError(path, `corrupt GGUF: tensor ${name} has ${nd} dimensions`);
      const dims: number[] = [];
      for (let d = 0; d < nd; d++) dims.push(Number(r.u64()));
      const ggmlType = r.u32();
      const rel = Number(r.u64());
      infos.push({ name, dims, ggmlType, rel });
    }
    const alignment = Number(metadata.get('general.alignment') ?? 32);
    const dataStart = Math.ceil(r.pos / alignment) * alignment;
    const tensors = infos.map((t) => {
      const n = t.dims.reduce((a, b) => a * b, 1);
      const layout = GGML_TYPES[t.ggmlType];
      const nbytes = layout ? (n / layout.blockElems) * layout.blockBytes : 0;
      return { name: t.name, dims: t.dims, ggmlType: t.ggmlType, offset: dataStart + t.rel, nbytes };
    });
    for (const t of tensors) {
      if (GGML_TYPES[t.ggmlType] && t.offset + t.nbytes > size) {
        throw new ModelLoadError(
          path,
          `truncated: tensor ${t.name} ends at byte ${t.offset + t.nbytes} but the file has ${size} bytes`,
        );
      }
    }
    return { path, version, metadata, tensors, fileSize: size };
  } finally {
    closeSync(fd);
  }
}

/** Typed metadata accessors that name the missing key. */
export function metaNumber(f: GgufFile, key: string, fallback?: number): number {
  const v = f.metadata.get(key);
  if (v === undefined) {
    if (fallback !== undefined) return fallback;
    throw new ModelLoadError(f.path, `GGUF metadata has no ${key}`);
  }
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  throw new ModelLoadError(f.path, `GGUF metadata ${key} is not a number`);
}

export function metaString(f: GgufFile, key: string): string | undefined {
  const v = f.metadata.get(key);
  return typeof v === 'string' ? v : undefined;
}

export function metaArray(f: GgufFile, key: string): GgufValue[] | undefined {
  const v = f.metadata.get(key);
  return Array.isArray(v) ? v : undefined;
}
