/** What every route handler needs: the engine, the served name, the config and the lifecycle state. */
import type { RuntimeConfig } from '../config.ts';
import type { Engine } from '../engine/engine.ts';
import type { Lifecycle } from './lifecycle.ts';
import type { RuntimeMetrics } from './metrics.ts';

export interface ServerContext {
  engine: Engine;
  modelName: string;
  config: RuntimeConfig;
  lifecycle: Lifecycle;
  metrics: RuntimeMetrics;
}
