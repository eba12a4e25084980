/**
 * Readiness and draining. Ready once the engine has loaded and warmed; on SIGTERM it turns not-ready
 * at once, new generation requests get 503, and in-flight ones may finish until the drain timeout.
 */
export type Phase = 'starting' | 'ready' | 'draining' | 'failed';

export class Lifecycle {
  phase: Phase = 'starting';
  failure: string | undefined;
  private inFlight = 0;
  private drainWaiters: (() => void)[] = [];

  get ready(): boolean {
    return this.phase === 'ready';
  }

  get acceptsRequests(): boolean {
    return this.phase === 'ready';
  }

  get requestsInFlight(): number {
    return this.inFlight;
  }

  begin(): void {
    this.inFlight++;
  }

  end(): void {
    this.inFlight--;
    if (this.inFlight === 0) {
      const w = this.drainWaiters;
      this.drainWaiters = [];
      for (const f of w) f();
    }
  }

  /** Resolves true when every in-flight request ended, false when the timeout came first. */
  drain(timeoutMs: number): Promise<boolean> {
    this.phase = this.phase === 'failed' ? 'failed' : 'draining';
    if (this.inFlight === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.drainWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }
}
