/**
 * Where the autoscaler reads a pod's /metrics. In a cluster: the pod IP and the runtime's port. The
 * resolution is pluggable because some control planes run pods that are not reachable at their IP: the
 * local kwok cluster (pods are records with made-up IPs) maps each pod to a real runtime process through
 * a file (--metrics-target-map), which tests and local trials write.
 */
import { readFileSync, statSync } from 'node:fs';
import { isIPv6 } from 'node:net';
import { HTTP_PORT } from '../plan/names.ts';

export interface PodRef {
  namespace: string;
  name: string;
  podIP?: string | undefined;
}

/** A URL for the pod's metrics, or a sentence saying why there is none. */
export type Target = { url: string } | { error: string };

export interface TargetResolver {
  resolve(pod: PodRef): Target;
}

/** http://<pod IP>:8000/metrics (the runtime's port and path, as in the pods' prometheus.io annotations). */
export class PodIpTargets implements TargetResolver {
  resolve(pod: PodRef): Target {
    if (!pod.podIP) return { error: 'the pod has no IP yet' };
    const host = isIPv6(pod.podIP) ? `[${pod.podIP}]` : pod.podIP;
    return { url: `http://${host}:${HTTP_PORT}/metrics` };
  }
}

/**
 * A JSON file {"<namespace>/<pod>": "<base URL>"}; a pod maps to <base URL>/metrics. Re-read whenever it
 * changes (the writer replaces it atomically); a pod that is not in it has no target.
 */
export class FileMapTargets implements TargetResolver {
  private readonly path: string;
  private map: Record<string, string> = {};
  private version = '';
  private problem: string | undefined;

  constructor(path: string) {
    this.path = path;
  }

  private reload(): void {
    try {
      const st = statSync(this.path);
      const version = `${st.mtimeMs}:${st.size}:${st.ino}`;
      if (version === this.version) return;
      const parsed: unknown = JSON.parse(readFileSync(this.path, 'utf8'));
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
        throw new Error('expected an object of "<namespace>/<pod>": "<base URL>"');
      }
      this.map = parsed as Record<string, string>;
      this.version = version;
      this.problem = undefined;
    } catch (e) {
      this.map = {};
      this.version = '';
      this.problem = `metrics target map ${this.path}: ${e instanceof Error ? e.message : String(e)}`;
    }
  }

  resolve(pod: PodRef): Target {
    this.reload();
    if (this.problem) return { error: this.problem };
    const base = this.map[`${pod.namespace}/${pod.name}`];
    if (typeof base !== 'string')
      return { error: `the metrics target map has no entry for ${pod.namespace}/${pod.name}` };
    return { url: `${base.replace(/\/$/, '')}/metrics` };
  }
}
