/**
 * `npm ci` runs this (the package's install script): builds the native engine and fetches the default
 * model into the cache. Each step says what it needs when it cannot run.
 *   PAGODA_SKIP_NATIVE=1  skip the native build      PAGODA_SKIP_MODEL=1  skip the model download
 */

import { ensureDefaultModel } from '../runtime/src/model/default-model.ts';
import { buildNative } from './build-native.ts';

const [major] = process.versions.node.split('.').map(Number);
if ((major ?? 0) < 22) {
  console.error(
    `pagoda: Node ${process.versions.node} is too old; Pagoda needs Node >= 22 (npm scripts use the pinned node from devDependencies).`,
  );
  process.exit(1);
}

try {
  if (process.env.PAGODA_SKIP_NATIVE !== '1') buildNative();
  if (process.env.PAGODA_SKIP_MODEL !== '1') await ensureDefaultModel({ log: (m) => console.log(`pagoda: ${m}`) });
} catch (e) {
  console.error(`pagoda setup failed: ${(e as Error).message}`);
  process.exit(1);
}
