/**
 * Which holes the pool offers its frontend for first writes: past the newest
 * first write even when another request folded it first, and not again for
 * the requests that raced an offer. Both keep a sequential writer on the
 * native path (bench: first writes vs overwrites in db-bench).
 */
import t from 'tap';

import type { MappingListener } from '../src/blockstore/pool.js';
import { memoryPool } from './helpers/pools.js';

const KiB = 1024;

/** Records what the pool offers; plays the native table's takes by hand. */
class Recorder implements MappingListener {
  offers: number[][] = [];
  reserved: number[] = [];
  records: [number, number, number][] = [];

  dropVolume(): void {}
  dropChunk(): void {}
  holes(_id: number, indices: number[]): void {
    this.offers.push(indices);
  }
  reserve(offsets: number[]): number {
    const room = 1024 - this.reserved.length;
    this.reserved.push(...offsets.slice(0, room));
    return Math.min(room, offsets.length);
  }
  taken(): [number, number, number][] {
    const out = this.records;
    this.records = [];
    return out;
  }
  /** First writes into `from`..`to` as the addon serves them: a reserved chunk each, recorded. */
  take(id: number, from: number, to: number): void {
    for (let i = from; i <= to; i++) this.records.push([id, i, this.reserved.pop() as number]);
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
