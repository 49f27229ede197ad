/**
 * Loop devices over the daemon's block files. Always with direct I/O, so the
 * kernel keeps no second page cache in front of FUSE (and fsync on the
 * device reaches the pool). A read-only loop device is how a read-only block
 * publish is enforced: a read-only bind mount of a device node does not stop
 * writes to the device.
 */
import fs from 'node:fs';
import path from 'node:path';

import { native } from '../native.js';
import { run } from './run.js';

const SYS_BLOCK = '/sys/block';

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

/**
 * The loop devices with a backing file, read from sysfs
 * (/sys/block/loopN/loop/backing_file, ro, dev): no child process, and safe
 * on the daemon's thread, since it never asks the file's filesystem
 * anything. `withBackingDevice` also asks the kernel where each file lives;
 * never do that in the daemon while its own mount is up: the kernel answers
 * by asking the file's FUSE server (a getattr) — the daemon's own thread,
 * which is busy waiting in the ioctl.
 */
export function listLoops(withBackingDevice = false): LoopDevice[] {
  const loops: LoopDevice[] = [];
  for (const entry of fs.readdirSync(SYS_BLOCK)) {
    if (!/^loop\d+$/.test(entry)) continue;
    const read = (f: string): string | null => {
      try {
        return fs.readFileSync(path.join(SYS_BLOCK, entry, f), 'utf8').trim();
      } catch {
        return null; // no file attached (no loop/ directory), or detached just now
      }
    };
    const backFile = read('loop/backing_file');
    const devNo = read('dev');
    if (backFile === null || backFile === '' || devNo === null) continue;
    const name = `/dev/${entry}`;
    loops.push({
      name,
      // A file whose mount went away shows with a " (deleted)" suffix.
      backFile: backFile.replace(/ \(deleted\)$/, ''),
      readOnly: read('ro') === '1',
      devNo,
      backDev: withBackingDevice ? backingDevice(name) : '',
    });
  }
  return loops.sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true }));
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
