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
 * Caveat: only a clean stop hands cowfs mounts over. A daemon killed with
 * -9 leaves its cowfs connections to die with it (the kernel's view of a
 * filesystem may be ahead of the last commit, and inode numbers handed out
 * since would be handed out again), so the next daemon mounts them afresh.
 */
import fs from 'node:fs';

import type { Detached, MountView } from '../fuse/cowfs-mount.js';
import { native } from '../native.js';

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
}

/** The fds that carry `mounts`: a new record memfd, then each connection (the caller's, not duplicated). The caller closes the memfd. */
export function handedFds(mounts: readonly HandedMount[]): number[] {
  if (mounts.length === 0) return [];
  const record: Entry[] = mounts.map((m) => ({ ...m.view, init: m.handover.init.toString('base64'), opens: m.opens }));
  return [native.memfdWith(Buffer.from(JSON.stringify(record))), ...mounts.map((m) => m.handover.fd)];
}

/**
 * The mounts that fds (a record memfd, then connections) carry. Every fd is
 * used or closed: a damaged record closes them all, and the next daemon
 * mounts those filesystems afresh. `onDamage` hears why.
 */
export function mountsFromFds(fds: readonly number[], onDamage: (why: string) => void = () => {}): HandedMount[] {
  const [record, ...connections] = fds;
  if (record === undefined) return [];
  try {
    const bytes = Buffer.alloc(fs.fstatSync(record).size);
    fs.readSync(record, bytes, 0, bytes.length, 0);
    const entries = JSON.parse(bytes.toString('utf8')) as unknown;
    if (!Array.isArray(entries) || entries.length !== connections.length || !entries.every(isEntry)) throw new Error('the record does not match the connections');
    return entries.map((e, i) => ({
      view: { source: e.source, dir: e.dir, readOnly: e.readOnly },
      handover: { fd: connections[i] as number, init: Buffer.from(e.init, 'base64') },
      opens: e.opens,
    }));
  } catch (err) {
    for (const fd of connections) fs.closeSync(fd);
    onDamage(err instanceof Error ? err.message : String(err));
    return [];
  } finally {
    fs.closeSync(record);
  }
}

function isEntry(e: unknown): e is Entry {
  if (typeof e !== 'object' || e === null) return false;
  const x = e as Partial<Entry>;
  const pair = (p: unknown): boolean => Array.isArray(p) && p.length === 2 && p.every((n) => Number.isSafeInteger(n));
  return typeof x.source === 'string' && typeof x.dir === 'string' && typeof x.readOnly === 'boolean' && typeof x.init === 'string' && Array.isArray(x.opens) && x.opens.every(pair);
}
