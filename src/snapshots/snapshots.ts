/**
 * Snapshots and clones on top of the pool's one primitive, `fork`: a new
 * record that takes a reference on the source's tree root. Each operation is
 * one metadata transaction (fork commits before it returns).
 *
 * - A snapshot `VOL@SNAP` is read-only and remembers its volume's id.
 * - A clone is a writable volume forked from a volume or a snapshot,
 *   optionally larger. Cloning a live volume forks its current state, which
 *   is the implicit consistent point: every write that returned is in it.
 * - Delete in any order: refcounts keep shared chunks alive for whoever
 *   still holds them.
 */
import { fail } from '../errors.js';
import { isSnapshotName, parseSnapshotName, validateVolumeName } from '../blockstore/names.js';
import type { Pool, VolumeInfo } from '../blockstore/pool.js';

export function createSnapshot(pool: Pool, full: string): VolumeInfo {
  const { volume } = parseSnapshotName(full);
  const source = pool.volume(volume);
  if (source.readOnly) fail('EINVAL', `'${volume}' is a snapshot; snapshots are taken of volumes`);
  return pool.fork(volume, full, { readOnly: true, parentId: source.id, origin: volume });
}

export function deleteSnapshot(pool: Pool, full: string): void {
  parseSnapshotName(full);
  const snap = pool.volume(full);
  if (!snap.readOnly) fail('EINVAL', `'${full}' is not a snapshot`);
  pool.remove(full);
}

/** Snapshots, all or of one volume name (including those whose volume was deleted). */
export function listSnapshots(pool: Pool, volume?: string): VolumeInfo[] {
  if (volume !== undefined) {
    validateVolumeName(volume);
    if (!pool.has(volume) && !pool.list().some((v) => v.name.startsWith(`${volume}@`))) {
      fail('ENOENT', `no volume named '${volume}'`);
    }
  }
  return pool.list().filter((v) => v.readOnly && (volume === undefined || v.name.startsWith(`${volume}@`)));
}

export function cloneVolume(pool: Pool, source: string, name: string, size?: number): VolumeInfo {
  validateVolumeName(name);
  if (isSnapshotName(source)) parseSnapshotName(source);
  else validateVolumeName(source);
  return pool.fork(source, name, { readOnly: false, size, origin: source });
}

export function deleteVolume(pool: Pool, name: string): void {
  validateVolumeName(name);
  const v = pool.volume(name);
  if (v.readOnly) fail('EINVAL', `'${name}' is a snapshot: use 'cowvol snapshot delete'`);
  pool.remove(name);
}

/** Snapshots whose volume is `id` (by id, so a later volume of the same name is not confused). */
export function snapshotCount(pool: Pool, id: number): number {
  return pool.list().filter((v) => v.readOnly && v.parentId === id).length;
}
