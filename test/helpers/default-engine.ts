/** The default model (SmolLM2-135M-Instruct Q4_1) on the CPU engine, for integration tests. */
import { parseServeArgs } from '../../runtime/src/config.ts';
import type { Engine } from '../../runtime/src/engine/engine.ts';
import { ensureDefaultModel } from '../../runtime/src/model/default-model.ts';
import { startEngine } from '../../runtime/src/runtime.ts';

export async function defaultModelPath(): Promise<string> {
  return ensureDefaultModel();
}

export async function startDefaultEngine(extraArgs: string[] = []): Promise<Engine> {
  const cfg = parseServeArgs(['--model', await defaultModelPath(), '--device', 'cpu', ...extraArgs], {});
  return (await startEngine(cfg)).engine;
}

export async function drain<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}
