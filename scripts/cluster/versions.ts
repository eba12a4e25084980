/**
 * Pinned versions of the binaries the local control plane and the chart tests use. Each group is built
 * from a wrapper Go module in `go/<module>` whose go.mod/go.sum pin every dependency; changing a version
 * here means changing that go.mod too (`go get -tool <pkg>@<version>` in its folder).
 */
export const KUBERNETES_VERSION = 'v1.37.2';
export const ETCD_VERSION = 'v3.6.16';
export const KWOK_VERSION = 'v0.8.0';
export const HELM_VERSION = 'v3.22.0';

export interface ToolGroup {
  /** Folder under scripts/cluster/go holding the wrapper module. */
  readonly module: string;
  readonly version: string;
  /** Binary name → Go main package. */
  readonly binaries: Readonly<Record<string, string>>;
  /** `-X` assignments, so the binaries report their real version (clients and feature gates read it). */
  readonly versionVars: Readonly<Record<string, string>>;
}

const [kubeMajor, kubeMinor] = KUBERNETES_VERSION.slice(1).split('.');

export const TOOL_GROUPS: readonly ToolGroup[] = [
  {
    module: 'etcd',
    version: ETCD_VERSION,
    binaries: { etcd: 'go.etcd.io/etcd/server/v3' },
    versionVars: {},
  },
  {
    module: 'kubernetes',
    version: KUBERNETES_VERSION,
    binaries: {
      'kube-apiserver': 'k8s.io/kubernetes/cmd/kube-apiserver',
      'kube-controller-manager': 'k8s.io/kubernetes/cmd/kube-controller-manager',
      'kube-scheduler': 'k8s.io/kubernetes/cmd/kube-scheduler',
      kubectl: 'k8s.io/kubernetes/cmd/kubectl',
    },
    versionVars: Object.fromEntries(
      ['k8s.io/component-base/version', 'k8s.io/client-go/pkg/version'].flatMap((pkg) => [
        [`${pkg}.gitVersion`, KUBERNETES_VERSION],
        [`${pkg}.gitMajor`, kubeMajor ?? ''],
        [`${pkg}.gitMinor`, kubeMinor ?? ''],
        [`${pkg}.gitTreeState`, 'clean'],
      ]),
    ),
  },
  {
    module: 'kwok',
    version: KWOK_VERSION,
    binaries: { kwok: 'sigs.k8s.io/kwok/cmd/kwok' },
    versionVars: {},
  },
  {
    module: 'helm',
    version: HELM_VERSION,
    binaries: { helm: 'helm.sh/helm/v3/cmd/helm' },
    versionVars: { 'helm.sh/helm/v3/internal/version.version': HELM_VERSION },
  },
];
