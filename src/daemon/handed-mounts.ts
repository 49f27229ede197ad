/**
 * The cowfs mounts a stopping daemon hands to the next one, as they travel
 * between daemons: through the keeper (keeper.ts) or systemd's fd store
 * (fd-store.ts), beside the block files' connection. They go as fds, in
 * order: first a memfd holding a JSON record, then one /dev/fuse
 * connection per record entry. Each entry names the mount (source, dir,
 * read-only), the kernel's INIT request for the connection, and the open
 * counts the stopping daemon served it with, so the next daemon keeps an
 * unlinked file alive until the kernel's last RELEASE for it.
 *
 * A serving daemon also keeps its holder up to date with every cowfs
 * mount it serves (`liveFds`: the record, then the open counts memfd,
 * then the connections), so that after a kill -9 the next daemon replays
 * the journal and takes them over too. Such a record names each mount's
 * region of the open counts (open-counts.ts) instead of the counts.
 */
import fs from 'node:fs';

import type { Detached, MountView } from '../fuse/cowfs-mount.js';
import type { Handover } from '../fuse/session.js';
import { native } from '../native.js';
import { readOpenRegion } from './open-counts.js';

/** Most cowfs connections one stop hands over (the keeper's fd bound, native/src/fd_passing.h, leaves room for the block files' two and the record); the rest are unmounted and mounted again. */
export const HANDED_MOUNTS_MAX = 128;

/** A cowfs mount on its way to the next daemon: what its detach left, and where it is mounted. */
export interface HandedMount extends Detached {
  view: MountView;
}

interface Entry {
  source: string;
  dir: string;
  readOnly: boolean;
  init: string;
  opens: [number, number][];
  /** A serving daemon's record: the mount's region of the open counts, which come as the fd after the record. */
  region?: number;
}

/** A mount a serving daemon keeps its holder up to date with: its connection (a duplicate) and its open counts' region. */
export interface LiveMount {
  view: MountView;
  handover: Handover;
  region: number;
}

/** The fds that carry `mounts`: a new record memfd, then each connection (the caller's, not duplicated). The caller closes the memfd. */
export function handedFds(mounts: readonly HandedMount[]): number[] {
  if (mounts.length === 0) return [];
  const record: Entry[] = mounts.map((m) => ({ ...m.view, init: m.handover.init.toString('base64'), opens: m.opens }));
  return [native.memfdWith(Buffer.from(JSON.stringify(record))), ...mounts.map((m) => m.handover.fd)];
}

/** The fds that carry `mounts` for a successor after a kill: a new record memfd, the open counts, then each connection (the caller's). The caller closes the memfd. */
export function liveFds(mounts: readonly LiveMount[], opensFd: number): number[] {
  if (mounts.length === 0) return [];
  const record: Entry[] = mounts.map((m) => ({ ...m.view, init: m.handover.init.toString('base64'), opens: [], region: m.region }));
  return [native.memfdWith(Buffer.from(JSON.stringify(record))), opensFd, ...mounts.map((m) => m.handover.fd)];
}

/**
 * The mounts that fds (a record memfd, then connections) carry. Every fd is
 * used or closed: a damaged record closes them all, and the next daemon
 * mounts those filesystems afresh. `onDamage` hears why.
 */
export function mountsFromFds(fds: readonly number[], onDamage: (why: string) => void = () => {}): HandedMount[] {
  const [record, ...rest] = fds;
  if (record === undefined) return [];
  let opensFd: number | undefined;
  let connections = rest;
  try {
    const bytes = Buffer.alloc(fs.fstatSync(record).size);
    fs.readSync(record, bytes, 0, bytes.length, 0);
    const entries = JSON.parse(bytes.toString('utf8')) as unknown;
    if (!Array.isArray(entries) || !entries.every(isEntry)) throw new Error('the record does not match the connections');
    // A serving daemon's record: the open counts come first, and each mount's are read from its region.
    if (entries.some((e) => e.region !== undefined)) [opensFd, ...connections] = rest;
    if (entries.length !== connections.length) throw new Error('the record does not match the connections');
    return entries.flatMap((e, i) => {
      const fd = connections[i] as number;
      const counted = opensFd === undefined ? null : readOpenRegion(opensFd, e.region ?? -1);
      if (opensFd !== undefined && counted === null) {
        // More files were open than its region holds: it cannot be taken over safely, so it is mounted afresh.
        fs.closeSync(fd);
        onDamage(`the open files of ${e.dir} were not all counted`);
        return [];
      }
      const resent = counted === null ? undefined : { done: 0, uniques: counted.uniques };
      return [{ view: { source: e.source, dir: e.dir, readOnly: e.readOnly }, handover: { fd, init: Buffer.from(e.init, 'base64') }, opens: counted?.opens ?? e.opens, resent }];
    });
  } catch (err) {
    for (const fd of connections) fs.closeSync(fd);
    onDamage(err instanceof Error ? err.message : String(err));
    return [];
  } finally {
    fs.closeSync(record);
    if (opensFd !== undefined) fs.closeSync(opensFd);
  }
}

function isEntry(e: unknown): e is Entry {
  if (typeof e !== 'object' || e === null) return false;
  const x = e as Partial<Entry>;
  const pair = (p: unknown): boolean => Array.isArray(p) && p.length === 2 && p.every((n) => Number.isSafeInteger(n));
  const region = x.region === undefined || Number.isSafeInteger(x.region);
  return typeof x.source === 'string' && typeof x.dir === 'string' && typeof x.readOnly === 'boolean' && typeof x.init === 'string' && Array.isArray(x.opens) && x.opens.every(pair) && region;
}
