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
import { type MapChange, type MappingListener, Pool } from '../src/blockstore/pool.js';
import { fill } from './helpers/pools.js';

const KiB = 1024;

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
