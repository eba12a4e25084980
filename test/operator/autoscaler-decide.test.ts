/**
 * The autoscaling algorithm (pure): single decisions from a table of situations, then load scenarios
 * played tick by tick through the metric window and decide() — steps, ramps, noise, flapping, min/max,
 * the stabilization windows, pods Pending for lack of GPUs, unscraped pods, and the history surviving a
 * round trip through status (an operator restart).
 */
import { describe, expect, it } from 'vitest';
import { type Decision, type DecisionInput, decide, MAX_HISTORY } from '../../operator/src/autoscaler/decide.ts';
import type { Policy } from '../../operator/src/autoscaler/policy.ts';
import { historyFromStatus, historyToStatus } from '../../operator/src/autoscaler/status.ts';
import { type Load, SampleWindow } from '../../operator/src/autoscaler/window.ts';

const S = 1000;
const T0 = Date.parse('2026-12-01T10:00:00Z');

const policy = (p: Partial<Policy> = {}): Policy => ({
  metric: 'requests',
  minReplicas: 1,
  maxReplicas: 10,
  target: 2,
  tolerance: 0.1,
  metricWindowMs: 30 * S,
  scaleUpWindowMs: 0,
  scaleDownWindowMs: 300 * S,
  ...p,
});

const load = (total: number, pods = 1, missing = 0): Load => ({
  total,
  perPod: total / pods,
  missing,
  answered: pods,
  samples: 1,
});

function once(p: Partial<DecisionInput> & { current: number }): Decision {
  return decide({ policy: policy(), load: undefined, podsShortOfGpus: 0, history: [], now: T0, ...p });
}

describe('one decision', () => {
  it.each<[string, Partial<DecisionInput> & { current: number }, number, string, string]>([
    ['load at target: stay', { current: 2, load: load(4, 2) }, 2, 'WithinTolerance', 'DesiredWithinRange'],
    [
      '9% over target: within tolerance',
      { current: 5, load: load(10.9, 5) },
      5,
      'WithinTolerance',
      'DesiredWithinRange',
    ],
    ['11% over target: one more', { current: 5, load: load(11.1, 5) }, 6, 'ScaledUp', 'DesiredWithinRange'],
    ['2.5× the target: ceil(total / target)', { current: 1, load: load(5) }, 3, 'ScaledUp', 'DesiredWithinRange'],
    ['no load, no history: straight down', { current: 4, load: load(0, 4) }, 1, 'ScaledDown', 'TooFewReplicas'],
    ['above max', { current: 2, load: load(100, 2) }, 10, 'ScaledUp', 'TooManyReplicas'],
    ['at max and still loaded', { current: 10, load: load(100, 10) }, 10, 'TooManyReplicas', 'TooManyReplicas'],
    ['no metrics: stay', { current: 3 }, 3, 'NoMetrics', 'DesiredWithinRange'],
    ['no metrics, above max: down to max', { current: 12 }, 10, 'ScaledDown', 'TooManyReplicas'],
    ['no metrics, below min', { current: 1, policy: policy({ minReplicas: 2 }) }, 2, 'ScaledUp', 'TooFewReplicas'],
    [
      'pods Pending for lack of GPUs: no more replicas',
      { current: 3, load: load(20, 2), podsShortOfGpus: 1 },
      3,
      'InsufficientGPUs',
      'InsufficientGPUs',
    ],
    [
      'pods Pending for lack of GPUs: scaling down still happens',
      { current: 3, load: load(0, 2), podsShortOfGpus: 1 },
      1,
      'ScaledDown',
      'TooFewReplicas',
    ],
    [
      'pods Pending for lack of GPUs: minReplicas still applies',
      { current: 1, load: load(20), podsShortOfGpus: 1, policy: policy({ minReplicas: 2 }) },
      2,
      'ScaledUp',
      'InsufficientGPUs',
    ],
    ['an unscraped pod counts as 0 going up', { current: 2, load: load(5, 1, 1) }, 3, 'ScaledUp', 'DesiredWithinRange'],
    [
      'an unscraped pod counts as at target going down',
      { current: 3, load: load(1, 2, 1) },
      2,
      'ScaledDown',
      'DesiredWithinRange',
    ],
    [
      'KV-cache usage 0.9 on 2 pods, target 0.6',
      { current: 2, load: load(1.8, 2), policy: policy({ metric: 'kvCacheUsage', target: 0.6 }) },
      3,
      'ScaledUp',
      'DesiredWithinRange',
    ],
  ])('%s', (_what, input, desired, reason, limit) => {
    const d = once({ ...input, policy: input.policy ?? policy({ scaleDownWindowMs: 0 }) });
    expect({ desired: d.desired, reason: d.reason, limit: d.limited.reason }).toEqual({ desired, reason, limit });
    expect(d.limited.status).toBe(limit === 'DesiredWithinRange' ? 'False' : 'True');
  });

  it('says what it saw and why', () => {
    const d = once({ current: 1, load: load(5) });
    expect(d.message).toContain('requests (running + waiting) 5 per pod over 1 pod(s)');
    expect(d.message).toContain('target 2');
    expect(d.message).toContain('1 → 3 replicas');
    const held = once({ current: 3, load: load(20, 3), podsShortOfGpus: 2 });
    expect(held.limited.message).toContain('2 pod(s) Pending for lack of GPUs: not adding replicas (holding 3 of');
  });
});

interface Scenario {
  policy?: Partial<Policy>;
  /** The metric summed over all pods at a time (seconds from the start). */
  load: (t: number) => number;
  start?: number;
  seconds: number;
  intervalSeconds?: number;
  /** Pods that fit on the GPUs: more replicas than this are Pending. */
  gpuCapacity?: number;
}

interface Step {
  t: number;
  replicas: number;
  reason: string;
}

/** Plays a scenario: each interval a sample (all Ready pods answer), a decision, the replicas follow. */
function play(s: Scenario): Step[] {
  const p = policy(s.policy);
  const window = new SampleWindow();
  let replicas = s.start ?? 1;
  let history: DecisionInput['history'] = [];
  const steps: Step[] = [];
  const interval = s.intervalSeconds ?? 15;
  for (let t = 0; t <= s.seconds; t += interval) {
    const now = T0 + t * S;
    const ready = Math.min(replicas, s.gpuCapacity ?? replicas);
    window.add({ at: now, total: s.load(t), answered: ready, missing: 0 });
    const d = decide({
      policy: p,
      current: replicas,
      load: window.load(now, p.metricWindowMs),
      podsShortOfGpus: replicas - ready,
      history,
      now,
    });
    history = d.history;
    replicas = d.desired;
    steps.push({ t, replicas, reason: d.reason });
  }
  return steps;
}

const at = (steps: Step[], t: number) => steps.find((s) => s.t === t)?.replicas;
const changes = (steps: Step[]) => steps.filter((s, i) => i > 0 && s.replicas !== steps[i - 1]?.replicas);

/** A deterministic pseudo-random stream (mulberry32). */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('scenarios', () => {
  it('a step up reaches ceil(load / target) within two scrape intervals (30 s window, 15 s scrapes)', () => {
    const steps = play({ load: (t) => (t >= 60 ? 10 : 0), seconds: 120 });
    expect(at(steps, 45)).toBe(1);
    expect(at(steps, 60)).toBe(3); // the window holds one idle and one loaded scrape
    expect(at(steps, 75)).toBe(5); // both loaded: 10 / 2
    expect(steps.filter((s) => s.t > 75).every((s) => s.replicas === 5)).toBe(true);
  });

  it('a step down waits for the scale-down window, then goes to what the load needs', () => {
    const steps = play({ start: 5, load: (t) => (t < 60 ? 10 : 2), seconds: 600 });
    // The last scrape asking for 5 is at t=45 (its window still holds the loaded samples at 60 and 75 s:
    // recommendations 3 then 1). 5 is held until the 300 s window has passed over it.
    const firstDown = changes(steps)[0] as Step;
    expect(firstDown.t).toBeGreaterThanOrEqual(60 + 300);
    expect(firstDown.t).toBeLessThanOrEqual(60 + 300 + 30);
    expect(steps.filter((s) => s.t < firstDown.t).every((s) => s.replicas === 5)).toBe(true);
    expect(steps.at(-1)?.replicas).toBe(1);
    expect(steps.find((s) => s.t === 120)?.reason).toBe('ScaleDownStabilizing');
  });

  it('a short scale-down window scales down soon after the load stops', () => {
    const steps = play({ start: 5, load: (t) => (t < 60 ? 10 : 0), seconds: 200, policy: { scaleDownWindowMs: 0 } });
    expect(at(steps, 90)).toBe(1); // the 30 s metric window has only idle samples at t=90
  });

  it('a ramp is followed up step by step, never down', () => {
    const steps = play({ load: (t) => t / 15, seconds: 300, policy: { maxReplicas: 20 } });
    for (let i = 1; i < steps.length; i++) expect(steps[i]!.replicas).toBeGreaterThanOrEqual(steps[i - 1]!.replicas);
    // 20 sequences at t=300, averaged with the 19 of t=285: 19.5 / 2 → 10
    expect(steps.at(-1)?.replicas).toBe(10);
    expect(changes(steps).length).toBeGreaterThan(5);
  });

  it('noise of ±8% around the target changes nothing', () => {
    const r = rng(7);
    const steps = play({ start: 4, load: () => 8 * (0.92 + 0.16 * r()), seconds: 3600 });
    expect(changes(steps)).toEqual([]);
  });

  it('flapping load (4 ↔ 12 every scrape) settles and does not flap', () => {
    const steps = play({ start: 1, load: (t) => ((t / 15) % 2 === 0 ? 4 : 12), seconds: 1800 });
    // Averaged over the window the load is 8: 4 replicas; a dip never outlasts the scale-down window.
    expect(changes(steps).length).toBeLessThanOrEqual(2);
    expect(steps.at(-1)?.replicas).toBe(4);
  });

  it('bursts between idle periods keep the replicas through the scale-down window', () => {
    // 10 for 60 s every 4 minutes: the scale-down window (5 min) never sees a full idle stretch.
    const steps = play({ load: (t) => (t % 240 < 60 ? 10 : 0), seconds: 1800 });
    expect(steps.filter((s) => s.t >= 120).every((s) => s.replicas === 5)).toBe(true);
  });

  it('stays within minReplicas and maxReplicas', () => {
    const steps = play({
      start: 3,
      load: (t) => (t < 300 ? 100 : 0),
      seconds: 1200,
      policy: { minReplicas: 2, maxReplicas: 6, scaleDownWindowMs: 60 * S },
    });
    expect(Math.max(...steps.map((s) => s.replicas))).toBe(6);
    expect(Math.min(...steps.map((s) => s.replicas))).toBe(2);
    expect(steps.find((s) => s.t === 195)?.reason).toBe('TooManyReplicas');
    expect(steps.at(-1)?.reason).toBe('TooFewReplicas');
  });

  it('a scale-up window ignores a short spike and follows a sustained rise after the window', () => {
    const spike = play({ load: (t) => (t === 60 ? 40 : 0), seconds: 300, policy: { scaleUpWindowMs: 60 * S } });
    expect(changes(spike)).toEqual([]);
    const sustained = play({ load: (t) => (t >= 60 ? 10 : 0), seconds: 300, policy: { scaleUpWindowMs: 60 * S } });
    const first = changes(sustained)[0] as Step;
    expect(first.t).toBeGreaterThanOrEqual(60 + 60);
    expect(sustained.at(-1)?.replicas).toBe(5);
  });

  it('does not add replicas while pods are Pending for lack of GPUs', () => {
    // 3 replicas fit; the load asks for 3, then 8.
    const steps = play({ load: (t) => (t < 120 ? 6 : 16), seconds: 600, gpuCapacity: 3 });
    expect(at(steps, 90)).toBe(3);
    // Nothing is Pending yet at t=120, so the first rise follows the recommendation: the window holds 6
    // and 16, ceil(11 / 2) = 6. From then on 3 pods are Pending and nothing more is added, though the
    // load asks for 8.
    expect(at(steps, 120)).toBe(6);
    expect(steps.filter((s) => s.t > 120).every((s) => s.replicas === 6)).toBe(true);
    expect(steps.at(-1)?.reason).toBe('InsufficientGPUs');
  });
});

describe('history', () => {
  it('is kept across a restart through status: the scale-down window still holds', () => {
    const p = policy();
    // Before the restart: 5 replicas recommended until t=60, then the load stopped.
    const before = decide({ policy: p, current: 1, load: load(10), podsShortOfGpus: 0, history: [], now: T0 });
    expect(before.desired).toBe(5);
    const saved = historyToStatus(before.history);
    // A new process, no samples of its own, a fresh idle scrape 60 s later.
    const restored = historyFromStatus({ autoscaling: { mode: 'builtin', recommendations: saved } });
    expect(restored).toEqual(before.history);
    const after = decide({
      policy: p,
      current: 5,
      load: load(0, 5),
      podsShortOfGpus: 0,
      history: restored,
      now: T0 + 60 * S,
    });
    expect(after.desired).toBe(5);
    expect(after.reason).toBe('ScaleDownStabilizing');
    expect(after.message).toContain('until 2026-12-01T10:06:00.000Z');
    // Without it, the same scrape would scale down at once:
    const forgotten = decide({ policy: p, current: 5, load: load(0, 5), podsShortOfGpus: 0, history: [], now: T0 });
    expect(forgotten.desired).toBe(1);
  });

  it('stores one entry per change, drops what no window needs, and is bounded', () => {
    let history: DecisionInput['history'] = [];
    const p = policy({ scaleDownWindowMs: 60 * S });
    for (let i = 0; i < 10; i++) {
      history = decide({
        policy: p,
        current: 2,
        load: load(4, 2),
        podsShortOfGpus: 0,
        history,
        now: T0 + i * S,
      }).history;
    }
    expect(history).toEqual([{ replicas: 2, since: T0 }]);
    for (let i = 0; i < 400; i++) {
      history = decide({
        policy: policy({ scaleDownWindowMs: 3600 * S, maxReplicas: 1000 }),
        current: 2,
        load: load((i % 50) * 4, 2),
        podsShortOfGpus: 0,
        history,
        now: T0 + (10 + i) * S,
      }).history;
    }
    expect(history.length).toBe(MAX_HISTORY);
    history = decide({
      policy: p,
      current: 2,
      load: load(4, 2),
      podsShortOfGpus: 0,
      history,
      now: T0 + 600 * S,
    }).history;
    expect(history.length).toBeLessThanOrEqual(2);
  });
});

describe('metric window', () => {
  it('averages the summed metric over the window, not the per-pod value', () => {
    const w = new SampleWindow();
    w.add({ at: T0, total: 6, answered: 1, missing: 0 });
    w.add({ at: T0 + 10 * S, total: 6, answered: 3, missing: 0 });
    const l = w.load(T0 + 10 * S, 30 * S) as Load;
    expect(l.total).toBe(6);
    expect(l.perPod).toBe(4); // (6 + 2) / 2
    expect(l.answered).toBe(3);
  });

  it('forgets samples older than the window and ignores scrapes where no pod answered', () => {
    const w = new SampleWindow();
    w.add({ at: T0, total: 100, answered: 2, missing: 0 });
    w.add({ at: T0 + 20 * S, total: 0, answered: 0, missing: 2 });
    expect(w.load(T0 + 20 * S, 30 * S)?.total).toBe(100);
    expect(w.load(T0 + 31 * S, 30 * S)).toBeUndefined();
  });
});
