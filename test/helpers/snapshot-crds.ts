/**
 * JSON schemas for the external-snapshotter CRDs that deploy/ uses, written
 * from their CustomResourceDefinitions (snapshot.storage.k8s.io/v1,
 * groupsnapshot.storage.k8s.io/v1beta1). kubernetes-models covers the core
 * API only; these cover the fields and constraints those CRDs declare.
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

export const SNAPSHOT_SCHEMAS: Record<string, object> = {
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
