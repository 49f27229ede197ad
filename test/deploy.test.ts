/**
 * deploy/: every manifest parses, validates against the Kubernetes API
 * schemas (kubernetes-models for the core API, the snapshot CRDs' schemas
 * for the rest), and agrees with the driver: its name, the socket the
 * sidecars and kubelet use, the flags `cowvol serve` takes, the service
 * account the RBAC binds.
 */
import { usageOf } from '../src/csi/capabilities.js';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { Ajv } from 'ajv';
import t from 'tap';
import { parseAllDocuments } from 'yaml';

import { SERVE_FLAGS } from '../src/cli/main.js';
import { DEFAULT_DRIVER_NAME } from '../src/csi/driver.js';
import { CRD_SCHEMAS } from './helpers/crd-schemas.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const deployDir = path.join(root, 'deploy');

interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; annotations?: Record<string, string> };
  [k: string]: unknown;
}

function yamlFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? yamlFiles(path.join(dir, e.name)) : e.name.endsWith('.yaml') ? [path.join(dir, e.name)] : []));
}

function load(file: string): Manifest[] {
  return parseAllDocuments(fs.readFileSync(file, 'utf8')).map((doc) => {
    if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0]?.message}`);
    return doc.toJS() as Manifest;
  });
}

interface Validatable {
  validate(): void;
}
type ModelClass = new (data: object) => Validatable;

/** The kubernetes-models class for a core kind: kubernetes-models/<group>/<version>/<Kind>. */
async function modelFor(apiVersion: string, kind: string): Promise<ModelClass | null> {
  try {
    const mod = (await import(`kubernetes-models/${apiVersion}/${kind}`)) as Record<string, ModelClass>;
    return mod[kind] ?? null;
  } catch {
    return null;
  }
}

const all = yamlFiles(deployDir).flatMap((file) => load(file).map((m) => ({ file: path.relative(root, file), m })));
const find = (kind: string, name?: string): Manifest[] => all.map((x) => x.m).filter((m) => m.kind === kind && (name === undefined || m.metadata.name === name));

t.test('every manifest validates against its API schema', async (t) => {
  t.ok(all.length >= 12, `found ${all.length} manifests`);
  const ajv = new Ajv({ allErrors: true, strictRequired: false });
  for (const { file, m } of all) {
    const what = `${file}: ${m.kind} ${m.metadata?.name}`;
    const crd = CRD_SCHEMAS[`${m.apiVersion}/${m.kind}`];
    if (crd !== undefined) {
      const validate = ajv.compile(crd);
      t.ok(validate(m), `${what} (CRD schema) ${ajv.errorsText(validate.errors)}`);
      continue;
    }
    const Model = await modelFor(m.apiVersion, m.kind);
    if (Model === null) {
      t.fail(`${what}: no schema for ${m.apiVersion} ${m.kind}`);
      continue;
    }
    t.doesNotThrow(() => new Model(m).validate(), `${what} (kubernetes-models)`);
  }
  // The schemas are not blind: a broken manifest fails them.
  const Driver = await modelFor('storage.k8s.io/v1', 'CSIDriver');
  t.throws(() => new (Driver as ModelClass)({ apiVersion: 'storage.k8s.io/v1', kind: 'CSIDriver', metadata: { name: 'x' }, spec: { attachRequired: 'no' } }).validate(), 'a wrong type is caught');
  const cls = ajv.compile(CRD_SCHEMAS['snapshot.storage.k8s.io/v1/VolumeSnapshotClass'] ?? {});
  t.notOk(cls({ apiVersion: 'snapshot.storage.k8s.io/v1', kind: 'VolumeSnapshotClass', metadata: { name: 'x' }, driver: 'd', deletionPolicy: 'Keep' }), 'a bad deletionPolicy is caught');
});

t.test('the manifests agree with the driver and with each other', async (t) => {
  const driver = find('CSIDriver')[0] as Manifest & { spec: { attachRequired: boolean; podInfoOnMount: boolean; volumeLifecycleModes: string[]; fsGroupPolicy: string } };
  t.equal(driver.metadata.name, DEFAULT_DRIVER_NAME);
  t.equal(driver.spec.attachRequired, false, 'no attach step');
  t.equal(driver.spec.podInfoOnMount, true);
  t.same(driver.spec.volumeLifecycleModes, ['Persistent', 'Ephemeral']);
  t.ok(driver.spec.fsGroupPolicy !== undefined, 'fsGroupPolicy is set');

  const classes = find('StorageClass') as (Manifest & { provisioner: string; volumeBindingMode: string; allowVolumeExpansion: boolean })[];
  const defaults = classes.filter((c) => c.metadata.annotations?.['storageclass.kubernetes.io/is-default-class'] === 'true');
  t.equal(defaults.length, 1, 'exactly one default StorageClass');
  for (const c of classes) {
    t.equal(c.provisioner, DEFAULT_DRIVER_NAME, `${c.metadata.name}: provisioned by cowvol`);
    t.equal(c.volumeBindingMode, 'WaitForFirstConsumer', `${c.metadata.name}: bound where the pod lands`);
    t.equal(c.allowVolumeExpansion, true, `${c.metadata.name}: expandable`);
  }
  t.ok(classes.some((c) => c.metadata.name.includes('block')), 'a class for block claims');
  // Every fstype a class names is one CreateVolume accepts.
  for (const c of classes) {
    const fsType = (c as Manifest & { parameters?: Record<string, string> }).parameters?.['csi.storage.k8s.io/fstype'];
    if (fsType !== undefined) t.doesNotThrow(() => usageOf({ accessType: 'mount', mount: { fsType, mountFlags: [], volumeMountGroup: '' }, accessMode: { mode: 'SINGLE_NODE_WRITER' } }), `${c.metadata.name}: fstype ${fsType} is accepted`);
  }
  t.ok(classes.some((c) => (c as Manifest & { parameters?: Record<string, string> }).parameters?.['csi.storage.k8s.io/fstype'] === 'cowfs'), 'a class for cowfs claims');
  for (const kind of ['VolumeSnapshotClass', 'VolumeGroupSnapshotClass']) {
    const c = find(kind)[0] as (Manifest & { driver: string }) | undefined;
    t.equal(c?.driver, DEFAULT_DRIVER_NAME, `${kind} names the driver`);
  }

  type PodOwner = Manifest & { spec: { template: { spec: { serviceAccountName: string; containers: Container[]; volumes: { name: string; hostPath?: { path: string } }[] } } } };
  type Container = {
    name: string;
    image?: string;
    args?: string[];
    env?: { name: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
    volumeMounts?: { name: string; mountPath: string; mountPropagation?: string }[];
  };
  const ds = find('DaemonSet', 'cowvol-node')[0] as PodOwner;
  const pod = ds.spec.template.spec;
  const names = pod.containers.map((c) => c.name);
  for (const sidecar of ['cowvol', 'node-driver-registrar', 'csi-provisioner', 'csi-snapshotter', 'csi-resizer', 'liveness-probe']) t.ok(names.includes(sidecar), `container ${sidecar}`);
  const cowvol = pod.containers.find((c) => c.name === 'cowvol') as Container;
  const args = cowvol.args ?? [];
  t.equal(args[0], 'serve');
  for (const a of args.slice(1)) {
    const flag = /^--([a-z-]+)=/.exec(a)?.[1] ?? '';
    t.ok((SERVE_FLAGS as readonly string[]).includes(flag), `'cowvol serve' takes ${a}`);
  }
  const endpoint = args.find((a) => a.startsWith('--csi-endpoint='))?.slice('--csi-endpoint='.length) ?? '';
  const socket = endpoint.replace(/^unix:\/\//, '');
  const socketDir = path.dirname(socket);
  for (const c of pod.containers) {
    const mount = c.volumeMounts?.find((v) => v.mountPath === socketDir);
    t.ok(mount !== undefined && mount.name === 'socket-dir', `${c.name} sees the CSI socket directory`);
    const addr = c.args?.find((a) => a.startsWith('--csi-address='));
    if (c.name !== 'cowvol') t.equal(addr, `--csi-address=${socket}`, `${c.name} dials the daemon's socket`);
  }
  const registrar = pod.containers.find((c) => c.name === 'node-driver-registrar') as Container;
  const hostSocket = registrar.args?.find((a) => a.startsWith('--kubelet-registration-path='))?.split('=')[1] ?? '';
  const socketVolume = pod.volumes.find((v) => v.name === 'socket-dir');
  t.equal(path.dirname(hostSocket), socketVolume?.hostPath?.path, 'kubelet finds the socket where the pod puts it');
  t.ok(hostSocket.includes(DEFAULT_DRIVER_NAME), 'under plugins/<driver name>');
  const kubeletMount = cowvol.volumeMounts?.find((v) => v.mountPath === '/var/lib/kubelet');
  t.equal(kubeletMount?.mountPropagation, 'Bidirectional', 'mounts made by cowvol reach kubelet and the pods');
  const provisioner = pod.containers.find((c) => c.name === 'csi-provisioner') as Container;
  t.ok(provisioner.args?.includes('--node-deployment=true'), 'each node provisions its own claims');
  const snapshotter = pod.containers.find((c) => c.name === 'csi-snapshotter') as Container;
  t.ok(snapshotter.args?.includes('--node-deployment=true'), 'each node snapshots its own volumes');
  t.ok(snapshotter.env?.some((e) => e.name === 'NODE_NAME' && e.valueFrom?.fieldRef?.fieldPath === 'spec.nodeName'), 'and knows which node it is');
  const resizer = pod.containers.find((c) => c.name === 'csi-resizer') as Container;
  t.ok(resizer.args?.includes('--leader-election=true'), 'one resizer marks claims grown; kubelet grows them on their node (NodeExpandVolume)');

  const sa = find('ServiceAccount')[0] as Manifest;
  t.equal(pod.serviceAccountName, sa.metadata.name, 'the DaemonSet runs as the service account');
  t.equal(ds.metadata.namespace, sa.metadata.namespace);
  const binding = find('ClusterRoleBinding')[0] as Manifest & { subjects: { name: string; namespace: string }[]; roleRef: { name: string } };
  t.same(binding.subjects.map((s) => [s.name, s.namespace]), [[sa.metadata.name, sa.metadata.namespace]], 'the binding names that account');
  t.equal(find('ClusterRole', binding.roleRef.name).length, 1, 'and a role that exists');
  t.equal(find('Namespace', sa.metadata.namespace ?? '').length, 1, 'the namespace is created too');

  // Prometheus finds the daemon's /metrics: the PodMonitor picks these pods and a port they serve it on.
  const monitor = find('PodMonitor')[0] as (Manifest & { spec: { selector: { matchLabels: Record<string, string> }; podMetricsEndpoints: { port: string; path: string }[] } }) | undefined;
  const podLabels = (ds.spec.template as unknown as { metadata: { labels: Record<string, string> } }).metadata.labels;
  t.ok(Object.entries(monitor?.spec.selector.matchLabels ?? { none: '' }).every(([k, v]) => podLabels[k] === v), 'the PodMonitor selects the cowvol pods');
  const metricsPort = (cowvol as Container & { ports?: { name: string; containerPort: number }[] }).ports?.find((p) => p.name === monitor?.spec.podMetricsEndpoints[0]?.port);
  const metricsFlag = args.find((a) => a.startsWith('--metrics-address='));
  t.equal(metricsFlag, `--metrics-address=0.0.0.0:${metricsPort?.containerPort}`, 'the daemon listens on the port the PodMonitor scrapes');
  t.equal(monitor?.spec.podMetricsEndpoints[0]?.path, '/metrics');
  t.equal(monitor?.metadata.namespace, ds.metadata.namespace);

  // The production layout: the daemon is a host service, the DaemonSet only runs the same sidecars.
  const host = find('DaemonSet', 'cowvol-sidecars')[0] as PodOwner | undefined;
  t.ok(host, 'deploy/node-service has the sidecar-only DaemonSet');
  const hostPod = (host as PodOwner).spec.template.spec;
  t.notOk(hostPod.containers.some((c) => c.name === 'cowvol'), 'no daemon container: the host service is the daemon');
  for (const c of hostPod.containers) {
    const twin = pod.containers.find((x) => x.name === c.name);
    t.same([c.image, c.args], [twin?.image, twin?.args], `${c.name}: the same image and flags as in the all-in-one layout`);
  }
  t.equal(hostPod.serviceAccountName, pod.serviceAccountName, 'the same service account');
  const hostSocketDir = hostPod.volumes.find((v) => v.name === 'socket-dir')?.hostPath?.path;
  t.equal(hostSocketDir, path.dirname(hostSocket), 'the sidecars dial the socket kubelet is told of');
  const envFile = fs.readFileSync(path.join(root, 'systemd', 'cowvol.default'), 'utf8');
  t.ok(envFile.includes(`--csi-endpoint unix://${hostSocket}`), 'the host service is told to listen there (systemd/cowvol.default)');
});
