/** Polling for conditions that become true asynchronously (controllers, schedulers, kwok). */
import { setTimeout as sleep } from 'node:timers/promises';

export async function eventually<T>(
  what: string,
  check: () => Promise<T | false | undefined | null>,
  { timeoutMs = 60_000, intervalMs = 200 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const r = await check();
      if (r !== false && r !== undefined && r !== null) return r;
      last = undefined;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    }
    await sleep(intervalMs);
  }
}
