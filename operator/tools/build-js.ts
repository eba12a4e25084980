/**
 * Writes the operator as plain JavaScript: node operator/tools/build-js.ts <outDir>
 *
 * `npm run operator` runs the TypeScript directly (Node's type stripping). The operator image runs the
 * stripped JavaScript instead: type stripping loads a WebAssembly transformer whose memory stays
 * resident, about 30 MB of a ~150 MB budget. Types are erased with Node's own stripTypeScriptTypes
 * (same result as at run time) and relative `.ts` import specifiers become `.js`.
 */
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { stripTypeScriptTypes } from 'node:module';
import { dirname, join, relative } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..');

/** Relative specifiers ending in .ts, in static imports/exports and dynamic import(). */
const SPECIFIER = /((?:from|import)\s*\(?\s*')(\.{1,2}\/[^']+)\.ts(')/g;

export function toJavaScript(ts: string): string {
  return stripTypeScriptTypes(ts, { mode: 'strip' }).replace(SPECIFIER, '$1$2.js$3');
}

export function buildOperatorJs(outDir: string): string[] {
  const written: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir)) {
      const path = join(dir, entry);
      if (statSync(path).isDirectory()) walk(path);
      else if (path.endsWith('.ts')) {
        const target = join(outDir, relative(ROOT, path)).replace(/\.ts$/, '.js');
        mkdirSync(dirname(target), { recursive: true });
        writeFileSync(target, toJavaScript(readFileSync(path, 'utf8')));
        written.push(target);
      }
    }
  };
  walk(join(ROOT, 'operator', 'src'));
  // config.ts reads the version from ../../package.json.
  writeFileSync(join(outDir, 'package.json'), readFileSync(join(ROOT, 'package.json')));
  return written;
}

if (import.meta.main) {
  const out = process.argv[2];
  if (!out) {
    console.error('usage: node operator/tools/build-js.ts <outDir>');
    process.exit(2);
  }
  const files = buildOperatorJs(out);
  console.log(`wrote ${files.length} files under ${out}; run: node ${join(out, 'operator/src/main.js')}`);
}
