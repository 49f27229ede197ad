/**
 * Which volume capabilities cowvol serves, and how each access mode is
 * enforced on this node.
 *
 * Every volume lives on one node. Modes that name several nodes
 * (MULTI_NODE_*) are accepted only when the request pins the volume to this
 * node through topology (see docs/csi.md); on the node they mean several
 * publishes sharing one staged device.
 */
import { isFsType } from '../host/filesystem.js';

/** The fs_type of a filesystem volume served as cowvol's own FUSE filesystem (src/cowfs). */
export const COWFS = 'cowfs';
import type { AccessModeName, VolumeCapability } from './proto.js';
import { CsiError, status } from './status.js';

export const MULTI_NODE_MODES: readonly AccessModeName[] = ['MULTI_NODE_READER_ONLY', 'MULTI_NODE_SINGLE_WRITER', 'MULTI_NODE_MULTI_WRITER'];
/** Modes whose every publish is read-only. */
export const READER_ONLY_MODES: readonly AccessModeName[] = ['SINGLE_NODE_READER_ONLY', 'MULTI_NODE_READER_ONLY'];

export interface Usage {
  block: boolean;
  fsType: string;
  mountFlags: string[];
  mode: AccessModeName;
}

/** Parses one capability, or says in the thrown INVALID_ARGUMENT what is unsupported. */
export function usageOf(cap: VolumeCapability | null | undefined, field = 'volume_capability'): Usage {
  if (!cap) throw new CsiError(status.INVALID_ARGUMENT, `${field} is required`);
  const mode = cap.accessMode?.mode ?? 'UNKNOWN';
  if (mode === 'UNKNOWN') throw new CsiError(status.INVALID_ARGUMENT, `${field}.access_mode is required`);
  if (cap.accessType === 'block') return { block: true, fsType: '', mountFlags: [], mode };
  if (cap.accessType === 'mount' && cap.mount) {
    const fsType = cap.mount.fsType === '' ? 'ext4' : cap.mount.fsType;
    if (!isFsType(fsType) && fsType !== COWFS) throw new CsiError(status.INVALID_ARGUMENT, `${field}: fs_type '${cap.mount.fsType}' is not supported; use ext4, xfs or cowfs`);
    if (fsType === COWFS && cap.mount.mountFlags.length > 0) throw new CsiError(status.INVALID_ARGUMENT, `${field}: cowfs takes no mount flags`);
    for (const flag of cap.mount.mountFlags) {
      if (flag === '' || /[\s,]/.test(flag)) throw new CsiError(status.INVALID_ARGUMENT, `${field}: mount flag '${flag}' must be one option without spaces or commas`);
    }
    if (cap.mount.volumeMountGroup !== '') throw new CsiError(status.INVALID_ARGUMENT, `${field}: volume_mount_group is not supported`);
    return { block: false, fsType, mountFlags: [...cap.mount.mountFlags], mode };
  }
  throw new CsiError(status.INVALID_ARGUMENT, `${field}: access_type must be block or mount`);
}

export function isReaderOnly(mode: AccessModeName): boolean {
  return READER_ONLY_MODES.includes(mode);
}

/**
 * Whether one more publish of a volume is allowed, given the publishes it
 * already has on this node (other target paths) and whether they are
 * read-only. Returns the reason when it is not.
 */
export function publishRefusal(mode: AccessModeName, readOnly: boolean, others: { readOnly: boolean }[]): string | null {
  switch (mode) {
    case 'SINGLE_NODE_SINGLE_WRITER':
      return others.length > 0 ? 'SINGLE_NODE_SINGLE_WRITER allows one publish and the volume is already published' : null;
    case 'SINGLE_NODE_READER_ONLY':
      if (!readOnly) return 'SINGLE_NODE_READER_ONLY volumes are published read-only';
      return others.length > 0 ? 'SINGLE_NODE_READER_ONLY allows one publish and the volume is already published' : null;
    case 'MULTI_NODE_READER_ONLY':
      return readOnly ? null : 'MULTI_NODE_READER_ONLY volumes are published read-only';
    case 'MULTI_NODE_SINGLE_WRITER':
      return !readOnly && others.some((o) => !o.readOnly) ? 'MULTI_NODE_SINGLE_WRITER allows one writable publish and there is one' : null;
    default:
      // SINGLE_NODE_WRITER, SINGLE_NODE_MULTI_WRITER, MULTI_NODE_MULTI_WRITER: share the staged device.
      return null;
  }
}
