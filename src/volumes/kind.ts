/**
 * A volume's kind: what its chunk map holds. `block`: a raw disk served as a
 * block file. `fs`: a cowfs filesystem (src/cowfs), whose inodes live in
 * the volume's metadata tree and whose files' data in its map, served as a
 * FUSE mount of its own. Snapshots and clones keep their source's kind,
 * which the pool copies on fork.
 */
import { fail } from '../errors.js';

export const KINDS = ['block', 'fs'] as const;
export type VolumeKind = (typeof KINDS)[number];

/** A kind a caller asked for: refused with a clear message if unknown. */
export function parseKind(text: string): VolumeKind {
  const k = KINDS.find((x) => x === text);
  if (k === undefined) fail('EINVAL', `invalid volume kind '${text}': use ${KINDS.join(' or ')}`);
  return k;
}

/** A kind as the pool stored it; a record from a newer cowvol is reported, not guessed at. */
export function kindOf(stored: string): VolumeKind {
  const k = KINDS.find((x) => x === stored);
  if (k === undefined) fail('EINVAL', `volume kind '${stored}' is not known to this cowvol: upgrade it`);
  return k;
}
