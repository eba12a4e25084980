/**
 * The helm chart: lint --strict; what each template renders (and does not) for the values that switch
 * it; the schema refuses bad values; the render applies cleanly (server dry run); install, upgrade and
 * uninstall on the local cluster (the CRD is kept); and the operator, run with the chart's
 * ServiceAccount token, reconciles an InferenceDeployment with exactly the RBAC the chart grants.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments, stringify } from 'yaml';
import type { InferenceDeployment } from '../../operator/src/api/types.ts';
import { collectionPath, isNotFound, objectPath, RESOURCES } from '../../operator/src/kube/rest.ts';
import { OperatorMetrics } from '../../operator/src/metrics.ts';
import { CHART_TEMPLATE, CRD_SOURCE, renderChartCrdTemplate } from '../../operator/tools/sync-chart-crd.ts';
import { CLUSTER_DIR, clientFor, REPO_ROOT } from '../../scripts/cluster/cluster.ts';
import { CLUSTER_SETUP_TIMEOUT_MS, setupCluster, type TestCluster } from './support/cluster.ts';
import { type OperatorProcess, startOperator } from './support/operator-process.ts';
import { eventually } from './support/wait.ts';

const CHART = join(REPO_ROOT, 'charts', 'pagoda');
const CRD_NAME = 'inferencedeployments.inference.pagoda.dev';

// biome-ignore lint/suspicious/noExplicitAny: rendered manifests are read by path
type Obj = Record<string, any>;

let cluster: TestCluster;
let operator: OperatorProcess | undefined;

beforeAll(async () => {
  cluster = await setupCluster();
}, CLUSTER_SETUP_TIMEOUT_MS);

afterAll(async () => {
  await operator?.stop('SIGKILL');
  await cluster?.cleanup();
});

async function render(...set: string[]): Promise<Obj[]> {
  const out = await cluster.helm([
    'template',
    'pagoda',
    CHART,
    '--namespace',
    'pagoda-system',
    ...set.flatMap((s) => ['--set', s]),
  ]);
  return parseAllDocuments(out)
    .map((d) => d.toJSON() as Obj)
    .filter(Boolean);
}

const kinds = (docs: Obj[]) => docs.map((d) => d.kind);
const find = (docs: Obj[], kind: string) => docs.find((d) => d.kind === kind);
const args = (docs: Obj[]) => find(docs, 'Deployment')?.spec.template.spec.containers[0].args as string[];

describe('templates', () => {
  it('helm lint --strict is clean', async () => {
    const out = await cluster.helm(['lint', '--strict', CHART]);
    expect(out).toContain('1 chart(s) linted, 0 chart(s) failed');
  });

  it('renders the operator, its RBAC, metrics Service and the CRD by default', async () => {
    const docs = await render();
    expect(kinds(docs).sort()).toEqual(
      [
        'ClusterRole',
        'ClusterRoleBinding',
        'CustomResourceDefinition',
        'Deployment',
        'Role',
        'RoleBinding',
        'Service',
        'ServiceAccount',
      ].sort(),
    );
    const dep = find(docs, 'Deployment') as Obj;
    const pod = dep.spec.template.spec;
    expect(pod.containers[0].image).toBe('ghcr.io/pagoda-ai/pagoda-operator:0.1.0');
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    expect(pod.containers[0].securityContext).toMatchObject({
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
    });
    expect(pod.containers[0].readinessProbe.httpGet.path).toBe('/readyz');
    expect(args(docs)).toContain('--leader-elect=true');
    expect(args(docs)).toContain('--leader-election-id=pagoda-operator');
    expect(args(docs)).toContain('--autoscaler-interval=15');
  });

  it('the CRD template is crds/ with the chart labels and the keep policy', async () => {
    expect(readFileSync(CHART_TEMPLATE, 'utf8')).toBe(renderChartCrdTemplate(readFileSync(CRD_SOURCE, 'utf8')));
    const crd = find(await render(), 'CustomResourceDefinition') as Obj;
    const source = parse(readFileSync(CRD_SOURCE, 'utf8')) as Obj;
    expect(crd.spec).toEqual(source.spec);
    expect(crd.metadata.annotations['helm.sh/resource-policy']).toBe('keep');
    expect(crd.metadata.labels['app.kubernetes.io/managed-by']).toBe('Helm');
  });

  it('does not render the CRD with crds.enabled=false, nor the keep policy with crds.keep=false', async () => {
    expect(kinds(await render('crds.enabled=false'))).not.toContain('CustomResourceDefinition');
    const crd = find(await render('crds.keep=false'), 'CustomResourceDefinition') as Obj;
    expect(crd.metadata.annotations).toBeUndefined();
  });

  it('watchNamespace turns the ClusterRole into a Role in that namespace', async () => {
    const docs = await render('watchNamespace=team-a');
    expect(kinds(docs)).not.toContain('ClusterRole');
    const roles = docs.filter((d) => d.kind === 'Role');
    expect(roles.map((r) => r.metadata.namespace).sort()).toEqual(['pagoda-system', 'team-a']);
    expect(args(docs)).toContain('--namespace=team-a');
  });

  it('renders the ServiceMonitor only when enabled', async () => {
    expect(kinds(await render())).not.toContain('ServiceMonitor');
    const sm = find(
      await render('serviceMonitor.enabled=true', 'serviceMonitor.labels.release=prom'),
      'ServiceMonitor',
    ) as Obj;
    expect(sm.spec.endpoints[0]).toMatchObject({ port: 'http-metrics', path: '/metrics' });
    expect(sm.metadata.labels.release).toBe('prom');
    await expect(render('serviceMonitor.enabled=true', 'service.enabled=false')).rejects.toThrow(
      'serviceMonitor.enabled needs service.enabled',
    );
  });

  it('renders the Grafana dashboard ConfigMap only when enabled, with the sidecar label', async () => {
    expect(kinds(await render())).not.toContain('ConfigMap');
    const docs = await render(
      'grafanaDashboard.enabled=true',
      'grafanaDashboard.namespace=monitoring',
      'grafanaDashboard.annotations.grafana_folder=Pagoda',
    );
    const cm = find(docs, 'ConfigMap') as Obj;
    expect(cm.metadata).toMatchObject({
      name: 'pagoda-operator-dashboard',
      namespace: 'monitoring',
      labels: { grafana_dashboard: '1' },
      annotations: { grafana_folder: 'Pagoda' },
    });
    const dashboard = JSON.parse(cm.data['pagoda-runtime.json']) as Obj;
    expect(dashboard).toEqual(JSON.parse(readFileSync(join(CHART, 'dashboards', 'pagoda-runtime.json'), 'utf8')));
    expect(dashboard.uid).toBe('pagoda-runtime');
    const out = await cluster.helm(['lint', '--strict', CHART, '--set', 'grafanaDashboard.enabled=true']);
    expect(out).toContain('0 chart(s) failed');
  });

  it('the dashboard queries only metrics that exist: the runtime contract and the operator', async () => {
    const dashboard = JSON.parse(readFileSync(join(CHART, 'dashboards', 'pagoda-runtime.json'), 'utf8')) as Obj;
    const exprs: string[] = dashboard.panels.flatMap((p: Obj) => (p.targets ?? []).map((t: Obj) => t.expr));
    const contract = new Set(
      [...readFileSync(join(REPO_ROOT, 'docs', 'metrics.md'), 'utf8').matchAll(/^\| `(pagoda_[a-z0-9_]+)`/gm)].map(
        (m) => m[1],
      ),
    );
    const operatorMetrics = new Set((await new OperatorMetrics().registry.getMetricsAsJSON()).map((m) => m.name));
    expect(contract.size).toBeGreaterThan(15);
    const used = new Set(exprs.flatMap((e) => [...e.matchAll(/\bpagoda_[a-z0-9_]+/g)].map((m) => m[0])));
    const unknown = [...used].filter(
      (n) => !contract.has(n) && !contract.has(n.replace(/_bucket$/, '')) && !operatorMetrics.has(n),
    );
    expect(unknown).toEqual([]);
    for (const m of ['pagoda_num_requests_running', 'pagoda_num_requests_waiting', 'pagoda_kv_cache_usage_ratio']) {
      expect(used).toContain(m);
    }
    expect(used).toContain('pagoda_operator_autoscaler_desired_replicas');
  });

  it('leader election off: no Lease role, and the flag says so', async () => {
    const docs = await render('leaderElection.enabled=false');
    expect(docs.filter((d) => d.kind === 'Role')).toHaveLength(0);
    expect(args(docs)).toContain('--leader-elect=false');
  });

  it('values.schema.json refuses unknown and invalid values', async () => {
    await expect(render('replicas=2')).rejects.toThrow("additional properties 'replicas' not allowed");
    await expect(render('logLevel=verbose')).rejects.toThrow('logLevel');
    await expect(render('image.pullPolicy=Sometimes')).rejects.toThrow('pullPolicy');
    await expect(render('autoscaler.interval=0')).rejects.toThrow('autoscaler.interval');
    await expect(render('grafanaDashboard.enable=true')).rejects.toThrow("additional properties 'enable' not allowed");
  });

  it('helm template | kubectl apply --dry-run=server is clean', async () => {
    const ns = await cluster.namespace('dryrun');
    const out = await cluster.helm([
      'template',
      'pagoda',
      CHART,
      '--namespace',
      ns,
      '--set',
      'grafanaDashboard.enabled=true',
    ]);
    const applied = await cluster.kubectl(['apply', '--dry-run=server', '-f', '-'], out);
    expect(applied).toContain('configmap/pagoda-operator-dashboard created (server dry run)');
    expect(applied).toContain('deployment.apps/pagoda-operator created (server dry run)');
    expect(applied).toContain(`customresourcedefinition.apiextensions.k8s.io/${CRD_NAME}`);
  });
});

describe('install, RBAC, upgrade, uninstall', () => {
  let ns: string;

  beforeAll(async () => {
    ns = await cluster.namespace('pagoda-system');
    // The tests installed the CRD already; let this release adopt it, as helm does for objects that
    // carry its ownership metadata.
    await cluster.client.mergePatch(objectPath(RESOURCES.crd, undefined, CRD_NAME), {
      metadata: {
        labels: { 'app.kubernetes.io/managed-by': 'Helm' },
        annotations: { 'meta.helm.sh/release-name': 'pagoda', 'meta.helm.sh/release-namespace': ns },
      },
    });
  });

  it('helm install creates the operator and its RBAC', async () => {
    await cluster.helm(['install', 'pagoda', CHART, '--namespace', ns, '--wait', '--timeout', '120s']);
    const dep = await cluster.client.get<Obj>(objectPath(RESOURCES.deployment, ns, 'pagoda-operator'));
    expect(dep.status.readyReplicas).toBe(1);
    await cluster.client.get(
      objectPath({ group: '', version: 'v1', plural: 'serviceaccounts', namespaced: true }, ns, 'pagoda-operator'),
    );
  });

  it('the operator runs with exactly the chart RBAC (the ServiceAccount token)', async () => {
    const token = await cluster.client.create<Obj>(
      `${objectPath({ group: '', version: 'v1', plural: 'serviceaccounts', namespaced: true }, ns, 'pagoda-operator')}/token`,
      { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 3600 } },
    );
    const kubeconfig = parse(readFileSync(cluster.kubeconfig, 'utf8')) as Obj;
    kubeconfig.users[0].user = { token: token.status.token };
    const path = join(CLUSTER_DIR, `sa-${ns}.kubeconfig`);
    writeFileSync(path, stringify(kubeconfig), { mode: 0o600 });
    const sa = clientFor(path);

    const review = async (verb: string, resource: string, group = '', subresource = '') =>
      (
        await sa.create<Obj>('/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', {
          apiVersion: 'authorization.k8s.io/v1',
          kind: 'SelfSubjectAccessReview',
          spec: { resourceAttributes: { verb, resource, group, subresource, namespace: 'default' } },
        })
      ).status.allowed as boolean;
    expect(await review('patch', 'deployments', 'apps')).toBe(true);
    expect(await review('delete', 'deployments', 'apps')).toBe(false);
    expect(await review('get', 'secrets')).toBe(false);
    expect(await review('update', 'inferencedeployments', 'inference.pagoda.dev')).toBe(false);
    expect(await review('patch', 'inferencedeployments', 'inference.pagoda.dev', 'scale')).toBe(true);
    expect(await review('delete', 'horizontalpodautoscalers', 'autoscaling')).toBe(true);
    expect(await review('delete', 'services')).toBe(false);

    operator = await startOperator({
      kubeconfig: path,
      identity: 'chart-sa',
      args: [`--leader-election-namespace=${ns}`, '--leader-election-id=pagoda-operator', '--autoscaler-interval=1'],
    });
    const work = await cluster.namespace('chart-work');
    await cluster.client.create(collectionPath(RESOURCES.inferenceDeployment, work), {
      apiVersion: 'inference.pagoda.dev/v1alpha1',
      kind: 'InferenceDeployment',
      metadata: { name: 'rbac-check', namespace: work },
      spec: {
        model: { name: 'Qwen/Qwen3-4B', source: { hostPath: { path: '/m' } } },
        gpu: { product: 'NVIDIA-H100-80GB-HBM3' },
      },
    });
    await eventually('Ready under the chart RBAC', async () => {
      const cr = await cluster.client.get<InferenceDeployment>(
        objectPath(RESOURCES.inferenceDeployment, work, 'rbac-check'),
      );
      return cr.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
    });
    // Events are written in the background: the Planned one may trail the Ready status a moment.
    await eventually('a Planned Event', async () =>
      (await cluster.client.list<Obj>(collectionPath(RESOURCES.event, work))).items.some((e) => e.reason === 'Planned'),
    );

    // Autoscaling under the same RBAC: the built-in autoscaler writes /scale (raising replicas to
    // minReplicas needs no metrics) and its status; hpa mode creates an HPA, and a mode change deletes it.
    const autoscaled = (name: string, autoscaling: Obj) =>
      cluster.client.create(collectionPath(RESOURCES.inferenceDeployment, work), {
        apiVersion: 'inference.pagoda.dev/v1alpha1',
        kind: 'InferenceDeployment',
        metadata: { name, namespace: work },
        spec: {
          model: { name: 'Qwen/Qwen3-4B', source: { hostPath: { path: '/m' } } },
          gpu: { product: 'NVIDIA-H100-80GB-HBM3' },
          autoscaling,
        },
      });
    const crOf = (name: string) =>
      cluster.client.get<InferenceDeployment>(objectPath(RESOURCES.inferenceDeployment, work, name));
    await autoscaled('rbac-builtin', { minReplicas: 2, maxReplicas: 3, target: 4 });
    await eventually('scaled to minReplicas through /scale', async () => {
      const cr = await crOf('rbac-builtin');
      return cr.spec.replicas === 2 && cr.status?.autoscaling?.mode === 'builtin';
    });
    await autoscaled('rbac-hpa', { mode: 'hpa', maxReplicas: 3, target: 4 });
    const hpaPath = objectPath(RESOURCES.horizontalPodAutoscaler, work, 'rbac-hpa');
    await eventually('HPA created', () => cluster.client.get(hpaPath).then(() => true));
    await cluster.client.mergePatch(objectPath(RESOURCES.inferenceDeployment, work, 'rbac-hpa'), {
      spec: { autoscaling: { mode: 'none' } },
    });
    await eventually('HPA deleted', () => cluster.client.get(hpaPath).then(() => false, isNotFound));
    expect(operator.logs()).not.toContain('forbidden');
    await operator.stop();
    operator = undefined;
  });

  it('helm upgrade rolls out changed values', async () => {
    await cluster.helm([
      'upgrade',
      'pagoda',
      CHART,
      '--namespace',
      ns,
      '--set',
      'logLevel=debug',
      '--wait',
      '--timeout',
      '120s',
    ]);
    const dep = await cluster.client.get<Obj>(objectPath(RESOURCES.deployment, ns, 'pagoda-operator'));
    expect(dep.spec.template.spec.containers[0].args).toContain('--log-level=debug');
    expect(await cluster.helm(['history', 'pagoda', '--namespace', ns])).toMatch(/\n2\s.*deployed/);
  });

  it('helm uninstall removes the operator and keeps the CRD', async () => {
    await cluster.helm(['uninstall', 'pagoda', '--namespace', ns, '--wait']);
    await expect(cluster.client.get(objectPath(RESOURCES.deployment, ns, 'pagoda-operator'))).rejects.toSatisfy(
      isNotFound,
    );
    const crd = await cluster.client.get<Obj>(objectPath(RESOURCES.crd, undefined, CRD_NAME));
    expect(crd.metadata.deletionTimestamp).toBeUndefined();
  });
});
