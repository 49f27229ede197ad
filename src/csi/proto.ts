/**
 * Loads csi.proto for @grpc/grpc-js and names the message shapes cowvol
 * reads and writes. Loader options: field names in camelCase, int64 as JS
 * numbers (sizes stay far below 2^53), enums as their names, unset fields
 * filled with defaults, and a string naming the member set for each oneof.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** The .proto sits in src/; this module runs from src/ (tsx) or dist/src/ (tsc). */
function protoPath(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const root = here.includes(`${path.sep}dist${path.sep}`) ? path.resolve(here, '../../..') : path.resolve(here, '../..');
  return path.join(root, 'src', 'csi', 'csi.proto');
}

export const LOADER_OPTIONS: protoLoader.Options = { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true };

export interface CsiServices {
  Identity: grpc.ServiceClientConstructor;
  Controller: grpc.ServiceClientConstructor;
  GroupController: grpc.ServiceClientConstructor;
  Node: grpc.ServiceClientConstructor;
}

export function loadCsi(): CsiServices {
  const def = protoLoader.loadSync(protoPath(), LOADER_OPTIONS);
  const root = grpc.loadPackageDefinition(def) as unknown as { csi: { v1: CsiServices } };
  return root.csi.v1;
}

export type AccessModeName =
  | 'UNKNOWN'
  | 'SINGLE_NODE_WRITER'
  | 'SINGLE_NODE_READER_ONLY'
  | 'MULTI_NODE_READER_ONLY'
  | 'MULTI_NODE_SINGLE_WRITER'
  | 'MULTI_NODE_MULTI_WRITER'
  | 'SINGLE_NODE_SINGLE_WRITER'
  | 'SINGLE_NODE_MULTI_WRITER';

export interface VolumeCapability {
  block?: Record<string, never> | null;
  mount?: { fsType: string; mountFlags: string[]; volumeMountGroup: string } | null;
  accessType?: 'block' | 'mount';
  accessMode?: { mode: AccessModeName } | null;
}

export interface CapacityRange {
  requiredBytes: number;
  limitBytes: number;
}

export interface Topology {
  segments: Record<string, string>;
}

export interface TopologyRequirement {
  requisite: Topology[];
  preferred: Topology[];
}

export interface ContentSource {
  snapshot?: { snapshotId: string } | null;
  volume?: { volumeId: string } | null;
  type?: 'snapshot' | 'volume';
}

export interface CsiVolume {
  capacityBytes: number;
  volumeId: string;
  volumeContext: Record<string, string>;
  contentSource: ContentSource | null;
  accessibleTopology: Topology[];
}

export interface Timestamp {
  seconds: number;
  nanos: number;
}

export interface CsiSnapshot {
  sizeBytes: number;
  snapshotId: string;
  sourceVolumeId: string;
  creationTime: Timestamp;
  readyToUse: boolean;
  groupSnapshotId: string;
}

export interface VolumeCondition {
  abnormal: boolean;
  message: string;
}

export interface CreateVolumeRequest {
  name: string;
  capacityRange: CapacityRange | null;
  volumeCapabilities: VolumeCapability[];
  parameters: Record<string, string>;
  volumeContentSource: ContentSource | null;
  accessibilityRequirements: TopologyRequirement | null;
  mutableParameters: Record<string, string>;
}

export interface NodeStageVolumeRequest {
  volumeId: string;
  stagingTargetPath: string;
  volumeCapability: VolumeCapability | null;
  volumeContext: Record<string, string>;
}

export interface NodePublishVolumeRequest {
  volumeId: string;
  stagingTargetPath: string;
  targetPath: string;
  volumeCapability: VolumeCapability | null;
  readonly: boolean;
  volumeContext: Record<string, string>;
}

export function timestamp(ms: number): Timestamp {
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
}
