/**
 * What the CSI services share: the open pool and its block files, who this
 * node is, the path policy, and the per-volume serialization of calls.
 */
import { isValidName } from '../blockstore/names.js';
import type { Pool, VolumeInfo } from '../blockstore/pool.js';
import { blockFilePath } from '../fuse/block-files.js';
import type { Logger } from '../daemon/log.js';
import type { PathPolicy } from './paths.js';
import type { VolumeCondition } from './proto.js';
import { CsiError, csiFail, status } from './status.js';

export const DEFAULT_DRIVER_NAME = 'cowvol.csi.dev';
export const TOPOLOGY_KEY = 'topology.cowvol.csi.dev/node';
export const VERSION = '0.1.0';
export const DEFAULT_KUBELET_DIR = '/var/lib/kubelet';
/** What NodeGetInfo reports; loop devices, not the pool, are the limit in practice. */
export const DEFAULT_MAX_VOLUMES = 256;

/** Labels cowvol keeps on volumes it made for CSI (see VolumeRecord.labels). */
export const LABEL = {
  name: 'csi.name',
  parameters: 'csi.parameters',
  source: 'csi.source',
  ephemeral: 'csi.ephemeral',
  group: 'csi.group',
  groupName: 'csi.group-name',
} as const;

export interface DriverContext {
  pool: Pool;
  /** EIO answers the block files gave for a volume (by pool id). */
  ioErrors(volumeId: number): number;
  /** Where the block files are mounted: MOUNT/block/NAME. */
  mount: string;
  nodeId: string;
  driverName: string;
  kubelet: PathPolicy;
  maxVolumesPerNode: number;
  /** Bytes free on the filesystem under the pool. */
  hostFree(): number;
  log: Logger;
}

export function blockFile(ctx: DriverContext, name: string): string {
  return blockFilePath(ctx.mount, name, false);
}

/** The pool volume a CSI volume id names: NOT_FOUND for an unknown id, and for a snapshot's. */
export function volumeById(pool: Pool, id: string): VolumeInfo {
  if (!isValidName(id) || !pool.has(id)) csiFail(status.NOT_FOUND, `no volume '${id}'`);
  const v = pool.stat(id);
  if (v.readOnly) csiFail(status.NOT_FOUND, `'${id}' is a snapshot, not a volume`);
  return v;
}

/** What the pool says of a volume: abnormal once the block files answered it EIO or EUCLEAN; null if nothing. */
export function poolCondition(ctx: DriverContext, v: VolumeInfo): VolumeCondition | null {
  const errors = ctx.ioErrors(v.id);
  return errors > 0 ? { abnormal: true, message: `${errors} I/O errors on volume '${v.name}' since the daemon started` } : null;
}

export function nodeTopology(ctx: DriverContext): { segments: Record<string, string> } {
  return { segments: { [TOPOLOGY_KEY]: ctx.nodeId } };
}

/**
 * One call at a time per volume (or per name being created). The CO should
 * not overlap calls on a volume; when it does (after a restart, say), the
 * second call gets ABORTED and retries, as the spec asks.
 */
export class InFlight {
  private readonly keys = new Set<string>();

  async run<T>(keys: string[], fn: () => Promise<T> | T): Promise<T> {
    for (const k of keys) {
      if (this.keys.has(k)) throw new CsiError(status.ABORTED, `an operation on '${k}' is already in progress`);
    }
    for (const k of keys) this.keys.add(k);
    try {
      return await fn();
    } finally {
      for (const k of keys) this.keys.delete(k);
    }
  }
}

/** "unix:///run/x.sock" or "unix:/run/x.sock" to the path; anything else is refused. */
export function socketPathOf(endpoint: string): string {
  const m = /^unix:(?:\/\/)?(\/.+)$/.exec(endpoint);
  if (!m || m[1] === undefined) throw new Error(`--csi-endpoint '${endpoint}' must be unix:///ABSOLUTE/PATH`);
  return m[1];
}

