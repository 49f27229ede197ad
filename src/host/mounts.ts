/**
 * Whether something is mounted at a path, and clean-up of a mount a killed
 * daemon left behind ("Transport endpoint is not connected"). The mount
 * table itself is read by src/csi/host/mount-table.ts.
 */
import { spawnSync } from 'node:child_process';

import { fail } from '../errors.js';
import { readMountTable } from './mount-table.js';

export function isMountPoint(dir: string): boolean {
  return readMountTable().some((m) => m.mountPoint === dir);
}

/** Detaches whatever is mounted at dir (lazily, so busy users do not block it). */
export function detach(dir: string): void {
  const r = spawnSync('umount', ['-l', dir], { encoding: 'utf8' });
  if (r.status !== 0) fail('EIO', `umount -l ${dir} failed: ${r.stderr.trim()}`);
}
