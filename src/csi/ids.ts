/**
 * CSI names to pool names. A CSI name that is already a valid pool name
 * (kubernetes' "pvc-<uuid>", "snapshot-<uuid>") is used as it is, so
 * `cowvol volume list` shows what kubectl shows; any other name is hashed.
 * Either way the name itself is kept as a label, which is what idempotent
 * retries are matched on.
 *
 * Volume id = pool volume name. Snapshot id = "VOLUME@NAME". A group
 * snapshot's id is its name's pool form; its members are "VOLUME@GROUP".
 */
import { createHash } from 'node:crypto';

import { isValidName } from '../volumes/names.js';

export function poolNameFor(csiName: string): string {
  if (isValidName(csiName)) return csiName;
  return `csi-${createHash('sha256').update(csiName).digest('hex').slice(0, 40)}`;
}

export function snapshotIdFor(volume: string, csiName: string): string {
  return `${volume}@${poolNameFor(csiName)}`;
}

/** Checks a caller-given CSI name: present, at most 128 bytes, no control characters. */
export function nameProblem(name: string): string | null {
  if (name === '') return 'name is required';
  if (Buffer.byteLength(name) > 128) return 'name is longer than 128 bytes';
  if (/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/.test(name)) return 'name contains control characters';
  return null;
}
