/**
 * Built-in shapes of well-known models and memory of well-known GPUs, so a spec can name a model and a
 * GPU product without spelling out numbers. Shapes are from each model's config.json; parameter counts
 * are computed from those shapes (embeddings, attention, MLP, norms; tied embeddings counted once) and
 * match the published sizes.
 */
import type { Architecture } from '../api/types.ts';

export const MODEL_CATALOG: Readonly<Record<string, Readonly<Architecture>>> = {
  'Qwen/Qwen3-0.6B': {
    parameters: 596_049_920,
    layers: 28,
    hiddenSize: 1024,
    attentionHeads: 16,
    kvHeads: 8,
    headDim: 128,
    vocabSize: 151_936,
    maxPositionEmbeddings: 40_960,
  },
  'Qwen/Qwen3-1.7B': {
    parameters: 1_720_574_976,
    layers: 28,
    hiddenSize: 2048,
    attentionHeads: 16,
    kvHeads: 8,
    headDim: 128,
    vocabSize: 151_936,
    maxPositionEmbeddings: 40_960,
  },
  'Qwen/Qwen3-4B': {
    parameters: 4_022_468_096,
    layers: 36,
    hiddenSize: 2560,
    attentionHeads: 32,
    kvHeads: 8,
    headDim: 128,
    vocabSize: 151_936,
    maxPositionEmbeddings: 40_960,
  },
  'Qwen/Qwen3-8B': {
    parameters: 8_190_735_360,
    layers: 36,
    hiddenSize: 4096,
    attentionHeads: 32,
    kvHeads: 8,
    headDim: 128,
    vocabSize: 151_936,
    maxPositionEmbeddings: 40_960,
  },
  'Qwen/Qwen3-14B': {
    parameters: 14_768_307_200,
    layers: 40,
    hiddenSize: 5120,
    attentionHeads: 40,
    kvHeads: 8,
    headDim: 128,
    vocabSize: 151_936,
    maxPositionEmbeddings: 40_960,
  },
  'Qwen/Qwen3-32B': {
    parameters: 32_762_123_264,
    layers: 64,
    hiddenSize: 5120,
    attentionHeads: 64,
    kvHeads: 8,
    headDim: 128,
    vocabSize: 151_936,
    maxPositionEmbeddings: 40_960,
  },
  'Qwen/Qwen2.5-7B-Instruct': {
    parameters: 7_615_616_512,
    layers: 28,
    hiddenSize: 3584,
    attentionHeads: 28,
    kvHeads: 4,
    headDim: 128,
    vocabSize: 152_064,
    maxPositionEmbeddings: 32_768,
  },
  'meta-llama/Llama-3.1-8B-Instruct': {
    parameters: 8_030_261_248,
    layers: 32,
    hiddenSize: 4096,
    attentionHeads: 32,
    kvHeads: 8,
    headDim: 128,
    vocabSize: 128_256,
    maxPositionEmbeddings: 131_072,
  },
  'meta-llama/Llama-3.1-70B-Instruct': {
    parameters: 70_553_706_496,
    layers: 80,
    hiddenSize: 8192,
    attentionHeads: 64,
    kvHeads: 8,
    headDim: 128,
    vocabSize: 128_256,
    maxPositionEmbeddings: 131_072,
  },
  'HuggingFaceTB/SmolLM2-135M-Instruct': {
    parameters: 134_515_008,
    layers: 30,
    hiddenSize: 576,
    attentionHeads: 9,
    kvHeads: 3,
    headDim: 64,
    vocabSize: 49_152,
    maxPositionEmbeddings: 8192,
  },
};

// The base Llama 3.1 checkpoints share their instruct variants' shapes.
const ALIASES: Readonly<Record<string, string>> = {
  'meta-llama/Llama-3.1-8B': 'meta-llama/Llama-3.1-8B-Instruct',
  'meta-llama/Llama-3.1-70B': 'meta-llama/Llama-3.1-70B-Instruct',
};

const byLowerName = new Map(Object.entries(MODEL_CATALOG).map(([k, v]) => [k.toLowerCase(), v]));
for (const [alias, target] of Object.entries(ALIASES)) {
  const arch = MODEL_CATALOG[target];
  if (arch) byLowerName.set(alias.toLowerCase(), arch);
}

/** The catalog entry for a Hugging Face id, case-insensitively; undefined when unknown. */
export function lookupModel(id: string): Readonly<Architecture> | undefined {
  return byLowerName.get(id.toLowerCase());
}

export function catalogModelNames(): string[] {
  return Object.keys(MODEL_CATALOG);
}

/**
 * GPU memory in GiB by the product name NVIDIA GPU feature discovery puts in the nvidia.com/gpu.product
 * label, as nvidia-smi reports memory.total (slightly under the marketing figure).
 */
export const GPU_PRODUCTS: Readonly<Record<string, number>> = {
  'NVIDIA-B200': 179,
  'NVIDIA-H200': 140,
  'NVIDIA-H100-80GB-HBM3': 79.6,
  'NVIDIA-H100-NVL': 93.6,
  'NVIDIA-H100-PCIe': 79.6,
  'NVIDIA-A100-SXM4-80GB': 80,
  'NVIDIA-A100-80GB-PCIe': 80,
  'NVIDIA-A100-SXM4-40GB': 40,
  'NVIDIA-L40S': 45,
  'NVIDIA-L4': 22.5,
  'NVIDIA-A10G': 22.5,
  'Tesla-T4': 15,
};
