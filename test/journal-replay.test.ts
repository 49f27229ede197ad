/**
 * The map-change journal from the pool's side (Pool.replay): a daemon killed
 * after answering first writes, CoW breaks and discards that no commit holds
 * leaves their data in the page cache and their mappings in the journal; a
 * successor that opens the same disks and replays what the opened commit
 * does not cover reads every write back, and check is clean.
 */
import t from 'tap';

import { checkPool } from '../src/blockstore/check.js';
import { MemoryDisk } from '../src/blockstore/memory-disk.js';
import { type ItemChange, type MapChange, type MappingListener, Pool } from '../src/blockstore/pool.js';
import { Filesystem } from '../src/cowfs/filesystem.js';
import { checkFilesystem } from '../src/cowfs/fs-check.js';
import { ROOT_INO } from '../src/cowfs/fs-tree.js';
import { encodeInode } from '../src/cowfs/inode.js';
import { ItemType, key } from '../src/cowfs/keys.js';
import { replayJournal } from '../src/daemon/journal-replay.js';
import type { JournalRecord } from '../src/fuse/journal-records.js';
import { fill } from './helpers/pools.js';

const KiB = 1024;
const inodeKey = (ino: number): Buffer => key(ino, ItemType.INODE, 0);

/** Plays the addon's journal: seqs, and which seq each commit covers. */
class Journal implements MappingListener {
  records: MapChange[] = [];
  marks = new Map<number, number>();
  dropVolume(): void {}
  dropChunk(): void {}
  journal(id: number, index: number, offset: number, old: number): boolean {
    this.records.push({ id, index, offset, old });
    return true;
  }
  journalCover(): number {
    return this.records.length;
  }
  journalMark(generation: number, covered: number): void {
    this.marks.set(generation, covered);
  }
  journalTrim(): void {}
  /** What a successor that opened commit `generation` replays. */
  since(generation: number): MapChange[] {
    const from = this.marks.get(generation);
    if (from === undefined) throw new Error(`no mark for ${generation}`);
    return this.records.slice(from);
  }
}

t.test('a successor replays first writes, CoW breaks and discards no commit held', async (t) => {
  const meta = new MemoryDisk();
  const data = new MemoryDisk();
  Pool.init(meta, data, { chunkSize: 4 * KiB });
  const a = Pool.open(meta, data);
  const j = new Journal();
  a.listener = j;
  a.createVolume('v', 256 * KiB);
  for (let i = 0; i < 8; i++) a.write('v', i * 4 * KiB, fill(4 * KiB, 1 + i));
  a.commit();
  a.fork('v', 'v@s', { readOnly: true });
  // Not committed from here: the daemon is killed before its next commit.
  for (let i = 0; i < 4; i++) a.write('v', i * 4 * KiB, fill(4 * KiB, 50 + i)); // CoW breaks
  for (let i = 16; i < 24; i++) a.write('v', i * 4 * KiB, fill(4 * KiB, 100 + i)); // first writes
  a.discard('v', 6 * 4 * KiB, 4 * KiB); // unmap
  const wanted = a.read('v', 0, 256 * KiB);
  t.ok(j.records.length >= 13, `${j.records.length} changes journaled`);

  // kill -9: the disks keep what was written (the page cache), the process's memory is gone.
  const b = Pool.open(meta, data);
  const lost = b.read('v', 0, 256 * KiB);
  t.notOk(lost.equals(wanted), 'without the journal the successor would serve older data');
  const opened = b.stats().generation;
  const todo = j.since(opened);
  t.equal(b.replay(todo), todo.length, 'every record past the opened commit applied');
  t.ok(b.read('v', 0, 256 * KiB).equals(wanted), 'after the replay every answered write reads back');
  t.ok(b.read('v@s', 0, 32 * KiB).equals(Buffer.concat([...Array(8).keys()].map((i) => fill(4 * KiB, 1 + i)))), 'the snapshot is untouched');
  const r = checkPool(b);
  t.ok(r.ok, `check clean: ${r.problems.join('; ')}`);
  b.close();
  const c = Pool.open(meta, data);
  t.ok(c.read('v', 0, 256 * KiB).equals(wanted), 'and the replay was committed');
  t.equal(c.replay(todo), 0, 'replaying again changes nothing: every record is held');
  // An empty replay brings no commit, so it must not hold punches back: a chunk written and freed between commits is punched at once.
  c.write('v', 40 * 4 * KiB, fill(4 * KiB, 0xa7));
  c.discard('v', 40 * 4 * KiB, 4 * KiB);
  const disk = Buffer.alloc(data.size());
  data.read(disk, 0);
  t.equal(disk.indexOf(fill(4 * KiB, 0xa7)), -1, 'the freed chunk was punched without waiting for a commit');
  c.close();
});

t.test('a record that does not follow from the map is refused before anything changes', async (t) => {
  const meta = new MemoryDisk();
  const data = new MemoryDisk();
  Pool.init(meta, data, { chunkSize: 4 * KiB });
  const p = Pool.open(meta, data);
  const v = p.createVolume('v', 64 * KiB);
  p.write('v', 0, fill(4 * KiB, 9));
  p.commit();
  const before = p.read('v', 0, 64 * KiB);
  const bad: MapChange[] = [
    { id: v.id, index: 3, offset: 40 * 4 * KiB, old: -1 },
    { id: v.id, index: 0, offset: 41 * 4 * KiB, old: 30 * 4 * KiB },
  ];
  t.throws(() => p.replay(bad), { code: 'ECORRUPT' }, 'ECORRUPT');
  t.ok(p.read('v', 0, 64 * KiB).equals(before), 'nothing changed');
  t.ok(checkPool(p).ok, 'check clean');
  p.close();
});

t.test('a full journal makes the pool commit instead, so nothing answered is left out', async (t) => {
  const meta = new MemoryDisk();
  const data = new MemoryDisk();
  Pool.init(meta, data, { chunkSize: 4 * KiB });
  const p = Pool.open(meta, data);
  p.createVolume('v', 64 * KiB);
  const full = new Journal();
  full.journal = (): boolean => false;
  p.listener = full;
  const before = p.stats().generation;
  p.write('v', 8 * KiB, fill(4 * KiB, 7));
  t.ok(p.stats().generation > before, 'the first write was committed on the spot');
  t.notOk(p.uncommitted, 'nothing is left for a journal to hold');
  // kill -9 now: the successor needs no journal at all.
  const next = Pool.open(meta, data);
  t.ok(next.read('v', 8 * KiB, 4 * KiB).equals(fill(4 * KiB, 7)), 'the write is there without a replay');
  next.close();
});

/** A journal that also takes filesystem tree items, one unit per atomic step, as the addon's memfd does. */
class TreeJournal extends Journal {
  all: JournalRecord[] = [];
  override journal(id: number, index: number, offset: number, old: number): boolean {
    this.all.push({ id, index, offset, old });
    return super.journal(id, index, offset, old);
  }
  journalItems(items: readonly ItemChange[], unique: number): boolean {
    this.all.push(...items);
    if (unique !== 0) this.all.push({ done: unique, id: items[0]?.id ?? 0 });
    return true;
  }
  override journalCover(): number {
    return this.all.length;
  }
  /** Every record past what commit `generation` holds. */
  after(generation: number): JournalRecord[] {
    const from = this.marks.get(generation);
    if (from === undefined) throw new Error(`no mark for ${generation}`);
    return this.all.slice(from);
  }
}

const name = (s: string): Buffer => Buffer.from(s);
const root = { uid: 0, gid: 0 };

/** What a reader sees of a filesystem: every name under the root, with its kind, size and bytes. */
function listing(fs: Filesystem, dir = ROOT_INO, at = ''): string[] {
  const out: string[] = [];
  for (const e of fs.readdir(dir, 0, 1000)) {
    const n = e.name.toString();
    if (n === '.' || n === '..') continue;
    const i = fs.getattr(e.ino);
    const body = (i.mode & 0o170000) === 0o100000 ? fs.read(e.ino, 0, i.size).toString('hex') : '';
    out.push(`${at}/${n} ${i.mode.toString(8)} ${i.nlink} ${i.size} ${body}`);
    if ((i.mode & 0o170000) === 0o040000) out.push(...listing(fs, e.ino, `${at}/${n}`));
  }
  return out;
}

t.test('a successor replays a filesystem\'s tree changes in order, whole request by whole request', async (t) => {
  const meta = new MemoryDisk();
  const data = new MemoryDisk();
  Pool.init(meta, data, { chunkSize: 4 * KiB });
  const a = Pool.open(meta, data);
  const j = new TreeJournal();
  a.listener = j;
  a.createVolume('home', 1024 * KiB, { kind: 'fs', filesystem: true });
  Filesystem.format(a, 'home', root);
  const id = a.stat('home').id;
  a.commit();
  const fs = new Filesystem(a, id);
  // Not committed from here: each a request of its own, as cowfs-mount.ts makes them.
  let unique = 100;
  const request = <T>(fn: () => T): T => a.atomically(fn, (unique += 2));
  const dir = request(() => fs.mkdir(ROOT_INO, name('dir'), 0o755, root));
  const f = request(() => fs.mknod(dir.ino, name('f'), 0o100644, 0, root));
  request(() => fs.write(f.ino, 0, fill(10 * KiB, 7)));
  request(() => fs.link(f.ino, ROOT_INO, name('hard')));
  request(() => fs.rename(dir.ino, name('f'), ROOT_INO, name('moved')));
  const g = request(() => fs.mknod(ROOT_INO, name('g'), 0o100600, 0, root));
  request(() => fs.write(g.ino, 0, fill(6 * KiB, 3)));
  request(() => fs.unlink(ROOT_INO, name('g')));
  request(() => fs.symlink(dir.ino, name('l'), name('../moved'), root));
  const wanted = listing(fs);
  const records = j.after(a.stats().generation);
  t.ok(records.some((r) => 'key' in r), `tree items were journaled (${records.length} records)`);
  t.equal(records.filter((r) => 'done' in r).length, 9, 'one unit per request, each named after it');

  // kill -9: the commit before the changes is what a successor opens.
  const b = Pool.open(meta, data);
  t.same(listing(new Filesystem(b, id)), [], 'the opened commit holds none of the changes');
  const { applied, lastDone } = replayJournal(b, records);
  t.ok(applied > 0, `${applied} records applied`);
  t.equal(lastDone.get(id), unique, 'the last request journaled is known, for the kernel\'s resend of it');
  t.same(listing(new Filesystem(b, id)), wanted, 'after the replay the filesystem is as the killed daemon answered');
  t.same(checkFilesystem(b, id), [], 'and checks clean');
  t.ok(checkPool(b).ok, 'so does the pool');
  b.close();
  const c = Pool.open(meta, data);
  t.same(listing(new Filesystem(c, id)), wanted, 'the replay was committed');
  c.close();
});

/** A pool of 4 KiB chunks in memory with filesystem volume `home`, formatted and not committed. */
function homeVolume(): { data: MemoryDisk; p: Pool; id: number; fs: Filesystem } {
  const meta = new MemoryDisk();
  const data = new MemoryDisk();
  Pool.init(meta, data, { chunkSize: 4 * KiB });
  const p = Pool.open(meta, data);
  p.createVolume('home', 1024 * KiB, { kind: 'fs', filesystem: true });
  Filesystem.format(p, 'home', root);
  const id = p.stat('home').id;
  return { data, p, id, fs: new Filesystem(p, id) };
}

t.test('first writes and ends the addon served are placed only when no later change of their file folded them', async (t) => {
  const { data, p, id, fs } = homeVolume();
  const f = fs.mknod(ROOT_INO, name('f'), 0o100644, 0, root);
  const folded = fs.mknod(ROOT_INO, name('folded'), 0o100644, 0, root);
  p.commit();
  // The addon wrote chunk 0 of f into a free chunk of the data file, far past anything the pool allocated.
  const offset = 200 * 4 * KiB;
  data.write(fill(4 * KiB, 9), offset);
  const folding = fs.getattr(folded.ino);
  const records: JournalRecord[] = [
    { take: true, id, ino: f.ino, chunk: 0, offset, old: -1 },
    { end: 3000, id, ino: f.ino },
    // A take of `folded`, then its inode saved by the request that folded it (its mapping is in a record of its own).
    { take: true, id, ino: folded.ino, chunk: 0, offset: offset + 4 * KiB, old: -1 },
    { id, key: inodeKey(folded.ino), value: encodeInode({ ...folding, size: 1 }) },
  ];
  replayJournal(p, records);
  const after = new Filesystem(p, id);
  t.equal(after.getattr(f.ino).size, 3000, 'the end grew the file');
  t.equal(after.getattr(f.ino).chunks, 1, 'and the take counts as its chunk');
  t.ok(after.read(f.ino, 0, 3000).equals(fill(4 * KiB, 9).subarray(0, 3000)), 'the first write reads back');
  t.equal(after.getattr(folded.ino).chunks, 0, 'a take some later change of its file folded is not placed again');
  t.same(checkFilesystem(p, id), [], 'check clean');
  p.close();
});

t.test('a CoW break the addon made is replayed only over the chunk it copied: the snapshot keeps that one', async (t) => {
  const { data, p, id, fs } = homeVolume();
  const f = fs.mknod(ROOT_INO, name('f'), 0o100644, 0, root);
  fs.write(f.ino, 0, fill(4 * KiB, 1));
  p.fork('home', 'home@s', { readOnly: true });
  p.commit();
  const [shared] = fs.chunksIn(f.ino, 0, 4 * KiB).chunks;
  const old = p.placeOf(id, (shared as { index: number }).index)?.offset ?? -1;
  t.ok(old >= 0, 'the file maps a chunk the snapshot shares');
  // The addon copied it into a free chunk far past anything the pool allocated, then wrote there.
  const offset = 200 * 4 * KiB;
  data.write(fill(4 * KiB, 2), offset);
  const records: JournalRecord[] = [{ take: true, id, ino: f.ino, chunk: 0, offset, old }];
  t.equal(replayJournal(p, records).applied, 1, 'the break was placed');
  const after = new Filesystem(p, id);
  t.ok(after.read(f.ino, 0, 4 * KiB).equals(fill(4 * KiB, 2)), 'the file reads the write into the copy');
  t.equal(after.getattr(f.ino).chunks, 1, 'and still counts one chunk');
  t.ok(new Filesystem(p, p.stat('home@s').id).read(f.ino, 0, 4 * KiB).equals(fill(4 * KiB, 1)), 'the snapshot reads the chunk it shared');
  t.equal(replayJournal(p, records).applied, 0, 'replayed again, it finds its copy mapped and changes nothing');
  t.ok(checkPool(p).ok, 'the pool checks clean: the old chunk is the snapshot\'s alone');
  t.same(checkFilesystem(p, id), [], 'so does the filesystem');
  p.close();
});
