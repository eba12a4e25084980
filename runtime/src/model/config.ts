/**
 * The transformer shape Pagoda runs, read from a Hugging Face config.json or GGUF metadata. The field
 * names match what the native engine's load() expects.
 */
import { ModelLoadError } from './errors.ts';
import { type GgufFile, metaNumber, metaString } from './gguf.ts';

export type Architecture = 'llama' | 'qwen2' | 'qwen3';
export const ARCHITECTURES: readonly Architecture[] = ['llama', 'qwen2', 'qwen3'];

export interface RopeScaling {
  type: 'none' | 'linear' | 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPosition: number;
}

export interface ModelConfig {
  arch: Architecture;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling;
  tieWordEmbeddings: boolean;
  attentionBias: boolean;
  qkNorm: boolean;
  /** longest context the model was trained for */
  maxPositionEmbeddings: number;
}

const NO_SCALING: RopeScaling = {
  type: 'none',
  factor: 1,
  lowFreqFactor: 1,
  highFreqFactor: 4,
  originalMaxPosition: 8192,
};

function archFromHf(json: Record<string, unknown>, path: string): Architecture {
  const type = String(json.model_type ?? '');
  const known: Record<string, Architecture> = { llama: 'llama', qwen2: 'qwen2', qwen3: 'qwen3' };
  const arch = known[type];
  if (!arch) {
    const archs = Array.isArray(json.architectures) ? json.architectures.join(', ') : 'unknown';
    throw new ModelLoadError(
      path,
      `unsupported architecture model_type=${JSON.stringify(type)} (${archs}); supported: llama, qwen2, qwen3`,
    );
  }
  return arch;
}

function num(json: Record<string, unknown>, key: string, path: string, fallback?: number): number {
  const v = json[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new ModelLoadError(path, `config.json has no ${key}`);
  }
  if (typeof v !== 'number' || !Number.isFinite(v))
    throw new ModelLoadError(path, `config.json ${key} is not a number`);
  return v;
}

function ropeFromHf(json: Record<string, unknown>, path: string): { theta: number; scaling: RopeScaling } {
  // transformers 5 writes `rope_parameters` (with rope_theta inside); 4.x writes rope_theta and rope_scaling.
  const params = (json.rope_parameters ?? json.rope_scaling ?? null) as Record<string, unknown> | null;
  const theta = num(json, 'rope_theta', path, typeof params?.rope_theta === 'number' ? params.rope_theta : 10000);
  const type = String(params?.rope_type ?? params?.type ?? 'default');
  if (!params || type === 'default') return { theta, scaling: NO_SCALING };
  const factor = Number(params.factor ?? 1);
  if (type === 'linear') return { theta, scaling: { ...NO_SCALING, type: 'linear', factor } };
  if (type === 'llama3') {
    return {
      theta,
      scaling: {
        type: 'llama3',
        factor,
        lowFreqFactor: Number(params.low_freq_factor ?? 1),
        highFreqFactor: Number(params.high_freq_factor ?? 4),
        originalMaxPosition: Number(params.original_max_position_embeddings ?? 8192),
      },
    };
  }
  throw new ModelLoadError(path, `unsupported rope scaling ${JSON.stringify(type)} (supported: linear, llama3)`);
}

export function configFromHf(json: Record<string, unknown>, path: string): ModelConfig {
  const arch = archFromHf(json, path);
  const act = String(json.hidden_act ?? 'silu');
  if (act !== 'silu') throw new ModelLoadError(path, `unsupported hidden_act ${act} (supported: silu)`);
  if (json.mlp_bias === true) throw new ModelLoadError(path, 'mlp_bias=true is not supported');
  if (arch === 'llama' && json.attention_bias === true) {
    throw new ModelLoadError(path, 'attention_bias=true (bias on the output projection) is not supported for llama');
  }
  const hidden = num(json, 'hidden_size', path);
  const heads = num(json, 'num_attention_heads', path);
  const { theta, scaling } = ropeFromHf(json, path);
  return {
    arch,
    vocabSize: num(json, 'vocab_size', path),
    hiddenSize: hidden,
    intermediateSize: num(json, 'intermediate_size', path),
    numLayers: num(json, 'num_hidden_layers', path),
    numHeads: heads,
    numKvHeads: num(json, 'num_key_value_heads', path, heads),
    headDim: num(json, 'head_dim', path, hidden / heads),
    rmsNormEps: num(json, 'rms_norm_eps', path, 1e-6),
    ropeTheta: theta,
    ropeScaling: scaling,
    tieWordEmbeddings: json.tie_word_embeddings === true,
    attentionBias: arch === 'qwen2',
    qkNorm: arch === 'qwen3',
    maxPositionEmbeddings: num(json, 'max_position_embeddings', path, 4096),
  };
}

export function configFromGguf(f: GgufFile): ModelConfig {
  const arch = metaString(f, 'general.architecture') ?? '';
  if (arch !== 'llama' && arch !== 'qwen2' && arch !== 'qwen3') {
    throw new ModelLoadError(
      f.path,
      `unsupported architecture ${JSON.stringify(arch)} (supported: llama, qwen2, qwen3)`,
    );
  }
  const k = (s: string) => `${arch}.${s}`;
  const hidden = metaNumber(f, k('embedding_length'));
  const heads = metaNumber(f, k('attention.head_count'));
  const tokens = f.metadata.get('tokenizer.ggml.tokens');
  const vocab = metaNumber(f, k('vocab_size'), Array.isArray(tokens) ? tokens.length : undefined);
  const scalingType = metaString(f, k('rope.scaling.type')) ?? 'none';
  let scaling = NO_SCALING;
  if (scalingType === 'linear')
    scaling = { ...NO_SCALING, type: 'linear', factor: metaNumber(f, k('rope.scaling.factor')) };
  else if (scalingType !== 'none') {
    throw new ModelLoadError(f.path, `unsupported rope scaling ${scalingType} (supported: linear)`);
  }
  if (f.tensors.some((t) => t.name === 'rope_freqs.weight')) {
    throw new ModelLoadError(f.path, 'rope frequency factors (rope_freqs.weight) are not supported yet');
  }
  return {
    arch,
    vocabSize: vocab,
    hiddenSize: hidden,
    intermediateSize: metaNumber(f, k('feed_forward_length')),
    numLayers: metaNumber(f, k('block_count')),
    numHeads: heads,
    numKvHeads: metaNumber(f, k('attention.head_count_kv'), heads),
    headDim: metaNumber(f, k('attention.key_length'), hidden / heads),
    rmsNormEps: metaNumber(f, k('attention.layer_norm_rms_epsilon'), 1e-6),
    ropeTheta: metaNumber(f, k('rope.freq_base'), 10000),
    ropeScaling: scaling,
    tieWordEmbeddings: !f.tensors.some((t) => t.name === 'output.weight'),
    attentionBias: arch === 'qwen2',
    qkNorm: arch === 'qwen3',
    maxPositionEmbeddings: metaNumber(f, k('context_length'), 4096),
  };
}

/** Checks the relations between fields that the rest of the engine relies on. */
export function validateConfig(c: ModelConfig, path: string): void {
  for (const key of [
    'vocabSize',
    'hiddenSize',
    'intermediateSize',
    'numLayers',
    'numHeads',
    'numKvHeads',
    'headDim',
  ] as const) {
    if (!Number.isInteger(c[key]) || c[key] <= 0)
      throw new ModelLoadError(path, `${key} must be a positive integer, got ${c[key]}`);
  }
  if (c.numHeads % c.numKvHeads !== 0) {
    throw new ModelLoadError(path, `attention heads (${c.numHeads}) must be a multiple of KV heads (${c.numKvHeads})`);
  }
  if (c.headDim % 2 !== 0) throw new ModelLoadError(path, `head_dim ${c.headDim} must be even`);
}
