/** The default model (SmolLM2-135M-Instruct Q4_1) on the CPU engine, for integration tests. */
import { parseServeArgs } from '../../runtime/src/config.ts';
import type { Engine } from '../../runtime/src/engine/engine.ts';
import { ensureDefaultModel } from '../../runtime/src/model/default-model.ts';
import { startEngine } from '../../runtime/src/runtime.ts';

export async function defaultModelPath(): Promise<string> {
  return ensureDefaultModel();
}

/**
 * Engine flags every test starts from (a test's own flags come later and win). One CPU worker thread:
 * the CPU backend splits each parallel loop evenly across its threads, so with one thread per core a
 * step stalls whenever anything else runs on the machine — a test's own client, a CI neighbour — and
 * throughput can drop twentyfold; one thread keeps test times steady.
 */
export const TEST_ENGINE_ARGS = ['--device', 'cpu', '--threads', '1'];

export async function startDefaultEngine(extraArgs: string[] = []): Promise<Engine> {
  const cfg = parseServeArgs(['--model', await defaultModelPath(), ...TEST_ENGINE_ARGS, ...extraArgs], {});
  return (await startEngine(cfg)).engine;
}

export async function drain<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}
