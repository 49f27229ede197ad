/**
 * What the CSI services share: the open pool and its block files, who this
 * node is, the path policy, and the per-volume serialization of calls.
 */
import fsp from 'node:fs/promises';
import type { MountService } from '../fuse/cowfs-mount.js';
import { fail } from '../errors.js';
import type { VolumeView, Volumes } from '../volumes/volumes.js';
import { blockFilePath } from '../fuse/block-files.js';
import type { Logger } from '../log.js';
import type { PathPolicy } from './paths.js';
import type { VolumeCondition } from './proto.js';
import { CsiError, status } from './status.js';

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
  /** The CSI name of a group snapshot (its members carry the service's group label as well). */
  groupName: 'csi.group-name',
} as const;

/**
 * The PVC a volume was provisioned for, from the parameters the provisioner
 * added (--extra-create-metadata), which cowvol keeps in the volume's labels;
 * null for volumes CSI did not create or created without them.
 */
export function claimOf(labels: Record<string, string>): { namespace: string; name: string } | null {
  const raw = labels[LABEL.parameters];
  if (raw === undefined) return null;
  try {
    const params = JSON.parse(raw) as Record<string, unknown>;
    const namespace = params['csi.storage.k8s.io/pvc/namespace'];
    const name = params['csi.storage.k8s.io/pvc/name'];
    return typeof namespace === 'string' && typeof name === 'string' ? { namespace, name } : null;
  } catch {
    return null;
  }
}

export interface DriverContext {
  /** The volume service: every volume rule CSI relies on lives there. */
  volumes: Volumes;
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
  /** Told of every call when it is answered: the method, the gRPC code's name ("OK" on success), and its seconds. */
  observe?(method: string, code: string, seconds: number): void;
  /** The daemon's cowfs mounts: a cowfs volume is staged as one. */
  mounts?: MountService;
}

export function blockFile(ctx: DriverContext, name: string): string {
  return blockFilePath(ctx.mount, name, false);
}

/** What the pool says of a volume: abnormal once the block files answered it EIO or EUCLEAN; null if nothing. */
export function poolCondition(ctx: DriverContext, v: VolumeView): VolumeCondition | null {
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
  if (!m || m[1] === undefined) fail('EINVAL', `--csi-endpoint '${endpoint}' must be unix:///ABSOLUTE/PATH`);
  return m[1];
}


/** NodeGetVolumeStats' usage of a mounted filesystem: bytes and inodes from statfs (asynchronous: it may be our own mount). */
export async function filesystemUsage(where: string): Promise<object[]> {
  const st = await fsp.statfs(where);
  return [
    { unit: 'BYTES', total: st.blocks * st.bsize, available: st.bavail * st.bsize, used: (st.blocks - st.bfree) * st.bsize },
    { unit: 'INODES', total: st.files, available: st.ffree, used: st.files - st.ffree },
  ];
}
