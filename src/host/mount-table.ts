/**
 * /proc/self/mountinfo as records. The mount table is where node state
 * lives: after a daemon restart, stages and publishes are found here (and in
 * the loop device list), not in a file of our own that could disagree.
 */
import fs from 'node:fs';

export interface MountEntry {
  id: number;
  /** "major:minor" of the mounted device. */
  devNo: string;
  /** The path inside the mounted filesystem; "/loop3" for a bind-mounted device node. */
  root: string;
  mountPoint: string;
  readOnly: boolean;
  fsType: string;
  source: string;
}

function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export function readMountTable(): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    if (line === '') continue;
    const f = line.split(' ');
    const dash = f.indexOf('-');
    if (dash < 6) continue;
    entries.push({
      id: Number(f[0]),
      devNo: f[2] ?? '',
      root: unescape(f[3] ?? ''),
      mountPoint: unescape(f[4] ?? ''),
      readOnly: (f[5] ?? '').split(',').includes('ro'),
      fsType: f[dash + 1] ?? '',
      source: unescape(f[dash + 2] ?? ''),
    });
  }
  return entries;
}

/** The mounts that show this loop device: filesystems on it, or binds of its device node. */
export function mountsOfLoop(table: MountEntry[], loop: { name: string; devNo: string }): MountEntry[] {
  const node = `/${loop.name.replace(/^\/dev\//, '')}`;
  return table.filter((m) => m.devNo === loop.devNo || (m.root === node && m.fsType === 'devtmpfs'));
}

export function mountAt(table: MountEntry[], mountPoint: string): MountEntry | undefined {
  // The last entry wins: later mounts cover earlier ones at the same point.
  let found: MountEntry | undefined;
  for (const m of table) if (m.mountPoint === mountPoint) found = m;
  return found;
}
