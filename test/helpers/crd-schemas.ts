/**
 * JSON schemas for the CRDs that deploy/ uses, written from their
 * CustomResourceDefinitions: external-snapshotter's
 * (snapshot.storage.k8s.io/v1, groupsnapshot.storage.k8s.io/v1beta1) and the
 * Prometheus Operator's PodMonitor (monitoring.coreos.com/v1, the fields
 * deploy/monitoring uses). kubernetes-models covers the core API only.
 */
const metadata = {
  type: 'object',
  required: ['name'],
  properties: {
    name: { type: 'string', pattern: '^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$', maxLength: 253 },
    namespace: { type: 'string' },
    labels: { type: 'object', additionalProperties: { type: 'string' } },
    annotations: { type: 'object', additionalProperties: { type: 'string' } },
  },
  additionalProperties: false,
};

const snapshotClass = (apiVersion: string, kind: string): object => ({
  type: 'object',
  required: ['apiVersion', 'kind', 'metadata', 'driver', 'deletionPolicy'],
  properties: {
    apiVersion: { const: apiVersion },
    kind: { const: kind },
    metadata,
    driver: { type: 'string', minLength: 1 },
    deletionPolicy: { enum: ['Delete', 'Retain'] },
    parameters: { type: 'object', additionalProperties: { type: 'string' } },
  },
  additionalProperties: false,
});

const podMonitor = {
  type: 'object',
  required: ['apiVersion', 'kind', 'metadata', 'spec'],
  properties: {
    apiVersion: { const: 'monitoring.coreos.com/v1' },
    kind: { const: 'PodMonitor' },
    metadata,
    spec: {
      type: 'object',
      required: ['selector'],
      properties: {
        selector: { type: 'object', properties: { matchLabels: { type: 'object', additionalProperties: { type: 'string' } } }, additionalProperties: false },
        namespaceSelector: {
          type: 'object',
          properties: { any: { type: 'boolean' }, matchNames: { type: 'array', items: { type: 'string' } } },
          additionalProperties: false,
        },
        podMetricsEndpoints: {
          type: 'array',
          items: {
            type: 'object',
            properties: {
              port: { type: 'string' },
              path: { type: 'string' },
              interval: { type: 'string', pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$' },
              scheme: { enum: ['http', 'https'] },
            },
            additionalProperties: false,
          },
        },
      },
      additionalProperties: false,
    },
  },
  additionalProperties: false,
};

export const CRD_SCHEMAS: Record<string, object> = {
  'monitoring.coreos.com/v1/PodMonitor': podMonitor,
  'snapshot.storage.k8s.io/v1/VolumeSnapshotClass': snapshotClass('snapshot.storage.k8s.io/v1', 'VolumeSnapshotClass'),
  'groupsnapshot.storage.k8s.io/v1beta1/VolumeGroupSnapshotClass': snapshotClass('groupsnapshot.storage.k8s.io/v1beta1', 'VolumeGroupSnapshotClass'),
  'snapshot.storage.k8s.io/v1/VolumeSnapshot': {
    type: 'object',
    required: ['apiVersion', 'kind', 'metadata', 'spec'],
    properties: {
      apiVersion: { const: 'snapshot.storage.k8s.io/v1' },
      kind: { const: 'VolumeSnapshot' },
      metadata,
      spec: {
        type: 'object',
        required: ['source'],
        properties: {
          volumeSnapshotClassName: { type: 'string' },
          source: {
            type: 'object',
            properties: { persistentVolumeClaimName: { type: 'string' }, volumeSnapshotContentName: { type: 'string' } },
            additionalProperties: false,
            // exactly one of the two
            oneOf: [{ required: ['persistentVolumeClaimName'] }, { required: ['volumeSnapshotContentName'] }],
          },
        },
        additionalProperties: false,
      },
    },
    additionalProperties: false,
  },
};
