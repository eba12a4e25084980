/**
 * `pagoda download` against a fake Hugging Face hub started here (no internet in tests): a hub that
 * lists files and redirects weights to a "CDN" on another origin, with Range support. Checks: the
 * right files land byte-identical and load as a model; HF_TOKEN goes to the hub and not to the CDN;
 * a connection cut mid-file is resumed with a Range request; a second run transfers nothing; no
 * partial file is ever visible; a file changed at a newer commit (same size) is fetched again while
 * unchanged weights are kept; bad tokens, unknown revisions and corrupt files fail clearly.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MANIFEST } from '../../runtime/src/model/hf-download.ts';
import { loadModel } from '../../runtime/src/model/load.ts';
import { runCliAsync } from '../helpers/cli.ts';
import { tinyModelDir } from '../helpers/fixtures.ts';

const SOURCE = tinyModelDir('qwen2-tiny-sharded');
const FIRST_COMMIT = 'a1b2c3d4e5f60718293a4b5c6d7e8f9012345678';
const NEXT_COMMIT = 'f0e1d2c3b4a5968778695a4b3c2d1e0f98765432';
/** The commit `main` points at; at NEXT_COMMIT config.json has changed but kept its size. */
let COMMIT = FIRST_COMMIT;
const TOKEN = 'hf_test_token';
const REPO = 'pagoda-test/qwen2-tiny';

interface Log {
  path: string;
  auth: string | undefined;
  range: string | undefined;
  host: 'hub' | 'cdn';
}

/** Files the hub lists: the fixture's, plus some the downloader must skip. */
const hubFiles = [
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'model.safetensors.index.json',
  'model-00001-of-00004.safetensors',
  'model-00002-of-00004.safetensors',
  'model-00003-of-00004.safetensors',
  'model-00004-of-00004.safetensors',
];
const extra = ['README.md', 'pytorch_model.bin', 'onnx/model.safetensors', 'consolidated.safetensors'];
/** config.json at NEXT_COMMIT: one value changed, same number of bytes. */
const nextConfig = () => {
  const text = readFileSync(join(SOURCE, 'config.json'), 'utf8');
  const changed = text.replace(/"rms_norm_eps": ([0-9.e-]+)/, (m, v: string) =>
    m.replace(v, v.endsWith('5') ? `${v.slice(0, -1)}6` : `${v.slice(0, -1)}5`),
  );
  if (changed === text) throw new Error('fixture config.json has no rms_norm_eps to change');
  return Buffer.from(changed);
};
const content = (name: string) => {
  if (name === 'config.json' && COMMIT === NEXT_COMMIT) return nextConfig();
  return hubFiles.includes(name) ? readFileSync(join(SOURCE, name)) : Buffer.from(`not needed: ${name}`);
};
/** The model files in a folder (the downloader's manifest aside). */
const modelFiles = (dir: string) => readdirSync(dir).filter((f) => f !== MANIFEST);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let hub: Server;
let cdn: Server;
let hubUrl: string;
let cdnUrl: string;
const log: Log[] = [];
/**
 * Shards whose first transfer is cut half-way, each with the `.part` file the client writes: the cut
 * waits until the client holds the half on disk, so the resume point is known. (Cutting at once would
 * race the client's writes: bytes still in its buffers are lost with the connection, and it resumes
 * from whatever reached the disk, possibly nothing.)
 */
const cutOnce = new Map<string, string>();
/** files the CDN corrupts */
const corrupt = new Set<string>();

function listen(s: Server): Promise<string> {
  return new Promise((resolve) =>
    s.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(s.address() as AddressInfo).port}`)),
  );
}

function record(req: IncomingMessage, host: 'hub' | 'cdn') {
  log.push({ path: req.url ?? '', auth: req.headers.authorization, range: req.headers.range, host });
}

/** Resolves once `path` holds `size` bytes, or after 30 s (the test then fails on the Range it sees). */
async function waitForSize(path: string, size: number) {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline && !(existsSync(path) && statSync(path).size >= size))
    await new Promise((r) => setTimeout(r, 10));
}

function sendRange(req: IncomingMessage, res: ServerResponse, body: Buffer, name: string) {
  const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  if (m) {
    const start = Number(m[1]);
    if (start >= body.length) {
      res.writeHead(416, { 'content-range': `bytes */${body.length}` }).end();
      return;
    }
    res.writeHead(206, {
      'content-range': `bytes ${start}-${body.length - 1}/${body.length}`,
      'content-length': String(body.length - start),
    });
    res.end(body.subarray(start));
    return;
  }
  res.writeHead(200, { 'content-length': String(body.length) });
  const watch = cutOnce.get(name);
  if (watch !== undefined) {
    cutOnce.delete(name);
    // half the file, then the connection drops once the client has stored it
    const half = body.length >> 1;
    res.write(body.subarray(0, half), async () => {
      await waitForSize(watch, half);
      res.socket?.destroy();
    });
    return;
  }
  res.end(body);
}

beforeAll(async () => {
  cdn = createServer((req, res) => {
    record(req, 'cdn');
    const name = decodeURIComponent((req.url ?? '').replace(/^\/blobs\//, ''));
    let body = content(name);
    if (corrupt.has(name)) body = Buffer.from(body.map((b, i) => (i === 100 ? b ^ 0xff : b)));
    sendRange(req, res, body, name);
  });
  cdnUrl = await listen(cdn);
  hub = createServer((req, res) => {
    record(req, 'hub');
    if (req.headers.authorization !== `Bearer ${TOKEN}`) {
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"Invalid credentials"}');
      return;
    }
    const url = new URL(req.url ?? '/', hubUrl);
    const api = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(url.pathname);
    if (api) {
      if (api[1] !== REPO || !['main', COMMIT].includes(decodeURIComponent(api[2]!))) {
        res.writeHead(404).end('{"error":"Revision Not Found"}');
        return;
      }
      const siblings = [...hubFiles, ...extra].map((name) => {
        const b = content(name);
        return name.endsWith('.safetensors')
          ? { rfilename: name, size: b.length, lfs: { sha256: sha(b), size: b.length } }
          : { rfilename: name, size: b.length };
      });
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ sha: COMMIT, siblings }));
      return;
    }
    const file = new RegExp(`^/${REPO}/resolve/${COMMIT}/(.+)$`).exec(url.pathname);
    if (!file) {
      res.writeHead(404).end('{"error":"Entry not found"}');
      return;
    }
    const name = decodeURIComponent(file[1]!);
    if (name.endsWith('.safetensors')) {
      // LFS files live on the CDN, another origin
      res.writeHead(302, { location: `${cdnUrl}/blobs/${encodeURIComponent(name)}` }).end();
      return;
    }
    sendRange(req, res, content(name), name);
  });
  hubUrl = await listen(hub);
});

afterAll(() => {
  hub?.close();
  cdn?.close();
});

const run = (dir: string, env: Record<string, string> = { HF_TOKEN: TOKEN }, revision = 'main') =>
  runCliAsync(['download', '--repo', REPO, '--revision', revision, '--dir', dir], { HF_ENDPOINT: hubUrl, ...env });

describe('pagoda download', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pagoda-download-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('fetches config, tokenizer and indexed shards at the resolved commit, resuming a cut transfer', async () => {
    cutOnce.set('model-00002-of-00004.safetensors', join(dir, 'model-00002-of-00004.safetensors.part'));
    log.length = 0;
    const r = await run(dir);
    expect(r.stderr).toMatch(/commit a1b2c3d4/);
    expect(r.status).toBe(0);
    expect(modelFiles(dir).sort()).toEqual([...hubFiles].sort());
    for (const name of hubFiles) expect(sha(readFileSync(join(dir, name))), name).toBe(sha(content(name)));
    // every file at the commit, not the branch
    for (const l of log.filter((x) => x.host === 'hub' && x.path.includes('/resolve/')))
      expect(l.path).toContain(`/resolve/${COMMIT}/`);
    // the token reaches the hub and never the CDN
    expect(log.filter((x) => x.host === 'hub').every((x) => x.auth === `Bearer ${TOKEN}`)).toBe(true);
    expect(log.filter((x) => x.host === 'cdn').every((x) => x.auth === undefined)).toBe(true);
    // the cut shard was resumed where it stopped
    const shard2 = log.filter((x) => x.host === 'cdn' && x.path.includes('00002'));
    expect(shard2.map((x) => x.range)).toEqual([
      undefined,
      `bytes=${content('model-00002-of-00004.safetensors').length >> 1}-`,
    ]);
    expect(r.stderr).toMatch(/model-00002-of-00004.safetensors: attempt 1 failed/);
    // and the folder is a model the runtime loads
    const model = loadModel(dir);
    expect(model.config.arch).toBe(loadModel(SOURCE).config.arch);
    expect(model.tensors.length).toBe(loadModel(SOURCE).tensors.length);
  });

  it('transfers nothing on a second run', async () => {
    log.length = 0;
    const r = await run(dir);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/done: 0 fetched, 9 already present/);
    expect(log.filter((x) => x.path.includes('/resolve/') || x.host === 'cdn')).toEqual([]);
  });

  it('fetches a file again when a newer commit changed it, even at the same size, and keeps unchanged weights', async () => {
    COMMIT = NEXT_COMMIT;
    try {
      expect(content('config.json').length).toBe(readFileSync(join(dir, 'config.json')).length);
      log.length = 0;
      const r = await run(dir);
      expect(r.status).toBe(0);
      expect(sha(readFileSync(join(dir, 'config.json')))).toBe(sha(content('config.json')));
      // files without a published sha256 are tied to their commit; weights to their sha256, unchanged here
      expect(log.filter((x) => x.host === 'cdn')).toEqual([]);
      expect(log.some((x) => x.path.endsWith(`/resolve/${NEXT_COMMIT}/config.json`))).toBe(true);
      expect(r.stderr).toMatch(/done: 5 fetched, 4 already present/);
    } finally {
      COMMIT = FIRST_COMMIT;
    }
  });

  it('finishes a download left half-done by an earlier run (a .part file) with a Range request', async () => {
    const d = mkdtempSync(join(tmpdir(), 'pagoda-download-'));
    try {
      const name = 'model-00003-of-00004.safetensors';
      const { writeFileSync } = await import('node:fs');
      writeFileSync(join(d, `${name}.part`), content(name).subarray(0, 1000));
      log.length = 0;
      const r = await run(d);
      expect(r.status).toBe(0);
      expect(log.find((x) => x.host === 'cdn' && x.path.includes('00003'))?.range).toBe('bytes=1000-');
      expect(sha(readFileSync(join(d, name)))).toBe(sha(content(name)));
      expect(modelFiles(d).filter((f) => f.endsWith('.part'))).toEqual([]);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  it('fails clearly without a valid token, for an unknown revision, and on a corrupt file', async () => {
    const d = mkdtempSync(join(tmpdir(), 'pagoda-download-'));
    try {
      const denied = await run(d, { HF_TOKEN: 'wrong' });
      expect(denied.status).toBe(1);
      expect(denied.stderr).toMatch(/access denied \(HTTP 401\); set HF_TOKEN/);
      const missing = await run(d, { HF_TOKEN: TOKEN }, 'no-such-branch');
      expect(missing.status).toBe(1);
      expect(missing.stderr).toMatch(/not found \(HTTP 404\); check --repo and --revision/);
      corrupt.add('model-00004-of-00004.safetensors');
      const bad = await run(d);
      corrupt.clear();
      expect(bad.status).toBe(1);
      expect(bad.stderr).toMatch(/model-00004-of-00004.safetensors: sha256 \w+ does not match/);
      expect(existsSync(join(d, 'model-00004-of-00004.safetensors'))).toBe(false);
      expect(existsSync(join(d, 'model-00004-of-00004.safetensors.part'))).toBe(false);
      const usage = await runCliAsync(['download', '--dir', d]);
      expect(usage.status).toBe(2);
      expect(usage.stderr).toMatch(/--repo is required/);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});
