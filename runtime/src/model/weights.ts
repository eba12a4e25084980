/**
 * The weight manifest handed to the native loader: each tensor the engine needs, under its canonical
 * name, with the file, byte range, element type and logical shape ([out, in] for matrices).
 */
import type { ModelConfig } from './config.ts';
import { ModelLoadError } from './errors.ts';
import { GGML_TYPES, type GgufFile, ggmlTypeName } from './gguf.ts';
import { engineDtype, type SafetensorsTensor } from './safetensors.ts';

export interface TensorEntry {
  name: string;
  file: string;
  offset: number;
  nbytes: number;
  dtype: string;
  shape: number[];
  ropeUnpermuteHeads?: number;
}

/** Canonical names of every tensor a model of this config must have. */
export function requiredTensors(c: ModelConfig): string[] {
  const names = ['embed.weight', 'norm.weight'];
  if (!c.tieWordEmbeddings) names.push('lm_head.weight');
  for (let l = 0; l < c.numLayers; l++) {
    const p = `layers.${l}.`;
    names.push(
      ...['attn_norm', 'mlp_norm', 'attn.q', 'attn.k', 'attn.v', 'attn.o', 'mlp.gate', 'mlp.up', 'mlp.down'].map(
        (n) => `${p}${n}.weight`,
      ),
    );
    if (c.attentionBias) names.push(`${p}attn.q.bias`, `${p}attn.k.bias`, `${p}attn.v.bias`);
    if (c.qkNorm) names.push(`${p}attn.q_norm.weight`, `${p}attn.k_norm.weight`);
  }
  return names;
}

const HF_LAYER: Record<string, string> = {
  'input_layernorm.weight': 'attn_norm.weight',
  'post_attention_layernorm.weight': 'mlp_norm.weight',
  'self_attn.q_proj.weight': 'attn.q.weight',
  'self_attn.k_proj.weight': 'attn.k.weight',
  'self_attn.v_proj.weight': 'attn.v.weight',
  'self_attn.o_proj.weight': 'attn.o.weight',
  'self_attn.q_proj.bias': 'attn.q.bias',
  'self_attn.k_proj.bias': 'attn.k.bias',
  'self_attn.v_proj.bias': 'attn.v.bias',
  'self_attn.q_norm.weight': 'attn.q_norm.weight',
  'self_attn.k_norm.weight': 'attn.k_norm.weight',
  'mlp.gate_proj.weight': 'mlp.gate.weight',
  'mlp.up_proj.weight': 'mlp.up.weight',
  'mlp.down_proj.weight': 'mlp.down.weight',
};

const GGUF_LAYER: Record<string, string> = {
  'attn_norm.weight': 'attn_norm.weight',
  'ffn_norm.weight': 'mlp_norm.weight',
  'attn_q.weight': 'attn.q.weight',
  'attn_k.weight': 'attn.k.weight',
  'attn_v.weight': 'attn.v.weight',
  'attn_output.weight': 'attn.o.weight',
  'attn_q.bias': 'attn.q.bias',
  'attn_k.bias': 'attn.k.bias',
  'attn_v.bias': 'attn.v.bias',
  'attn_q_norm.weight': 'attn.q_norm.weight',
  'attn_k_norm.weight': 'attn.k_norm.weight',
  'ffn_gate.weight': 'mlp.gate.weight',
  'ffn_up.weight': 'mlp.up.weight',
  'ffn_down.weight': 'mlp.down.weight',
};

const HF_TOP: Record<string, string> = {
  'model.embed_tokens.weight': 'embed.weight',
  'model.norm.weight': 'norm.weight',
  'lm_head.weight': 'lm_head.weight',
};

const GGUF_TOP: Record<string, string> = {
  'token_embd.weight': 'embed.weight',
  'output_norm.weight': 'norm.weight',
  'output.weight': 'lm_head.weight',
};

/** The name a file uses for a canonical tensor name (for "missing tensor" messages). */
function fileName(canonical: string, layer: Record<string, string>, top: Record<string, string>, prefix: string) {
  for (const [file, canon] of Object.entries(top)) if (canon === canonical) return file;
  const m = /^layers\.(\d+)\.(.+)$/.exec(canonical);
  const entry = m && Object.entries(layer).find(([, canon]) => canon === m[2]);
  return m && entry ? `${prefix}.${m[1]}.${entry[0]}` : canonical;
}

function canonicalHf(name: string): string | undefined {
  if (HF_TOP[name]) return HF_TOP[name];
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(name);
  const suffix = m ? HF_LAYER[m[2]!] : undefined;
  return m && suffix ? `layers.${m[1]}.${suffix}` : undefined;
}

function canonicalGguf(name: string): string | undefined {
  if (GGUF_TOP[name]) return GGUF_TOP[name];
  const m = /^blk\.(\d+)\.(.+)$/.exec(name);
  const suffix = m ? GGUF_LAYER[m[2]!] : undefined;
  return m && suffix ? `layers.${m[1]}.${suffix}` : undefined;
}

function checkComplete(c: ModelConfig, entries: Map<string, TensorEntry>, where: string, names: (n: string) => string) {
  for (const n of requiredTensors(c)) {
    if (!entries.has(n)) throw new ModelLoadError(where, `missing tensor ${names(n)}`);
  }
}

export function manifestFromSafetensors(c: ModelConfig, tensors: SafetensorsTensor[], dir: string): TensorEntry[] {
  const entries = new Map<string, TensorEntry>();
  for (const t of tensors) {
    const name = canonicalHf(t.name);
    if (!name) continue;
    const dtype = engineDtype(t.dtype);
    if (!dtype) {
      throw new ModelLoadError(t.file, `tensor ${t.name} has unsupported type ${t.dtype} (supported: F32, F16, BF16)`);
    }
    entries.set(name, { name, file: t.file, offset: t.offset, nbytes: t.nbytes, dtype, shape: t.shape });
  }
  // A checkpoint without lm_head.weight ties it to the embedding, whatever config.json says.
  if (!entries.has('lm_head.weight')) c.tieWordEmbeddings = true;
  checkComplete(c, entries, dir, (n) => fileName(n, HF_LAYER, HF_TOP, 'model.layers'));
  return [...entries.values()];
}

export function manifestFromGguf(c: ModelConfig, f: GgufFile): TensorEntry[] {
  const entries = new Map<string, TensorEntry>();
  for (const t of f.tensors) {
    const name = canonicalGguf(t.name);
    if (!name) continue;
    const layout = GGML_TYPES[t.ggmlType];
    if (!layout) {
      throw new ModelLoadError(
        f.path,
        `tensor ${t.name} has unsupported type ${ggmlTypeName(t.ggmlType)} (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q6_K)`,
      );
    }
    const shape = [...t.dims].reverse();
    const entry: TensorEntry = { name, file: f.path, offset: t.offset, nbytes: t.nbytes, dtype: layout.name, shape };
    // llama.cpp's converter interleaves q/k rows of Llama checkpoints for its rotary layout.
    if (c.arch === 'llama' && name.endsWith('attn.q.weight')) entry.ropeUnpermuteHeads = c.numHeads;
    if (c.arch === 'llama' && name.endsWith('attn.k.weight')) entry.ropeUnpermuteHeads = c.numKvHeads;
    entries.set(name, entry);
  }
  checkComplete(c, entries, f.path, (n) => fileName(n, GGUF_LAYER, GGUF_TOP, 'blk'));
  return [...entries.values()];
}
