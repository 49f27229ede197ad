/**
 * Which holes the pool offers its frontend for first writes: past the newest
 * first write even when another request folded it first, and not again for
 * the requests that raced an offer. Both keep a sequential writer on the
 * native path (bench: first writes vs overwrites in db-bench). And a change
 * the pool makes to a mapping the frontend may break itself (a CoW break,
 * an unmap) holds when the frontend broke it just before it was told: for
 * a block volume's table, and for a cowfs mount's (FileChunks), which takes
 * such entries back before JavaScript changes their chunks.
 */
import t from 'tap';

import { checkPool } from '../src/blockstore/check.js';
import type { MemoryDisk } from '../src/blockstore/memory-disk.js';
import type { MappingListener } from '../src/blockstore/pool.js';
import { Filesystem } from '../src/cowfs/filesystem.js';
import { ROOT_INO } from '../src/cowfs/fs-tree.js';
import { FileChunks } from '../src/fuse/file-chunks.js';
import type { FuseSession } from '../src/fuse/session.js';
import { memoryPool } from './helpers/pools.js';

const KiB = 1024;

/** Records what the pool offers; plays the native table's takes by hand. */
class Recorder implements MappingListener {
  offers: number[][] = [];
  reserved: number[] = [];
  records: [number, number, number, number][] = [];
  /** A CoW break the table made just before the pool takes this entry back: [id, index, data file offset of the chunk], and the bytes it copied. */
  raceOn: { at: [number, number, number]; data: MemoryDisk } | null = null;

  dropVolume(): void {}
  dropChunk(id: number, index: number): void {
    const race = this.raceOn;
    if (race === null || race.at[0] !== id || race.at[1] !== index) return;
    this.raceOn = null;
    const fresh = this.reserved.pop() as number;
    const chunk = Buffer.alloc(64 * KiB);
    race.data.read(chunk, race.at[2]);
    race.data.write(chunk, fresh);
    this.records.push([id, index, fresh, race.at[2]]);
  }
  holes(_id: number, indices: number[]): void {
    this.offers.push(indices);
  }
  reserve(offsets: number[]): number {
    const room = 1024 - this.reserved.length;
    this.reserved.push(...offsets.slice(0, room));
    return Math.min(room, offsets.length);
  }
  taken(): [number, number, number, number][] {
    const out = this.records;
    this.records = [];
    return out;
  }
  /** First writes into `from`..`to` as the addon serves them: a reserved chunk each, recorded. */
  take(id: number, from: number, to: number): void {
    for (let i = from; i <= to; i++) this.records.push([id, i, this.reserved.pop() as number, -1]);
  }
  offered(): Set<number> {
    return new Set(this.offers.flat());
  }
}

t.test('holes reach past first writes that another request folded', async (t) => {
  const { pool } = memoryPool({ capacity: 2 * 1024 * 1024 * KiB });
  const v = pool.createVolume('v', 1024 * 1024 * KiB);
  const l = new Recorder();
  pool.listener = l;
  pool.write('v', 0, Buffer.alloc(4 * KiB, 1));
  const first = l.offered();
  t.ok(first.has(1), 'a first write offers the next index');
  const horizon = Math.max(...first);
  t.ok(horizon >= 1024, `the offer reaches past the reserve (to ${horizon})`);

  l.take(v.id, 1, 600);
  pool.stat('v'); // folds the 600 records: the replenish below finds none of its own
  t.equal(pool.stat('v').allocatedBytes, 601 * 64 * KiB, 'the stat folded the first writes');
  l.offers = [];
  pool.replenish();
  const next = l.offered();
  t.ok(next.has(horizon + 1), 'the replenish offers past the old horizon');
  t.equal(Math.max(...next), 600 + horizon, 'as far past the newest first write as the first offer was past the first');
  t.notOk(next.has(600), 'never an index that is mapped');
});

t.test('requests that raced an offer do not offer it again', async (t) => {
  const { pool } = memoryPool({ capacity: 2 * 1024 * 1024 * KiB });
  pool.createVolume('v', 1024 * 1024 * KiB);
  const l = new Recorder();
  pool.listener = l;
  pool.write('v', 0, Buffer.alloc(4 * KiB, 1));
  const offered = l.offered().size;
  t.ok(offered >= 1024, 'the first write offers a run');
  // A queue's worth of writes that were in flight before the offer reached the table.
  for (let i = 1; i <= 16; i++) pool.write('v', i * 64 * KiB, Buffer.alloc(4 * KiB, 2));
  const again = l.offers.slice(1).flat();
  t.ok(again.length <= 16, `they offered ${again.length} indices, not a run each`);
  t.notOk(again.some((i) => i <= 16), 'none of them offers an index already written');
  // A write far from the last run is a new writer: it gets a run of its own.
  pool.write('v', 10000 * 64 * KiB, Buffer.alloc(4 * KiB, 3));
  t.ok(l.offered().has(10001), 'a write elsewhere offers its own next index');
});

t.test('a CoW break or an unmap the pool makes holds when the table broke the chunk itself just before', async (t) => {
  const mp = memoryPool({ capacity: 1024 * 1024 * KiB });
  const { pool } = mp;
  const v = pool.createVolume('v', 64 * 1024 * KiB);
  const l = new Recorder();
  pool.listener = l;
  pool.write('v', 0, Buffer.alloc(128 * KiB, 1));
  pool.fork('v', 'v@s', { readOnly: true });
  // Chunk 0 is shared now: the pool breaks it for this write, and the table broke it first.
  l.raceOn = { at: [v.id, 0, (pool.placeOf('v', 0) as { offset: number }).offset], data: mp.data };
  pool.write('v', 100, Buffer.alloc(4 * KiB, 2));
  t.equal(l.raceOn, null, 'the pool took the entry back before it broke the chunk');
  // Chunk 1 likewise, under a discard.
  l.raceOn = { at: [v.id, 1, (pool.placeOf('v', 1) as { offset: number }).offset], data: mp.data };
  pool.discard('v', 64 * KiB, 64 * KiB);
  t.equal(l.raceOn, null, 'and before it unmapped one');
  await pool.flush();
  const expect = Buffer.alloc(128 * KiB);
  expect.fill(1, 0, 64 * KiB).fill(2, 100, 100 + 4 * KiB);
  t.same(pool.read('v', 0, 128 * KiB), expect, 'the volume has both changes over what the table copied');
  t.same(pool.read('v@s', 0, 128 * KiB), Buffer.alloc(128 * KiB, 1), 'the snapshot has neither');
  t.ok(checkPool(pool).ok, 'the pool checks clean');
  mp.reopen();
  t.same(mp.pool.read('v', 0, 128 * KiB), expect, 'and after a reopen');
});

/** A cowfs mount's table, played by hand: it breaks the entry JavaScript takes back, just before the take-back returns. */
class FileTable {
  reserved: number[] = [];
  entries = new Map<string, { offset: number; writable: boolean; breakable: boolean }>();
  records: { ino: number; index: number; offset: number; old: number }[] = [];
  raceOn: { ino: number; chunk: number; data: MemoryDisk } | null = null;

  map(ino: number, chunk: number, offset: number, writable: boolean, breakable: boolean): void {
    this.entries.set(`${ino}:${chunk}`, { offset, writable, breakable });
  }
  invalidate(ino: number, chunk: number): void {
    const race = this.raceOn;
    const entry = this.entries.get(`${ino}:${chunk}`);
    this.entries.delete(`${ino}:${chunk}`);
    if (race === null || race.ino !== ino || race.chunk !== chunk || entry === undefined || !entry.breakable) return;
    this.raceOn = null;
    const fresh = this.reserved.pop() as number;
    const bytes = Buffer.alloc(64 * KiB);
    race.data.read(bytes, entry.offset);
    bytes.fill(7, 0, 512);
    race.data.write(bytes, fresh);
    this.records.push({ ino, index: chunk, offset: fresh, old: entry.offset });
  }
  reserve(offsets: number[]): number {
    this.reserved.push(...offsets);
    return offsets.length;
  }
  taken(): { ino: number; index: number; offset: number; old: number }[] {
    const out = this.records;
    this.records = [];
    return out;
  }
  written(): [] {
    return [];
  }
  kernelTimes(): [] {
    return [];
  }
  holes(): void {}
  generations(): void {}
  commitNeeded(): void {}
}

t.test('a cowfs write JavaScript serves holds when the addon broke the shared chunk itself just before', async (t) => {
  const mp = memoryPool({ capacity: 1024 * 1024 * KiB });
  const { pool } = mp;
  pool.createVolume('home', 64 * 1024 * KiB, { kind: 'fs', filesystem: true });
  Filesystem.format(pool, 'home', { uid: 0, gid: 0 });
  const id = pool.stat('home').id;
  const fs = new Filesystem(pool, id);
  const f = fs.mknod(ROOT_INO, Buffer.from('f'), 0o100644, 0, { uid: 0, gid: 0 });
  fs.write(f.ino, 0, Buffer.alloc(128 * KiB, 1));
  pool.fork('home', 'home@s', { readOnly: true });
  const table = new FileTable();
  const chunks = new FileChunks(pool, id, fs, table as unknown as FuseSession, 64, true);
  const unwatch = pool.watch(id, chunks);
  chunks.replenish();
  chunks.offer(f.ino, 0, 128 * KiB);
  t.ok(table.entries.get(`${f.ino}:0`)?.breakable, 'the shared chunk was entered for the addon to break');
  // JavaScript serves a write into chunk 0 (as cowfs-mount.ts does: quiesce, then the write); the addon broke it first.
  table.raceOn = { ino: f.ino, chunk: 0, data: mp.data };
  chunks.quiesce(f.ino, 1024, 4 * KiB);
  t.equal(table.raceOn, null, 'the entry was taken back before JavaScript wrote');
  fs.write(f.ino, 1024, Buffer.alloc(4 * KiB, 2));
  chunks.fold();
  // Chunk 1 likewise, under a change whose range is longer than the entries the table may break.
  table.raceOn = { ino: f.ino, chunk: 1, data: mp.data };
  chunks.quiesce(f.ino, 0, 1024 * KiB);
  t.equal(table.raceOn, null, 'found among the entries when the range is the longer');
  fs.write(f.ino, 64 * KiB + 1024, Buffer.alloc(4 * KiB, 3));
  chunks.fold();
  const expect = Buffer.alloc(128 * KiB, 1)
    .fill(7, 0, 512)
    .fill(2, 1024, 1024 + 4 * KiB)
    .fill(7, 64 * KiB, 64 * KiB + 512)
    .fill(3, 64 * KiB + 1024, 64 * KiB + 1024 + 4 * KiB);
  t.same(fs.read(f.ino, 0, 128 * KiB), expect, 'the file has the addon\'s writes and then JavaScript\'s, in the copies');
  t.same(new Filesystem(pool, pool.stat('home@s').id).read(f.ino, 0, 128 * KiB), Buffer.alloc(128 * KiB, 1), 'the snapshot has none of them');
  unwatch();
  t.ok(checkPool(pool).ok, 'the pool checks clean');
});
