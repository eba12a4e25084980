/**
 * Assembles a runtime from its config: resolve the model (the default one is fetched on first use),
 * load it into the native engine, size the KV cache, warm up. Used by `pagoda serve` and `generate`.
 */
import type { RuntimeConfig } from './config.ts';
import { Engine } from './engine/engine.ts';
import { defaultSamplingParams } from './engine/sampling-params.ts';
import { DEFAULT_MODEL, ensureDefaultModel } from './model/default-model.ts';
import { type LoadedModel, loadModel } from './model/load.ts';
import { createNativeEngine, type EngineOptions } from './native/index.ts';

export interface StartedEngine {
  engine: Engine;
  model: LoadedModel;
  servedModelName: string;
  loadSeconds: number;
}

export async function startEngine(cfg: RuntimeConfig, log: (msg: string) => void = () => {}): Promise<StartedEngine> {
  const t0 = performance.now();
  const path = cfg.model ?? (await ensureDefaultModel({ log }));
  const model = loadModel(path);
  const options: EngineOptions = {
    device: cfg.device,
    threads: cfg.threads,
    blockSize: cfg.blockSize,
    gpuMemoryUtilization: cfg.gpuMemoryUtilization,
    weightDtype: cfg.weightDtype,
    maxNumBatchedTokens: cfg.maxNumBatchedTokens,
    maxNumSeqs: cfg.maxNumSeqs,
    tensorParallelSize: cfg.tensorParallelSize,
    maxModelLen: Math.min(cfg.maxModelLen ?? model.config.maxPositionEmbeddings, model.config.maxPositionEmbeddings),
  };
  if (cfg.numKvBlocks !== undefined) options.numBlocks = cfg.numKvBlocks;
  if (cfg.kvCacheMemory !== undefined) options.kvCacheBytes = cfg.kvCacheMemory;
  const native = createNativeEngine();
  const engineConfig = {
    maxNumSeqs: cfg.maxNumSeqs,
    maxNumBatchedTokens: cfg.maxNumBatchedTokens,
    enablePrefixCaching: cfg.enablePrefixCaching,
    asyncScheduling: cfg.asyncScheduling,
    ...(cfg.maxModelLen !== undefined ? { maxModelLen: cfg.maxModelLen } : {}),
  };
  const engine = await Engine.create(native, model, options, engineConfig);
  await warmUp(engine);
  return {
    engine,
    model,
    servedModelName: cfg.servedModelName ?? (cfg.model === undefined ? DEFAULT_MODEL.id : model.name),
    loadSeconds: (performance.now() - t0) / 1000,
  };
}

/** One short generation, so the first real request does not pay for first-touch costs. */
async function warmUp(engine: Engine): Promise<void> {
  const prompt = engine.model.tokenizer.encode('Hello');
  const events = engine.generate({
    prompt: prompt.length > 0 ? prompt : [0],
    params: defaultSamplingParams({ temperature: 0, maxTokens: 2, ignoreEos: true }),
  });
  for await (const _ of events) {
    // drain
  }
}
