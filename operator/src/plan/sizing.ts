/**
 * GPU memory budget of one replica, and the choice of tensor-parallel (TP) size. Pure arithmetic.
 *
 * Per GPU, a replica at TP = t needs
 *   weights / t                         parameters × 2 bytes (bf16), sharded evenly
 * + overhead                            OVERHEAD_FIXED_GIB + OVERHEAD_WEIGHTS_FRACTION × weights / t
 * + KV cache of one maxModelLen sequence
 * and may use gpuMemoryGiB × gpuMemoryUtilization. KV bytes per token = 2 (K and V) × layers × kvHeads ×
 * headDim × 2 bytes; the KV heads are sharded over the TP ranks when t ≤ kvHeads and replicated beyond
 * (each rank then holds one head). Whatever memory is left after weights and overhead is KV cache.
 */
import type { Architecture } from '../api/types.ts';

export const GIB = 2 ** 30;
export const BYTES_PER_PARAMETER = 2;
export const KV_BYTES_PER_ELEMENT = 2;
/** CUDA context, cuBLAS workspaces, NCCL buffers and CUDA graph pools: roughly fixed per process. */
export const OVERHEAD_FIXED_GIB = 2;
/** Activation peaks grow with the model's width, which the weights shard tracks. */
export const OVERHEAD_WEIGHTS_FRACTION = 0.1;
export const TENSOR_PARALLEL_SIZES: readonly number[] = [1, 2, 4, 8];

export interface SizingInput {
  modelName: string;
  arch: Architecture;
  maxModelLen: number;
  gpuMemoryGiB: number;
  gpuMemoryUtilization: number;
  gpusPerNode: number;
  /** From spec.parallelism.tensor; undefined → computed. */
  tensorParallel?: number | undefined;
}

export interface Budget {
  tensorParallelSize: number;
  usableGiBPerGpu: number;
  weightsGiB: number;
  weightsGiBPerGpu: number;
  overheadGiBPerGpu: number;
  /** KV cache bytes of one token on one GPU. */
  kvBytesPerToken: number;
  kvGiBForMaxModelLen: number;
  /** Weights + overhead + the KV of one maxModelLen sequence. */
  requiredGiBPerGpu: number;
  kvCacheGiBPerGpu: number;
  maxKvTokens: number;
  fits: boolean;
}

export type Sizing =
  | { ok: true; budget: Budget; source: 'Spec' | 'Computed'; explanation: string }
  | { ok: false; reason: 'DoesNotFit' | 'InvalidTensorParallel'; message: string };

export function budgetFor(input: SizingInput, tp: number): Budget {
  const { arch } = input;
  const usable = input.gpuMemoryGiB * input.gpuMemoryUtilization;
  const weightsGiB = (arch.parameters * BYTES_PER_PARAMETER) / GIB;
  const weightsGiBPerGpu = weightsGiB / tp;
  const overheadGiBPerGpu = OVERHEAD_FIXED_GIB + OVERHEAD_WEIGHTS_FRACTION * weightsGiBPerGpu;
  const kvHeadsPerGpu = Math.max(1, arch.kvHeads / tp);
  const kvBytesPerToken = 2 * arch.layers * kvHeadsPerGpu * arch.headDim * KV_BYTES_PER_ELEMENT;
  const kvGiBForMaxModelLen = (kvBytesPerToken * input.maxModelLen) / GIB;
  const kvCacheGiBPerGpu = Math.max(0, usable - weightsGiBPerGpu - overheadGiBPerGpu);
  return {
    tensorParallelSize: tp,
    usableGiBPerGpu: usable,
    weightsGiB,
    weightsGiBPerGpu,
    overheadGiBPerGpu,
    kvBytesPerToken,
    kvGiBForMaxModelLen,
    requiredGiBPerGpu: weightsGiBPerGpu + overheadGiBPerGpu + kvGiBForMaxModelLen,
    kvCacheGiBPerGpu,
    maxKvTokens: Math.floor((kvCacheGiBPerGpu * GIB) / kvBytesPerToken),
    fits: weightsGiBPerGpu + overheadGiBPerGpu + kvGiBForMaxModelLen <= usable,
  };
}

/** Why a TP size cannot split this model on these nodes, or undefined when it can. */
export function tensorParallelProblem(arch: Architecture, tp: number, gpusPerNode: number): string | undefined {
  if (!TENSOR_PARALLEL_SIZES.includes(tp)) return `tensor-parallel size ${tp} is not one of 1, 2, 4, 8`;
  if (tp > gpusPerNode) return `tensor-parallel size ${tp} exceeds gpu.perNode (${gpusPerNode})`;
  if (arch.attentionHeads % tp !== 0) return `${tp} does not divide the model's ${arch.attentionHeads} attention heads`;
  if (arch.kvHeads % tp !== 0 && tp % arch.kvHeads !== 0) {
    return `${tp} neither divides nor is a multiple of the model's ${arch.kvHeads} KV heads`;
  }
  return undefined;
}

export function compatibleSizes(arch: Architecture, gpusPerNode: number): number[] {
  return TENSOR_PARALLEL_SIZES.filter((tp) => tensorParallelProblem(arch, tp, gpusPerNode) === undefined);
}

const gib = (x: number): string => `${x.toFixed(1)} GiB`;

function breakdown(input: SizingInput, b: Budget): string {
  return (
    `${gib(b.weightsGiBPerGpu)} weights + ${gib(b.overheadGiBPerGpu)} overhead + ${gib(b.kvGiBForMaxModelLen)} KV for ` +
    `one ${input.maxModelLen}-token sequence = ${gib(b.requiredGiBPerGpu)} per GPU`
  );
}

function usableText(input: SizingInput, b: Budget): string {
  return `${gib(b.usableGiBPerGpu)} usable (${input.gpuMemoryGiB} GiB × ${input.gpuMemoryUtilization})`;
}

/** Longest maxModelLen that fits at this TP (0 when even the weights do not fit). */
export function maxFittingModelLen(b: Budget): number {
  const room = b.usableGiBPerGpu - b.weightsGiBPerGpu - b.overheadGiBPerGpu;
  return room <= 0 ? 0 : Math.floor((room * GIB) / b.kvBytesPerToken);
}

/** Smallest GPU memory (GiB, rounded up to a tenth) at which this budget fits. */
export function minGpuMemoryGiB(input: SizingInput, b: Budget): number {
  return Math.ceil((b.requiredGiBPerGpu / input.gpuMemoryUtilization) * 10) / 10;
}

function whatWouldFit(input: SizingInput, at: Budget, larger: Budget | undefined): string {
  const options: string[] = [];
  if (larger) options.push(`TP=${larger.tensorParallelSize} (omit parallelism.tensor to let the operator choose)`);
  const len = maxFittingModelLen(at);
  if (len >= 16) options.push(`maxModelLen ≤ ${len} at TP=${at.tensorParallelSize}`);
  options.push(`GPUs with ≥ ${minGpuMemoryGiB(input, at)} GiB at TP=${at.tensorParallelSize}`);
  return `Would fit: ${options.join('; or ')}.`;
}

function kvText(b: Budget): string {
  return `KV cache ${gib(b.kvCacheGiBPerGpu)} per GPU holds ${b.maxKvTokens} tokens`;
}

/** Picks (or checks) the TP size for the spec and explains the choice or the refusal. */
export function size(input: SizingInput): Sizing {
  const candidates = compatibleSizes(input.arch, input.gpusPerNode);
  if (input.tensorParallel !== undefined) {
    const tp = input.tensorParallel;
    const problem = tensorParallelProblem(input.arch, tp, input.gpusPerNode);
    if (problem) {
      return {
        ok: false,
        reason: 'InvalidTensorParallel',
        message: `parallelism.tensor=${tp} cannot split ${input.modelName}: ${problem}. Sizes that can: ${candidates.join(', ') || 'none'}.`,
      };
    }
    const b = budgetFor(input, tp);
    if (!b.fits) {
      const larger = candidates.map((t) => budgetFor(input, t)).find((c) => c.tensorParallelSize > tp && c.fits);
      return {
        ok: false,
        reason: 'DoesNotFit',
        message:
          `parallelism.tensor=${tp} does not fit ${input.modelName}: ${breakdown(input, b)} > ${usableText(input, b)}. ` +
          whatWouldFit(input, b, larger),
      };
    }
    return {
      ok: true,
      budget: b,
      source: 'Spec',
      explanation: `TP=${tp} from spec.parallelism.tensor: ${breakdown(input, b)} ≤ ${usableText(input, b)}; ${kvText(b)}.`,
    };
  }

  const budgets = candidates.map((t) => budgetFor(input, t));
  const chosen = budgets.find((b) => b.fits);
  const largest = budgets.at(-1);
  if (!chosen || !largest) {
    const at = largest ?? budgetFor(input, 1);
    return {
      ok: false,
      reason: 'DoesNotFit',
      message:
        `No tensor-parallel size fits ${input.modelName} (tried ${candidates.join(', ')}; gpu.perNode=${input.gpusPerNode}): ` +
        `at TP=${at.tensorParallelSize}, ${breakdown(input, at)} > ${usableText(input, at)}. ${whatWouldFit(input, at, undefined)}`,
    };
  }
  const smaller = budgets.filter((b) => b.tensorParallelSize < chosen.tensorParallelSize).at(-1);
  const why = smaller ? ` (TP=${smaller.tensorParallelSize} would need ${gib(smaller.requiredGiBPerGpu)})` : '';
  return {
    ok: true,
    budget: chosen,
    source: 'Computed',
    explanation:
      `TP=${chosen.tensorParallelSize}, the smallest that fits${why}: ${breakdown(input, chosen)} ≤ ` +
      `${usableText(input, chosen)}; ${kvText(chosen)}.`,
  };
}
