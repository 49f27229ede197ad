/**
 * The kernel's FUSE control filesystem (/sys/fs/fuse/connections/N), used
 * by the daemon for one thing: aborting our own connection at shutdown when
 * loop devices still hold it open, so the serving threads end instead of
 * waiting forever (tests also read a connection's `waiting` count).
 * N is the minor number of the mount's device.
 */
import fs from 'node:fs';
import { spawnSync } from 'node:child_process';

import { fail } from '../errors.js';
import { type MountEntry, mountAt, readMountTable } from './mount-table.js';

const CONTROL = '/sys/fs/fuse/connections';

/**
 * From the mount table, never from stat(2) on the mount: the daemon's own
 * thread would wait on a request that only it can answer.
 */
export function fuseConnectionOf(mount: string): number {
  const entry = mountAt(readMountTable(), mount);
  if (!entry) fail('EIO', `${mount} is not mounted`);
  return connectionOfEntry(entry);
}

/** The connection of a FUSE mount the caller already found in the mount table. */
export function connectionOfEntry(entry: MountEntry): number {
  return Number(entry.devNo.split(':')[1]);
}

/** The connection's control directory (abort, waiting, limits), with the control filesystem mounted if it was not. */
export function fuseControlDir(connection: number): string {
  const dir = `${CONTROL}/${connection}`;
  if (!fs.existsSync(dir)) {
    // Not mounted on this host yet: mount it (harmless if another mounts it too).
    spawnSync('mount', ['-t', 'fusectl', 'fusectl', CONTROL]);
  }
  return dir;
}

export function abortFuseConnection(connection: number): boolean {
  try {
    fs.writeFileSync(`${fuseControlDir(connection)}/abort`, '1');
    return true;
  } catch {
    return false;
  }
}
