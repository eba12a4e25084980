/**
 * The chart installs the CRD from a template (helm never upgrades a chart's crds/ folder). This writes
 * charts/pagoda/templates/crds/inferencedeployments.yaml from crds/ — the CRD's source of truth — with
 * the chart's labels, the crds.enabled switch and the keep policy added. A test fails when the two
 * drift apart.
 *   node operator/tools/sync-chart-crd.ts          write the template
 *   node operator/tools/sync-chart-crd.ts --check  exit 1 if it is out of date
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..');
export const CRD_SOURCE = join(ROOT, 'crds', 'inference.pagoda.dev_inferencedeployments.yaml');
export const CHART_TEMPLATE = join(ROOT, 'charts', 'pagoda', 'templates', 'crds', 'inferencedeployments.yaml');

const METADATA = `metadata:
  name: inferencedeployments.inference.pagoda.dev
  labels:
    app.kubernetes.io/part-of: pagoda
`;

export function renderChartCrdTemplate(crd: string): string {
  if (crd.includes('{{') || crd.includes('}}'))
    throw new Error('the CRD contains "{{" or "}}", which helm would parse');
  const body = crd.slice(crd.indexOf('apiVersion:'));
  if (!body.includes(METADATA)) throw new Error('the CRD metadata block changed; update sync-chart-crd.ts');
  const metadata = `metadata:
  name: inferencedeployments.inference.pagoda.dev
  labels:
    {{- include "pagoda.labels" . | nindent 4 }}
  {{- if .Values.crds.keep }}
  annotations:
    # Uninstalling the release must not delete every InferenceDeployment with the CRD.
    helm.sh/resource-policy: keep
  {{- end }}
`;
  return [
    '{{- if .Values.crds.enabled }}',
    '# Generated from crds/inference.pagoda.dev_inferencedeployments.yaml by operator/tools/sync-chart-crd.ts.',
    '# Do not edit: edit the CRD there and run the tool.',
    body.replace(METADATA, metadata).trimEnd(),
    '{{- end }}',
    '',
  ].join('\n');
}

if (import.meta.main) {
  const want = renderChartCrdTemplate(readFileSync(CRD_SOURCE, 'utf8'));
  if (process.argv.includes('--check')) {
    const have = readFileSync(CHART_TEMPLATE, 'utf8');
    if (have !== want) {
      console.error(`${CHART_TEMPLATE} is out of date: run node operator/tools/sync-chart-crd.ts`);
      process.exit(1);
    }
  } else {
    writeFileSync(CHART_TEMPLATE, want);
    console.log(`wrote ${CHART_TEMPLATE}`);
  }
}
