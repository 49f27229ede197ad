/**
 * What a successor does with a killed daemon's journal before it takes the
 * connections over: every record past the commit it opened, in order, onto
 * the pool (pool.ts `replay`: block and filesystem mappings, filesystem
 * tree items), then what the cowfs mounts' addon served and no fold
 * recorded (Filesystem.replayServed), then one commit.
 *
 * A take or end record is folded once a later record changes its file's
 * inode: every request JavaScript serves folds what the addon took first,
 * and a fold saves the inode of every file it placed a take for. A take's
 * volume index is in the fold's own mapping record, so only the rest are
 * placed here, where the file's region is as the journal leaves it.
 *
 * Caveat: the times of native writes since the last fold are not
 * journaled; a file's mtime may be up to the stamp interval old after it.
 */
import type { Pool, Replayed } from '../blockstore/pool.js';
import { Filesystem } from '../cowfs/filesystem.js';
import { inodeOfKey } from '../cowfs/keys.js';
import type { FileEnd, FileTake, JournalRecord } from '../fuse/journal-records.js';

interface Unfolded {
  takes: FileTake[];
  ends: FileEnd[];
}

/** What a replay did: records that changed something, and per filesystem volume the last request whose changes it holds. */
export interface Replay {
  applied: number;
  /** Volume id -> the FUSE unique of the last cowfs request journaled: if the kernel resends it, it was done already. */
  lastDone: Map<number, number>;
}

/** Applies `records` and commits. Throws (ECORRUPT) before any change when a mapping does not follow. */
export function replayJournal(pool: Pool, records: readonly JournalRecord[]): Replay {
  const lastDone = new Map<number, number>();
  const unfolded = new Map<number, Map<number, Unfolded>>();
  const plain: Replayed[] = [];
  const of = (id: number, ino: number): Unfolded => {
    const files = unfolded.get(id) ?? new Map<number, Unfolded>();
    unfolded.set(id, files);
    const u = files.get(ino) ?? { takes: [], ends: [] };
    files.set(ino, u);
    return u;
  };
  for (const r of records) {
    if ('done' in r) lastDone.set(r.id, r.done);
    else if ('take' in r) of(r.id, r.ino).takes.push(r);
    else if ('end' in r) of(r.id, r.ino).ends.push(r);
    else {
      const ino = 'key' in r ? inodeOfKey(r.key) : null;
      if (ino !== null) unfolded.get(r.id)?.delete(ino);
      plain.push(r);
    }
  }
  let applied = pool.replay(plain, false);
  for (const [id, files] of unfolded) {
    if (files.size === 0 || !pool.has(id) || pool.stat(id).readOnly || pool.stat(id).kind !== 'fs') continue;
    const all = [...files.values()];
    applied += new Filesystem(pool, id).replayServed(
      all.flatMap((u) => u.takes),
      all.flatMap((u) => u.ends),
    );
  }
  if (pool.uncommitted) pool.commit();
  return { applied, lastDone };
}
