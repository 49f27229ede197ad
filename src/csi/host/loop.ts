/**
 * Loop devices over the daemon's block files. Always with direct I/O, so the
 * kernel keeps no second page cache in front of FUSE (and fsync on the
 * device reaches the pool). A read-only loop device is how a read-only block
 * publish is enforced: a read-only bind mount of a device node does not stop
 * writes to the device.
 */
import fs from 'node:fs';

import { native } from '../../native.js';
import { run } from './run.js';

export interface LoopDevice {
  /** /dev/loopN */
  name: string;
  backFile: string;
  readOnly: boolean;
  /** "major:minor", as in mountinfo. */
  devNo: string;
  /**
   * "major:minor" of the filesystem the backing file is on ('' unless asked
   * for), or DISCONNECTED when that was a FUSE mount whose server died (the
   * kernel cannot even stat the file then).
   */
  backDev: string;
}

interface LosetupRow {
  name: string;
  'back-file': string | null;
  ro: boolean | string | number;
}

/**
 * The loop devices with a backing file. `withBackingDevice` also asks the
 * kernel where each file lives; never do that in the daemon while its own
 * mount is up: the kernel answers by asking the file's FUSE server (a
 * getattr) — the daemon's own thread, which is busy waiting in the ioctl.
 */
export async function listLoops(withBackingDevice = false): Promise<LoopDevice[]> {
  const out = await run('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE,RO']);
  if (out.trim() === '') return [];
  const rows = (JSON.parse(out) as { loopdevices: LosetupRow[] }).loopdevices;
  const loops: LoopDevice[] = [];
  for (const r of rows) {
    if (r['back-file'] === null) continue;
    let devNo = '';
    try {
      const rdev = fs.statSync(r.name).rdev;
      devNo = `${Math.floor(rdev / 256) & 0xfff}:${(rdev & 0xff) | ((rdev >> 12) & 0xfff00)}`;
    } catch {
      continue; // detached between the listing and now
    }
    loops.push({
      name: r.name,
      // A file whose mount went away shows with a " (deleted)" suffix.
      backFile: r['back-file'].replace(/ \(deleted\)$/, ''),
      readOnly: r.ro === true || r.ro === '1' || r.ro === 1,
      devNo,
      // losetup leaves BACK-MAJ:MIN empty for files on FUSE; the kernel knows.
      backDev: withBackingDevice ? backingDevice(r.name) : '',
    });
  }
  return loops;
}

/** Marks a loop device whose backing file sits on a FUSE mount whose server is gone. */
export const DISCONNECTED = 'disconnected';

function backingDevice(device: string): string {
  try {
    return native.loopBackingDevice(device);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOTCONN') return DISCONNECTED;
    return ''; // detached since the listing
  }
}

export async function attachLoop(file: string, readOnly: boolean): Promise<string> {
  const args = ['--find', '--show', '--direct-io=on'];
  if (readOnly) args.push('--read-only');
  args.push(file);
  return (await run('losetup', args)).trim();
}

export async function detachLoop(device: string): Promise<void> {
  await run('losetup', ['--detach', device]);
}

/** Makes the device pick up a grown backing file. */
export async function refreshLoop(device: string): Promise<void> {
  await run('losetup', ['--set-capacity', device]);
}
