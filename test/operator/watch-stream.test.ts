/**
 * KubeClient.watch decodes the event stream as a stream: a multi-byte character split between two
 * network chunks arrives whole (status messages carry × ≤ → …). Driven by a local HTTP server that
 * cuts the bytes in the middle of a character.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { KubeClient, type WatchEvent } from '../../operator/src/kube/rest.ts';

let server: Server;
let url = '';
const message = 'TP=2 fits: 16.4 GiB ≤ 72 GiB × 0.9 → ok';

beforeAll(async () => {
  server = createServer((_req, res) => {
    const bytes = Buffer.from(`${JSON.stringify({ type: 'ADDED', object: { message } })}\n`, 'utf8');
    const cut = bytes.indexOf(Buffer.from('≤', 'utf8')) + 1; // inside the 3-byte character
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write(bytes.subarray(0, cut));
    setTimeout(() => res.end(bytes.subarray(cut)), 50);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

it('keeps a character that straddles two chunks whole', async () => {
  const client = new KubeClient({
    server: url,
    insecureSkipTlsVerify: false,
    authHeaders: async () => ({}),
    namespace: 'default',
    source: 'test',
  });
  const events: WatchEvent<{ message: string }>[] = [];
  await client.watch<{ message: string }>('/api/v1/pods', {}, (e) => events.push(e), new AbortController().signal);
  expect(events).toHaveLength(1);
  expect(events[0]!.object.message).toBe(message);
});
