/**
 * Naming rules. Volumes: `[a-z0-9][a-z0-9._-]{0,127}`. Snapshots:
 * `VOL@SNAP`, both halves volume names (the zfs and rbd convention). Volumes
 * and snapshots share one namespace in the pool.
 */
import { fail } from '../errors.js';

const NAME = /^[a-z0-9][a-z0-9._-]{0,127}$/;

export function isValidName(name: string): boolean {
  return NAME.test(name);
}

export function validateVolumeName(name: string): void {
  if (!isValidName(name)) {
    fail('EINVAL', `invalid volume name '${name}': use 1-128 of a-z 0-9 . _ - starting with a letter or digit`);
  }
}

export interface SnapshotName {
  volume: string;
  snapshot: string;
}

export function parseSnapshotName(full: string): SnapshotName {
  const at = full.indexOf('@');
  if (at < 0) fail('EINVAL', `invalid snapshot name '${full}': use VOLUME@SNAPSHOT`);
  const volume = full.slice(0, at);
  const snapshot = full.slice(at + 1);
  if (!isValidName(volume) || !isValidName(snapshot)) {
    fail('EINVAL', `invalid snapshot name '${full}': both sides of @ must be 1-128 of a-z 0-9 . _ - starting with a letter or digit`);
  }
  return { volume, snapshot };
}

export function isSnapshotName(name: string): boolean {
  return name.includes('@');
}
