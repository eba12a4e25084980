/**
 * The native engine missing or unloadable: one clear message saying how to build it, non-zero exit.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.ts';
import { tinyModelDir } from '../helpers/fixtures.ts';

const dir = mkdtempSync(join(tmpdir(), 'pagoda-addon-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('native engine not built', () => {
  it('a missing addon names the file and the build command', () => {
    const addon = join(dir, 'missing.node');
    const r = runCli(['generate', '--model', tinyModelDir('llama-tiny'), '--prompt', 'hi'], {
      PAGODA_NATIVE_ADDON: addon,
    });
    expect(r.status).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(addon);
    expect(lines[0]).toContain('npm run build:native');
  });

  it('a corrupt addon says it failed to load and how to rebuild', () => {
    const addon = join(dir, 'corrupt.node');
    writeFileSync(addon, 'not a shared object');
    const r = runCli(['generate', '--model', tinyModelDir('llama-tiny'), '--prompt', 'hi'], {
      PAGODA_NATIVE_ADDON: addon,
    });
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('failed to load');
    expect(r.stderr).toContain('npm run build:native');
  });
});
