/** The JavaScript build the operator image runs: every module converts, and the result starts. */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { buildOperatorJs, toJavaScript } from '../../operator/tools/build-js.ts';
import { REPO_ROOT } from '../../scripts/cluster/cluster.ts';

const out = mkdtempSync(join(tmpdir(), 'pagoda-operator-js-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

it('rewrites relative .ts specifiers and erases types', () => {
  const js = toJavaScript(
    "import type { A } from './a.ts';\nimport { b } from '../b.ts';\nexport { c } from './c.ts';\nconst m = await import('./d.ts');\nconst x: number = 1;\nimport y from 'yaml';\n",
  );
  expect(js).toContain("from '../b.js'");
  expect(js).toContain("from './c.js'");
  expect(js).toContain("import('./d.js')");
  expect(js).toContain("from 'yaml'");
  expect(js).not.toContain(': number');
  expect(js).not.toContain('./a.ts');
});

it('builds a runnable operator', () => {
  const files = buildOperatorJs(out);
  expect(files.some((f) => f.endsWith(join('operator', 'src', 'main.js')))).toBe(true);
  for (const f of files) expect(readFileSync(f, 'utf8')).not.toMatch(/from '\.{1,2}\/[^']+\.ts'/);
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(out, 'node_modules'));
  const main = join(out, 'operator', 'src', 'main.js');
  expect(execFileSync(process.execPath, [main, '--help'], { encoding: 'utf8' })).toContain('pagoda operator 0.1.0');
  const bad = spawnSync(process.execPath, [main, '--concurrency=0'], { encoding: 'utf8' });
  expect(bad.status).toBe(2);
  expect(bad.stderr).toContain('--concurrency must be a number from 1 to 256, got "0"');
});
