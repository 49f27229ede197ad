/**
 * Loop devices over the daemon's block files. Always with direct I/O, so the
 * kernel keeps no second page cache in front of FUSE (and fsync on the
 * device reaches the pool). A read-only loop device is how a read-only block
 * publish is enforced: a read-only bind mount of a device node does not stop
 * writes to the device.
 */
import fs from 'node:fs';

import { run } from './run.js';

export interface LoopDevice {
  /** /dev/loopN */
  name: string;
  backFile: string;
  readOnly: boolean;
  /** "major:minor", as in mountinfo. */
  devNo: string;
}

interface LosetupRow {
  name: string;
  'back-file': string | null;
  ro: boolean | string | number;
}

export async function listLoops(): Promise<LoopDevice[]> {
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
    });
  }
  return loops;
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
