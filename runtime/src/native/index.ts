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

interface NativeModule {
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

export function createNativeEngine(): NativeEngine {
  return new (loadNative().Engine)();
}
