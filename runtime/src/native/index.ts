/**
 * The native engine, typed. Loads native/build/Release/pagoda_native.node once; if it is missing or
 * cannot load, throws one error that says how to build it.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ModelConfig } from '../model/config.ts';
import type { TensorEntry } from '../model/weights.ts';

export interface EngineOptions {
  device?: 'cpu' | 'cuda';
  threads?: number;
  blockSize?: number;
  numBlocks?: number;
  kvCacheBytes?: number;
  gpuMemoryUtilization?: number;
  weightDtype?: 'auto' | 'f32' | 'f16' | 'bf16';
  maxNumBatchedTokens?: number;
  maxNumSeqs?: number;
  tensorParallelSize?: number;
  /** longest sequence (prompt + output) a step may hold; sizes the CUDA backend's block tables */
  maxModelLen?: number;
  enableCudaGraphs?: boolean;
}

export interface BackendInfo {
  device: string;
  numBlocks: number;
  blockSize: number;
  kvCacheBytes: number;
  weightBytes: number;
  weightDtype: string;
}

/** One step's flat inputs; see native/src/engine/step.h for the layout of each array. */
export interface StepBatch {
  tokenIds: Int32Array;
  positions: Int32Array;
  queryStart: Int32Array;
  contextLens: Int32Array;
  blockTables: Int32Array;
  maxBlocksPerSeq: number;
  slotMapping: Int32Array;
  logitRows: Int32Array;
  sample?: boolean;
  returnLogits?: boolean;
  numTopLogprobs?: number;
  temperature?: Float32Array;
  topP?: Float32Array;
  topK?: Int32Array;
  minP?: Float32Array;
  presencePenalty?: Float32Array;
  frequencyPenalty?: Float32Array;
  repetitionPenalty?: Float32Array;
  seed?: Uint32Array;
  sampleStep?: Int32Array;
  outputOffsets?: Int32Array;
  outputTokens?: Int32Array;
  contextOffsets?: Int32Array;
  contextTokens?: Int32Array;
  /** [R + 1] offsets into biasTokens/biasValues: additive logit biases per row (-Infinity bans) */
  biasOffsets?: Int32Array;
  biasTokens?: Int32Array;
  biasValues?: Float32Array;
}

export interface StepResult {
  tokens: Int32Array;
  logprobs: Float32Array;
  topIds: Int32Array;
  topLogprobs: Float32Array;
  logits?: Float32Array;
}

export interface NativeEngine {
  load(spec: { config: ModelConfig; tensors: TensorEntry[]; options: EngineOptions }): Promise<BackendInfo>;
  step(batch: StepBatch): Promise<StepResult>;
  close(): void;
}

export interface DeviceMemory {
  free: number;
  total: number;
}

interface NativeModule {
  /** CUDA devices visible (CUDA builds only; 0 without a GPU or driver). */
  gpuCount?: () => number;
  /** GPU memory of device 0 (CUDA builds only). */
  deviceMemory?: () => DeviceMemory;
  Engine: new () => NativeEngine;
  /** Decodes one tensor as the loader would (dequantized, rope permutation undone). */
  decodeTensor(entry: TensorEntry): Float32Array;
  version: string;
  cuda: boolean;
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const ADDON_PATH =
  process.env.PAGODA_NATIVE_ADDON ?? join(root, 'native', 'build', 'Release', 'pagoda_native.node');

let cached: NativeModule | undefined;

export function loadNative(): NativeModule {
  if (cached) return cached;
  if (!existsSync(ADDON_PATH)) {
    throw new Error(
      `Pagoda's native engine is not built (${ADDON_PATH} is missing). Run \`npm run build:native\` (needs cmake >= 3.22 and a C++20 compiler).`,
    );
  }
  try {
    cached = createRequire(import.meta.url)(ADDON_PATH) as NativeModule;
  } catch (e) {
    throw new Error(
      `Pagoda's native engine at ${ADDON_PATH} failed to load: ${(e as Error).message}. Rebuild it with \`npm run build:native\`.`,
    );
  }
  return cached;
}

/** Whether `--device auto` should pick CUDA: a CUDA build and at least one visible GPU. */
export function cudaUsable(): boolean {
  try {
    const m = loadNative();
    return m.cuda && (m.gpuCount?.() ?? 0) > 0;
  } catch {
    return false;
  }
}

export function createNativeEngine(): NativeEngine {
  const engine = new (loadNative().Engine)();
  const fault = parseFaultInjection(process.env.PAGODA_FAULT_INJECT);
  return fault ? withFault(engine, fault) : engine;
}

/**
 * Fault injection for tests of the failure path (a fatal engine error must give callers a 500 and
 * make the process exit non-zero). PAGODA_FAULT_INJECT=step-error-after:N lets N native steps
 * succeed (warm-up included) and fails every later one as a backend error would.
 */
export interface FaultInjection {
  stepErrorAfter: number;
}

export function parseFaultInjection(value: string | undefined): FaultInjection | undefined {
  if (value === undefined || value === '') return undefined;
  const m = /^step-error-after:(\d+)$/.exec(value.trim());
  if (!m) throw new Error(`PAGODA_FAULT_INJECT must be step-error-after:N, got ${JSON.stringify(value)}`);
  return { stepErrorAfter: Number(m[1]) };
}

function withFault(engine: NativeEngine, fault: FaultInjection): NativeEngine {
  let steps = 0;
  return {
    load: (spec) => engine.load(spec),
    step: (batch) =>
      ++steps > fault.stepErrorAfter
        ? Promise.reject(new Error(`injected fault: native step ${steps} failed (PAGODA_FAULT_INJECT)`))
        : engine.step(batch),
    close: () => engine.close(),
  };
}
