/**
 * `pagoda download`: fetches what the runtime loads from a Hugging Face repository (config, tokenizer,
 * safetensors weights and their index) into a folder. Used by the operator's init container.
 *
 * - The revision is resolved to a commit first and every file is fetched at that commit, so a branch
 *   moving during the download cannot mix two versions.
 * - HF_TOKEN is sent as a bearer token to the hub; fetch drops it on the redirect to the CDN (another
 *   origin), which is what the hub expects.
 * - Each file is written to `<name>.part` beside its target and renamed into place once complete and
 *   verified (size, and sha256 when the hub publishes it): a reader never sees a partial file. An
 *   interrupted download resumes from its `.part` with an HTTP Range request, on retry or on the next run.
 * - Files already present are kept, so a restarted init container is quick — but only the very file the
 *   hub lists now: `.pagoda-download.json` in the folder records each file's commit, size and sha256 as
 *   fetched, and a file is kept when its size matches and its sha256 (weights) or, without one, its
 *   commit (small files) is the hub's. A file changed at a newer commit is fetched again even if its
 *   size did not change.
 */
import { createHash } from 'node:crypto';
import {
  createReadStream,
  createWriteStream,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';

export class DownloadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DownloadError';
  }
}

export interface DownloadOptions {
  repo: string;
  revision: string;
  dir: string;
  /** default: $HF_ENDPOINT, else https://huggingface.co */
  endpoint?: string;
  /** default: $HF_TOKEN */
  token?: string;
  /** attempts per file (network errors, 5xx, cut connections) */
  attempts?: number;
  /** files fetched at once */
  concurrency?: number;
  log?: (msg: string) => void;
}

export interface RemoteFile {
  name: string;
  size: number | undefined;
  sha256: string | undefined;
}

export interface DownloadResult {
  commit: string;
  files: string[];
  /** files actually transferred (the others were already complete) */
  fetched: string[];
}

/** Files the runtime reads from a model folder; weights only as safetensors. */
const WANTED = [
  /^config\.json$/,
  /^generation_config\.json$/,
  /^tokenizer\.json$/,
  /^tokenizer_config\.json$/,
  /^special_tokens_map\.json$/,
  /^chat_template\.(jinja|json)$/,
  /^[^/]+\.safetensors$/,
  /^[^/]+\.safetensors\.index\.json$/,
];

export function wantedFile(name: string): boolean {
  return !name.includes('/') && WANTED.some((re) => re.test(name));
}

/** Beside the model files: what each was fetched as (see Manifest). */
export const MANIFEST = '.pagoda-download.json';

const REPO = /^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/;

export async function downloadModel(opts: DownloadOptions): Promise<DownloadResult> {
  if (!REPO.test(opts.repo) || opts.repo.includes('..'))
    throw new DownloadError(`--repo must look like org/name, got ${JSON.stringify(opts.repo)}`);
  if (opts.revision === '' || opts.revision.includes('..'))
    throw new DownloadError(`--revision is not valid: ${JSON.stringify(opts.revision)}`);
  const endpoint = (opts.endpoint ?? process.env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, '');
  const token = opts.token ?? process.env.HF_TOKEN;
  const log = opts.log ?? (() => {});
  const hub = new Hub(endpoint, opts.repo, token, opts.attempts ?? 5);

  const { commit, files: listed } = await hub.listFiles(opts.revision);
  let files = listed.filter((f) => wantedFile(f.name));
  if (!files.some((f) => f.name === 'config.json'))
    throw new DownloadError(`${opts.repo}@${opts.revision} has no config.json`);
  mkdirSync(opts.dir, { recursive: true });
  const manifest = new Manifest(opts.dir);
  const fetched: string[] = [];
  // With an index, only the shards it names are weights (a repo may also carry other formats).
  const index = files.find((f) => f.name === 'model.safetensors.index.json');
  if (index) {
    if (await fetchFile(hub, commit, index, opts.dir, manifest, log)) fetched.push(index.name);
    const shards = shardsOf(join(opts.dir, index.name));
    files = files.filter((f) => !f.name.endsWith('.safetensors') || shards.has(f.name));
    const missing = [...shards].filter((s) => !files.some((f) => f.name === s));
    if (missing.length > 0) throw new DownloadError(`the index names shards the repo lacks: ${missing.join(', ')}`);
  }
  if (!files.some((f) => f.name.endsWith('.safetensors')))
    throw new DownloadError(
      `${opts.repo}@${opts.revision} has no .safetensors weights (only those are supported; convert .bin checkpoints first)`,
    );
  log(`${opts.repo}@${opts.revision} (commit ${commit}): ${files.length} files`);

  const queue = files.filter((f) => f !== index);
  const worker = async () => {
    for (let f = queue.shift(); f; f = queue.shift()) {
      if (await fetchFile(hub, commit, f, opts.dir, manifest, log)) fetched.push(f.name);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 4) }, worker));
  const names = files.map((f) => f.name);
  log(`done: ${fetched.length} fetched, ${files.length - fetched.length} already present`);
  return { commit, files: names, fetched };
}

/** Downloads one file unless already complete; returns whether anything was transferred. */
async function fetchFile(
  hub: Hub,
  commit: string,
  file: RemoteFile,
  dir: string,
  manifest: Manifest,
  log: (msg: string) => void,
): Promise<boolean> {
  const target = join(dir, file.name);
  if (manifest.isCurrent(file, commit, target)) return false;
  const part = `${target}.part`;
  const t0 = performance.now();
  let lastError: Error | undefined;
  for (let attempt = 1; attempt <= hub.attempts; attempt++) {
    try {
      const size = await hub.fetchTo(commit, file, part);
      await verify(file, part, size);
      renameSync(part, target);
      manifest.record(file, commit, size);
      const s = (performance.now() - t0) / 1000;
      log(`${file.name}: ${(size / 2 ** 20).toFixed(1)} MiB in ${s.toFixed(1)} s`);
      return true;
    } catch (e) {
      lastError = e as Error;
      if (e instanceof DownloadError) throw e;
      log(`${file.name}: attempt ${attempt} failed (${lastError.message}); resuming`);
      await new Promise((r) => setTimeout(r, Math.min(250 * 2 ** (attempt - 1), 5000)));
    }
  }
  throw new DownloadError(`${file.name}: giving up after ${hub.attempts} attempts: ${lastError?.message}`);
}

interface ManifestEntry {
  commit: string;
  size: number;
  sha256?: string;
}

/** What earlier runs fetched into the folder (`.pagoda-download.json`), written after every file. */
class Manifest {
  private readonly path: string;
  private readonly files: Record<string, ManifestEntry>;

  constructor(dir: string) {
    this.path = join(dir, MANIFEST);
    let files: Record<string, ManifestEntry> = {};
    try {
      const parsed = JSON.parse(readFileSync(this.path, 'utf8')) as { files?: unknown };
      if (typeof parsed.files === 'object' && parsed.files !== null)
        files = parsed.files as Record<string, ManifestEntry>;
    } catch {
      // none yet, or unreadable: every file is fetched again
    }
    this.files = files;
  }

  /** Whether `target` is the file the hub lists at `commit`. */
  isCurrent(file: RemoteFile, commit: string, target: string): boolean {
    const had = this.files[file.name];
    if (!had || !existsSync(target) || statSync(target).size !== had.size) return false;
    if (file.size !== undefined && file.size !== had.size) return false;
    return file.sha256 !== undefined ? had.sha256 === file.sha256 : had.commit === commit;
  }

  record(file: RemoteFile, commit: string, size: number): void {
    this.files[file.name] = { commit, size, ...(file.sha256 !== undefined ? { sha256: file.sha256 } : {}) };
    const tmp = `${this.path}.tmp`;
    writeFileSync(tmp, `${JSON.stringify({ files: this.files }, null, 1)}\n`);
    renameSync(tmp, this.path);
  }
}

function shardsOf(indexPath: string): Set<string> {
  let map: unknown;
  try {
    map = (JSON.parse(readFileSync(indexPath, 'utf8')) as { weight_map?: unknown }).weight_map;
  } catch (e) {
    throw new DownloadError(`model.safetensors.index.json is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof map !== 'object' || map === null)
    throw new DownloadError('model.safetensors.index.json has no weight_map');
  return new Set(Object.values(map as Record<string, string>).filter((v) => typeof v === 'string' && wantedFile(v)));
}

async function verify(file: RemoteFile, path: string, size: number): Promise<void> {
  if (file.size !== undefined && size < file.size) {
    // cut short without an error (no Content-Length): keep the part and resume
    throw new Error(`got ${size} of ${file.size} bytes`);
  }
  if (file.size !== undefined && size > file.size) {
    rmSync(path, { force: true });
    throw new DownloadError(`${file.name}: got ${size} bytes, the hub lists ${file.size}`);
  }
  if (file.sha256 === undefined) return;
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  const got = h.digest('hex');
  if (got !== file.sha256) {
    rmSync(path, { force: true });
    throw new DownloadError(`${file.name}: sha256 ${got} does not match the hub's ${file.sha256}`);
  }
}

class Hub {
  readonly attempts: number;
  private readonly endpoint: string;
  private readonly repo: string;
  private readonly token: string | undefined;

  constructor(endpoint: string, repo: string, token: string | undefined, attempts: number) {
    this.endpoint = endpoint;
    this.repo = repo;
    this.token = token;
    this.attempts = attempts;
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return { ...(this.token ? { authorization: `Bearer ${this.token}` } : {}), ...extra };
  }

  /** Answers with a clear error for statuses that retrying cannot fix. */
  private refuse(status: number, what: string): never {
    if (status === 401 || status === 403)
      throw new DownloadError(
        `${what}: access denied (HTTP ${status}); set HF_TOKEN to a token that may read ${this.repo}`,
      );
    if (status === 404) throw new DownloadError(`${what}: not found (HTTP 404); check --repo and --revision`);
    throw new DownloadError(`${what}: HTTP ${status}`);
  }

  private async request(url: string, what: string, headers: Record<string, string> = {}): Promise<Response> {
    let lastError: Error | undefined;
    for (let attempt = 1; attempt <= this.attempts; attempt++) {
      try {
        const r = await fetch(url, { headers: this.headers(headers), redirect: 'follow' });
        if (r.status < 500) return r;
        lastError = new Error(`HTTP ${r.status}`);
        await r.body?.cancel();
      } catch (e) {
        lastError = e as Error;
      }
      await new Promise((r) => setTimeout(r, Math.min(250 * 2 ** (attempt - 1), 5000)));
    }
    throw new DownloadError(`${what}: ${lastError?.message ?? 'failed'} after ${this.attempts} attempts`);
  }

  async listFiles(revision: string): Promise<{ commit: string; files: RemoteFile[] }> {
    const what = `${this.repo}@${revision}`;
    const url = `${this.endpoint}/api/models/${this.repo}/revision/${encodeURIComponent(revision)}?blobs=true`;
    const r = await this.request(url, what);
    if (r.status !== 200) this.refuse(r.status, what);
    const info = (await r.json()) as {
      sha?: string;
      siblings?: { rfilename: string; size?: number; lfs?: { sha256?: string; size?: number } }[];
    };
    if (typeof info.sha !== 'string' || !Array.isArray(info.siblings))
      throw new DownloadError(`${what}: the hub's answer has no commit or file list`);
    return {
      commit: info.sha,
      files: info.siblings.map((s) => ({
        name: s.rfilename,
        size: s.lfs?.size ?? s.size,
        sha256: s.lfs?.sha256,
      })),
    };
  }

  /** Fetches a file into `part`, resuming from what `part` already holds; returns its final size. */
  async fetchTo(commit: string, file: RemoteFile, part: string): Promise<number> {
    const have = existsSync(part) ? statSync(part).size : 0;
    const url = `${this.endpoint}/${this.repo}/resolve/${commit}/${file.name.split('/').map(encodeURIComponent).join('/')}`;
    const complete = file.size !== undefined && have === file.size;
    if (complete) return have;
    const r = await this.request(url, file.name, have > 0 ? { range: `bytes=${have}-` } : {});
    if (r.status === 416 && have > 0) {
      await r.body?.cancel();
      return have; // the part already holds everything
    }
    if (r.status !== 200 && r.status !== 206) this.refuse(r.status, file.name);
    let offset = 0;
    if (r.status === 206) {
      const m = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(r.headers.get('content-range') ?? '');
      if (!m || Number(m[1]) !== have) {
        await r.body?.cancel();
        rmSync(part, { force: true });
        throw new Error(`unexpected Content-Range ${r.headers.get('content-range')}; starting over`);
      }
      offset = have;
    }
    // A write error (disk full, permissions) rejects here and reaches the caller's retry loop.
    const out = createWriteStream(part, { flags: offset > 0 ? 'a' : 'w' });
    if (r.body) await pipeline(Readable.fromWeb(r.body as WebReadableStream<Uint8Array>), out);
    else await pipeline(Readable.from([]), out);
    // Durable before the rename makes it visible under its real name.
    const fh = await open(part, 'r+');
    await fh.sync();
    await fh.close();
    return statSync(part).size;
  }
}
