/** Loading credentials: kubeconfig files (tokens, token files, inline and relative certificate files). */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  trimDeployment,
  trimHorizontalPodAutoscaler,
  trimPod,
  trimToMetadata,
} from '../../operator/src/controller/trim.ts';
import { fromKubeconfigFile } from '../../operator/src/kube/kubeconfig.ts';
import { microTime } from '../../operator/src/kube/leader.ts';

const dir = mkdtempSync(join(tmpdir(), 'pagoda-kubeconfig-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function kubeconfig(user: string, cluster = '    certificate-authority: ca.pem'): string {
  const path = join(dir, `config-${Math.random().toString(16).slice(2)}`);
  writeFileSync(
    path,
    `apiVersion: v1
kind: Config
current-context: a
contexts:
- name: a
  context: { cluster: c, user: u, namespace: team }
- name: b
  context: { cluster: c, user: u }
clusters:
- name: c
  cluster:
    server: https://10.0.0.1:6443/
${cluster}
users:
- name: u
  user:
${user}
`,
  );
  return path;
}

describe('kubeconfig', () => {
  writeFileSync(join(dir, 'ca.pem'), 'CA');
  writeFileSync(join(dir, 'token'), 'file-token\n');

  it('reads server, namespace, a relative CA file and an inline token', async () => {
    const c = fromKubeconfigFile(kubeconfig('    token: abc'));
    expect(c.server).toBe('https://10.0.0.1:6443');
    expect(c.namespace).toBe('team');
    expect(c.ca?.toString()).toBe('CA');
    expect(await c.authHeaders()).toEqual({ Authorization: 'Bearer abc' });
  });

  it('reads a token file, client certificate data and insecure-skip-tls-verify', async () => {
    const c = fromKubeconfigFile(
      kubeconfig(
        `    tokenFile: token\n    client-certificate-data: ${Buffer.from('CERT').toString('base64')}\n    client-key-data: ${Buffer.from('KEY').toString('base64')}`,
        '    insecure-skip-tls-verify: true',
      ),
    );
    expect(await c.authHeaders()).toEqual({ Authorization: 'Bearer file-token' });
    expect(c.cert?.toString()).toBe('CERT');
    expect(c.key?.toString()).toBe('KEY');
    expect(c.insecureSkipTlsVerify).toBe(true);
  });

  it('basic auth, another context, and a clear error for a missing context', async () => {
    const path = kubeconfig('    username: ann\n    password: pw');
    expect(await fromKubeconfigFile(path, 'b').authHeaders()).toEqual({
      Authorization: `Basic ${Buffer.from('ann:pw').toString('base64')}`,
    });
    expect(fromKubeconfigFile(path, 'b').namespace).toBe('default');
    expect(() => fromKubeconfigFile(path, 'nope')).toThrow('context "nope" not found');
  });
});

describe('lease times and cache trimming', () => {
  it('MicroTime has six fractional digits', () => {
    expect(microTime(new Date('2026-11-29T12:00:00.123Z'))).toBe('2026-11-29T12:00:00.123000Z');
  });

  it('caches keep what the reconciler reads and drop the rest', () => {
    const metadata = {
      name: 'x',
      namespace: 'n',
      labels: { a: 'b' },
      resourceVersion: '7',
      generation: 3,
      managedFields: [{ manager: 'm' }],
      annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{}', keep: 'me' },
    };
    const d = trimDeployment({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata,
      spec: { big: 1 },
      status: { readyReplicas: 1 },
    });
    expect(d).toEqual({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: {
        name: 'x',
        namespace: 'n',
        labels: { a: 'b' },
        resourceVersion: '7',
        generation: 3,
        annotations: { keep: 'me' },
      },
      status: { readyReplicas: 1 },
    });
    expect(trimToMetadata({ metadata, spec: {} })).not.toHaveProperty('spec');
    const hpa = trimHorizontalPodAutoscaler({ metadata, spec: { big: 1 }, status: { desiredReplicas: 2 } });
    expect(hpa).not.toHaveProperty('spec');
    expect(hpa).toMatchObject({ status: { desiredReplicas: 2 } });
    expect(hpa.metadata).not.toHaveProperty('managedFields');
    const pod = trimPod({
      metadata: { ...metadata, deletionTimestamp: 't' },
      spec: { containers: [] },
      status: {
        phase: 'Pending',
        podIP: '1.2.3.4',
        conditions: [
          { type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: 'm', lastProbeTime: null },
        ],
        containerStatuses: [{ name: 'runtime', image: 'i', state: { waiting: { reason: 'CrashLoopBackOff' } } }],
      },
    });
    expect(pod).toEqual({
      metadata: { name: 'x', namespace: 'n', labels: { a: 'b' }, resourceVersion: '7', deletionTimestamp: 't' },
      status: {
        phase: 'Pending',
        podIP: '1.2.3.4', // the autoscaler's scrape target
        conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: 'm' }],
        containerStatuses: [{ name: 'runtime', state: { waiting: { reason: 'CrashLoopBackOff' } } }],
        initContainerStatuses: undefined,
      },
    });
  });
});
