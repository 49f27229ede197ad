/**
 * The pool's promises one by one: O(1) snapshots, single-lookup reads,
 * delete in any order, larger clones, pool-full behaviour, the cache budget,
 * discard giving space back to the filesystem, and errors that change nothing.
 */
import fs from 'node:fs';
import path from 'node:path';

import t, { type Test } from 'tap';

import { checkPool } from '../src/blockstore/check.js';
import { PoolDir, initPoolDir } from '../src/blockstore/pool-dir.js';
import { MemoryDisk } from '../src/blockstore/memory-disk.js';
import { Pool } from '../src/blockstore/pool.js';
import { CrashError, FaultPlan, SimDisk } from '../src/blockstore/sim-disk.js';
import { CowvolError } from '../src/errors.js';
import { Volumes } from '../src/volumes/volumes.js';
import { fill, memoryPool, tmpDir } from './helpers/pools.js';

const KiB = 1024;
const MiB = 1024 * KiB;

function clean(t: Test, pool: Pool, what: string): void {
  const r = checkPool(pool);
  t.ok(r.ok, `${what}: check clean${r.ok ? '' : `: ${r.problems.join('; ')}`}`);
}

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof CowvolError) return err.code;
    throw err;
  }
  return 'no error';
}

t.test('a snapshot costs the same pages whatever the volume holds', async (t) => {
  const costs: number[] = [];
  for (const chunks of [64, 8192]) {
    const { pool } = memoryPool({ chunkSize: 4096 });
    pool.createVolume('v', 64 * MiB);
    for (let i = 0; i < chunks; i++) pool.write('v', i * 4096, fill(4096, 1 + (i % 200)));
    pool.flush();
    const before = pool.stats().metaPages;
    new Volumes(pool).createSnapshot('v@s');
    costs.push(pool.stats().metaPages - before);
    clean(t, pool, `${chunks} chunks`);
  }
  t.equal(costs[0], costs[1], `pages added by a snapshot: ${costs.join(' vs ')}`);
  t.ok((costs[0] ?? 99) <= 4, 'a snapshot adds a record page and little else');
});

t.test('reads are one lookup of one map whatever the snapshot history', async (t) => {
  const { pool } = memoryPool({ chunkSize: 4096 });
  pool.createVolume('v', 16 * MiB);
  for (let s = 0; s < 100; s++) {
    pool.write('v', (s * 37 % 4096) * 4096, fill(4096, s + 1));
    new Volumes(pool).createSnapshot(`v@s${s}`);
  }
  const v = pool['volume']('v');
  t.equal(pool['trees'].path(v.tree, 37).length, v.tree.levels, 'the path to a chunk is the tree height');
  t.equal(v.tree.levels, 2, 'the height depends on the size, not on 100 snapshots');
  t.same(pool.read('v@s50', (50 * 37 % 4096) * 4096, 4), fill(4, 51), 'old snapshot reads its own data');
  clean(t, pool, '100 snapshots');
});

t.test('delete in any order keeps what others still hold', async (t) => {
  const orders = [
    ['vol', 'snap', 'clone'],
    ['vol', 'clone', 'snap'],
    ['snap', 'vol', 'clone'],
    ['snap', 'clone', 'vol'],
    ['clone', 'vol', 'snap'],
    ['clone', 'snap', 'vol'],
  ];
  for (const order of orders) {
    const { pool } = memoryPool({ chunkSize: 8192 });
    pool.createVolume('vol', 256 * KiB);
    pool.write('vol', 0, fill(256 * KiB, 7));
    new Volumes(pool).createSnapshot('vol@snap');
    pool.write('vol', 0, fill(8192, 8));
    new Volumes(pool).clone('vol@snap', 'clone');
    pool.write('clone', 8192, fill(8192, 9));
    const expect: Record<string, Buffer> = {
      vol: Buffer.concat([fill(8192, 8), fill(248 * KiB, 7)]),
      'vol@snap': fill(256 * KiB, 7),
      clone: Buffer.concat([fill(8192, 7), fill(8192, 9), fill(240 * KiB, 7)]),
    };
    const names: Record<string, string> = { vol: 'vol', snap: 'vol@snap', clone: 'clone' };
    for (const which of order) {
      const name = names[which] ?? '';
      if (which === 'snap') new Volumes(pool).deleteSnapshot(name);
      else new Volumes(pool).delete(name);
      delete expect[name];
      for (const [other, data] of Object.entries(expect)) {
        t.ok(pool.read(other, 0, data.length).equals(data), `${order.join(',')}: ${other} intact after deleting ${name}`);
      }
      clean(t, pool, `${order.join(',')} after ${name}`);
    }
    t.equal(pool.stats().usedChunks, 0, `${order.join(',')}: every chunk freed`);
  }
});

t.test('clone to a larger size reads zeros past the source and is writable there', async (t) => {
  const { pool } = memoryPool({ chunkSize: 65536 });
  pool.createVolume('src', 1 * MiB);
  pool.write('src', 0, fill(1 * MiB, 3));
  t.equal(code(() => new Volumes(pool).clone('src', 'small', { size: 512 * KiB })), 'EINVAL', 'smaller than the source is refused');
  new Volumes(pool).clone('src', 'big', { size: 100 * MiB });
  t.equal(pool.stat('big').size, 100 * MiB);
  t.ok(pool.read('big', 0, MiB).equals(fill(MiB, 3)), 'source data present');
  t.ok(pool.read('big', 99 * MiB, MiB).equals(Buffer.alloc(MiB)), 'tail reads zeros');
  pool.write('big', 99 * MiB, fill(4096, 4));
  t.ok(pool.read('src', 0, MiB).equals(fill(MiB, 3)), 'source untouched by clone writes');
  clean(t, pool, 'larger clone');
});

t.test('a snapshot holds exactly the writes that completed before it, with writers in flight', async (t) => {
  const { pool } = memoryPool({ chunkSize: 4096 });
  pool.createVolume('v', 4 * MiB);
  const model = Buffer.alloc(4 * MiB);
  let snapModel: Buffer | null = null;
  let stop = false;
  let done = 0;
  const writer = async (seed: number): Promise<void> => {
    for (let i = 0; !stop && i < 2000; i++, done++) {
      const off = ((seed * 7919 + i * 104729) % 1024) * 4096;
      const data = fill(4096, (seed * 31 + i) % 251);
      pool.write('v', off, data);
      data.copy(model, off);
      await new Promise((r) => setImmediate(r));
    }
  };
  const writers = [1, 2, 3].map(writer);
  // Counted turns of the event loop, not a clock: each writer yields once per write.
  const writesDone = async (n: number): Promise<void> => {
    while (done < n) await new Promise((r) => setImmediate(r));
  };
  await writesDone(300);
  new Volumes(pool).createSnapshot('v@mid');
  snapModel = Buffer.from(model);
  await writesDone(done + 300);
  stop = true;
  await Promise.all(writers);
  t.ok(pool.read('v@mid', 0, 4 * MiB).equals(snapModel), 'snapshot equals the data acknowledged before it');
  t.ok(pool.read('v', 0, 4 * MiB).equals(model), 'volume equals every write');
  t.notOk(snapModel.equals(model), 'writes continued after the snapshot (the test exercised something)');
});

t.test('pool full: ENOSPC for the write, nothing corrupted, writes resume once space is freed', async (t) => {
  const { pool } = memoryPool({ chunkSize: 4096, capacity: 16 * 4096 });
  pool.createVolume('a', 1 * MiB);
  for (let i = 0; i < 16; i++) pool.write('a', i * 4096, fill(4096, i + 1));
  t.equal(code(() => pool.write('a', 16 * 4096, fill(4096, 99))), 'ENOSPC', 'a new chunk is refused');
  new Volumes(pool).createSnapshot('a@s');
  t.equal(code(() => pool.write('a', 0, fill(512, 99))), 'ENOSPC', 'a CoW break is refused too');
  for (let i = 0; i < 16; i++) t.ok(pool.read('a', i * 4096, 4096).equals(fill(4096, i + 1)), `chunk ${i} intact`);
  t.ok(pool.read('a', 16 * 4096, 4096).equals(Buffer.alloc(4096)), 'the refused write left nothing');
  clean(t, pool, 'full pool');
  new Volumes(pool).deleteSnapshot('a@s');
  pool.write('a', 0, fill(512, 99));
  pool.discard('a', 4096, 8 * 4096);
  pool.write('a', 16 * 4096, fill(4096, 98));
  t.ok(pool.read('a', 16 * 4096, 4096).equals(fill(4096, 98)), 'writes succeed after space is freed');
  clean(t, pool, 'after freeing');
});

t.test('the page cache stays within its budget on a map larger than the budget', async (t) => {
  const budget = 64 * KiB;
  const { pool } = memoryPool({ chunkSize: 4096 }, { cacheBytes: budget, xlateEntries: 64 });
  pool.createVolume('big', 1024 * MiB);
  // 40 leaves of map plus their refcount pages: far more than 16 cached pages.
  const chunks = 40 * 1016;
  let maxSeen = 0;
  for (let i = 0; i < chunks; i += 7) {
    pool.write('big', i * 4096, fill(512, (i % 250) + 1));
    maxSeen = Math.max(maxSeen, pool['cache'].bytes());
  }
  pool.flush();
  for (let i = 0; i < chunks; i += 7 * 97) {
    t.ok(pool.read('big', i * 4096, 512).equals(fill(512, (i % 250) + 1)), `chunk ${i} reads back`);
    maxSeen = Math.max(maxSeen, pool['cache'].bytes());
  }
  t.ok(maxSeen <= budget, `cache peaked at ${maxSeen} bytes, budget ${budget}`);
  const metaBytes = pool.stats().metaPages * 4096;
  t.ok(metaBytes > 2 * budget, `the metadata (${metaBytes} bytes) is larger than the budget`);
  t.ok(pool['cache'].reads > budget / 4096, `pages were evicted and re-read (${pool['cache'].reads} reads)`);
  clean(t, pool, 'small cache');
});

t.test('errors change nothing', async (t) => {
  const mp = memoryPool({ chunkSize: 4096 });
  const pool = mp.pool;
  pool.createVolume('v', 64 * KiB);
  pool.write('v', 0, fill(64 * KiB, 5));
  new Volumes(pool).createSnapshot('v@s');
  const gen = pool.generation;
  const image = mp.meta.image();
  t.equal(code(() => pool.createVolume('v', 4096)), 'EEXIST');
  t.equal(code(() => new Volumes(pool).create('Bad', { size: 4096 })), 'EINVAL');
  t.equal(code(() => pool.createVolume('w', 1000)), 'EINVAL');
  t.equal(code(() => pool.grow('v', 4096)), 'EPERM');
  t.equal(code(() => pool.grow('v@s', 1 * MiB)), 'EROFS');
  t.equal(code(() => pool.write('v@s', 0, fill(1, 1))), 'EROFS');
  t.equal(code(() => pool.write('v', 64 * KiB - 1, fill(2, 1))), 'EFBIG');
  t.equal(code(() => pool.discard('v', 0, 128 * KiB)), 'EFBIG');
  t.equal(code(() => pool.read('nope', 0, 1)), 'ENOENT');
  t.equal(code(() => new Volumes(pool).createSnapshot('v@s')), 'EEXIST');
  t.equal(code(() => new Volumes(pool).createSnapshot('v@s@x')), 'EINVAL');
  t.equal(code(() => new Volumes(pool).createSnapshot('v@s@x')), 'EINVAL');
  t.equal(code(() => new Volumes(pool).delete('v@s')), 'EINVAL');
  t.equal(code(() => new Volumes(pool).deleteSnapshot('v')), 'EINVAL');
  new Volumes(pool).delete('v');
  t.equal(code(() => new Volumes(pool).create('v', { size: 4096 })), 'EEXIST', "a new 'v' would adopt the orphaned v@s");
  t.equal(pool.generation, gen + 1, 'only the delete committed');
  t.notOk(mp.meta.image().equals(image), 'the delete did change metadata');
  t.ok(pool.read('v@s', 0, 64 * KiB).equals(fill(64 * KiB, 5)), 'the orphaned snapshot still reads');
  clean(t, pool, 'after rejected operations');
});

/** A memory disk whose punches wait for the test: each asked for is kept, settled by `finish`. */
class SlowPunchDisk extends MemoryDisk {
  readonly asked: { position: number; length: number; finish(err?: Error): void }[] = [];

  punchAsync(position: number, length: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.asked.push({ position, length, finish: (err) => (err ? reject(err) : (this.punch(position, length), resolve())) });
    });
  }
}

/** A pool of 64 KiB chunks over a data disk whose punches wait for the test. */
function slowPunchPool(): { pool: Pool; data: SlowPunchDisk } {
  const meta = new MemoryDisk();
  const data = new SlowPunchDisk();
  Pool.init(meta, data, { chunkSize: 65536 });
  return { pool: Pool.open(meta, data), data };
}

t.test('chunks waiting for their punch off the event loop are not allocated, and count as zeros only after it', async (t) => {
  const { pool, data } = slowPunchPool();
  // Where each of a volume's 64 chunks sits in the data disk.
  const places = (v: string): number[] => Array.from({ length: 64 }, (_, i) => pool.placeOf(v, i)?.offset ?? -1);
  pool.createVolume('a', 8 * MiB);
  pool.write('a', 0, fill(4 * MiB, 1));
  pool.flush();
  const used = new Set(places('a'));
  new Volumes(pool).delete('a');
  t.equal(data.asked.length, 1, 'the delete asked for one punch of the whole run');
  t.equal(data.asked[0]?.length, 4 * MiB, 'of the 64 chunks');
  pool.createVolume('b', 8 * MiB);
  pool.write('b', 0, fill(4 * MiB, 2));
  pool.flush();
  t.same(places('b').filter((c) => used.has(c)), [], 'while it runs, none of its chunks is allocated again');
  data.asked[0]?.finish();
  await pool.punched();
  pool.createVolume('c', 8 * MiB);
  pool.write('c', 0, fill(4 * MiB, 3));
  pool.flush();
  t.ok(places('c').some((c) => used.has(c)), 'once done, they are allocated again');
  t.ok(pool.read('b', 0, 4 * MiB).equals(fill(4 * MiB, 2)), 'and nothing written meanwhile was punched');
  t.ok(pool.read('c', 0, 4 * MiB).equals(fill(4 * MiB, 3)), 'nor after');
  clean(t, pool, 'after the punches');
  pool.close();
});

/** SlowPunchDisk that counts its data syncs off the event loop (writeBack), the last of which a test may await. */
class CountedSyncDisk extends SlowPunchDisk {
  syncs = 0;
  lastSync: Promise<void> = Promise.resolve();

  writeBack(): Promise<void> {
    this.syncs++;
    this.lastSync = Promise.resolve();
    return this.lastSync;
  }
}

t.test('a reserve meeting punched chunks no data sync has made durable starts one, and punches nothing twice', async (t) => {
  const meta = new MemoryDisk();
  const data = new CountedSyncDisk();
  Pool.init(meta, data, { chunkSize: 65536 });
  const pool = Pool.open(meta, data);
  pool.createVolume('a', 8 * MiB);
  pool.write('a', 0, fill(4 * MiB, 1));
  pool.flush();
  const freed = new Set(Array.from({ length: 64 }, (_, i) => pool.placeOf('a', i)?.offset ?? -1));
  new Volumes(pool).delete('a');
  data.asked[0]?.finish();
  await pool.punched();
  // Every free chunk now reads as zeros, but only a data sync after the punch makes that hold across a crash.
  const reserve = pool.openReserve(8);
  const handed: number[] = [];
  const give = (offsets: number[]): number => {
    handed.push(...offsets);
    return offsets.length;
  };
  pool.topUpReserve(reserve, give);
  t.same(handed, [], 'none is handed before a data sync');
  t.equal(data.asked.length, 1, 'none is punched again');
  t.equal(data.syncs, 1, 'the top-up started a data sync for them');
  await data.lastSync;
  pool.topUpReserve(reserve, give);
  t.equal(handed.length, 8, 'after it, the next top-up fills the reserve');
  t.ok(handed.every((offset) => freed.has(offset)), 'with the freed chunks');
  t.equal(data.syncs, 1, 'and syncs no more');
  reserve.drop();
  clean(t, pool, 'after the top-ups');
  pool.close();
});

t.test('a chunk written and freed before any commit is punched off the event loop, and held until then', async (t) => {
  const chunk = 65536;
  const { pool, data } = slowPunchPool();
  pool.createVolume('a', 8 * MiB);
  pool.flush();
  // A file written and deleted between commits: its chunk was never in a durable state.
  pool.write('a', 0, fill(chunk, 1));
  const place = pool.placeOf('a', 0)?.offset;
  pool.discard('a', 0, chunk);
  t.equal(data.asked.length, 1, 'the free asked for a punch off the event loop');
  t.equal(data.asked[0]?.position, place, 'of the chunk the write took');
  pool.write('a', 65536, fill(512, 2));
  t.not(pool.placeOf('a', 1)?.offset, place, 'while it runs, the chunk is not allocated again');
  data.asked[0]?.finish();
  await pool.punched();
  pool.write('a', 2 * chunk + 4096, fill(512, 3));
  t.equal(pool.placeOf('a', 2)?.offset, place, 'once done, it is allocated again');
  t.ok(pool.read('a', 2 * chunk, chunk).equals(Buffer.concat([Buffer.alloc(4096), fill(512, 3), Buffer.alloc(chunk - 4608)])), 'and reads zeros around a partial write');
  clean(t, pool, 'after the punch');
  pool.close();
});

t.test('discard and delete give space back to the filesystem (hole punching)', async (t) => {
  const dir = tmpDir('punch');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  initPoolDir(dir, { chunkSize: 65536 });
  const blocks = (): number => fs.statSync(path.join(dir, 'cowvol.data')).blocks * 512;
  const h = PoolDir.open(dir);
  const pool = h.pool;
  pool.createVolume('v', 64 * MiB);
  pool.write('v', 0, fill(32 * MiB, 1));
  pool.flush();
  const full = blocks();
  t.ok(full >= 32 * MiB, `32 MiB written uses ${full} bytes`);
  pool.discard('v', 0, 16 * MiB);
  pool.flush();
  // The commit punches the freed chunks off the event loop.
  await pool.punched();
  const half = blocks();
  t.ok(half <= full - 15 * MiB, `discarding 16 MiB frees it: ${full} -> ${half}`);
  t.ok(pool.read('v', 0, 16 * MiB).equals(Buffer.alloc(16 * MiB)), 'discarded range reads zeros');
  new Volumes(pool).delete('v');
  await pool.punched();
  t.ok(blocks() <= 1 * MiB, `deleting the volume frees the rest: ${blocks()}`);
  pool.createVolume('w', 1 * MiB);
  pool.write('w', 4096, fill(512, 2));
  t.ok(pool.read('w', 0, 65536).equals(Buffer.concat([Buffer.alloc(4096), fill(512, 2), Buffer.alloc(65536 - 4608)])), 'a reused chunk reads zeros around a partial write');
  h.close();
});

/** A data disk on a filesystem with `limit` bytes: growing past it fails with ENOSPC. */
class FullDisk extends MemoryDisk {
  limit: number;

  constructor(limit: number) {
    super();
    this.limit = limit;
  }

  override write(buf: Buffer, position: number): void {
    if (position + buf.length > this.limit) throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
    super.write(buf, position);
  }
}

t.test('the disk under the pool fills up: ENOSPC, nothing corrupted, freed chunks are reused', async (t) => {
  const meta = new MemoryDisk();
  const data = new FullDisk(10 * 4096);
  Pool.init(meta, data, { chunkSize: 4096 });
  const pool = Pool.open(meta, data);
  pool.createVolume('v', 1 * MiB);
  let written = 0;
  let failure = 'none';
  for (let i = 0; i < 20; i++) {
    try {
      pool.write('v', i * 4096, fill(4096, i + 1));
      written++;
    } catch (err) {
      failure = (err as CowvolError).code;
      break;
    }
  }
  t.equal(written, 10, 'ten chunks fit');
  t.equal(failure, 'ENOSPC', 'the eleventh write fails with ENOSPC');
  t.ok(pool.read('v', 10 * 4096, 4096).equals(Buffer.alloc(4096)), 'the failed write left nothing');
  clean(t, pool, 'disk full');
  pool.discard('v', 0, 4 * 4096);
  pool.flush();
  for (let i = 10; i < 14; i++) pool.write('v', i * 4096, fill(4096, 60 + i));
  t.ok(pool.read('v', 10 * 4096, 4096).equals(fill(4096, 70)), 'writes succeed in freed chunks');
  let again = 'none';
  try {
    pool.write('v', 14 * 4096, fill(4096, 74));
  } catch (err) {
    again = (err as CowvolError).code;
  }
  t.equal(again, 'ENOSPC', 'full again once the freed chunks are used');
  // Free a chunk the allocator has already passed: it must still be found.
  pool.discard('v', 10 * 4096, 4096);
  pool.flush();
  pool.write('v', 14 * 4096, fill(4096, 74));
  for (let i = 4; i < 10; i++) t.ok(pool.read('v', i * 4096, 4096).equals(fill(4096, i + 1)), `chunk ${i} intact`);
  t.ok(pool.read('v', 14 * 4096, 4096).equals(fill(4096, 74)), 'the last write landed');
  // Again, with the allocator's cursor just past the freed chunk.
  pool.discard('v', 14 * 4096, 4096);
  pool.flush();
  pool.write('v', 15 * 4096, fill(4096, 75));
  t.ok(pool.read('v', 15 * 4096, 4096).equals(fill(4096, 75)), 'a failed growth step leaves no hole for the allocator to trip on');
  clean(t, pool, 'after freeing');
  pool.close();
  const reopened = Pool.open(meta, data);
  t.ok(reopened.read('v', 15 * 4096, 4096).equals(fill(4096, 75)), 'and it is there after reopening');
  clean(t, reopened, 'reopened');
});

t.test('forkAll: a group of forks is one transaction, whole or absent even across power loss', (t) => {
  // A pool with three written volumes, as disk images to crash from.
  const setupMeta = new MemoryDisk();
  const setupData = new MemoryDisk();
  Pool.init(setupMeta, setupData, { chunkSize: 4096 });
  const setup = Pool.open(setupMeta, setupData);
  for (const [i, n] of ['a', 'b', 'c'].entries()) {
    setup.createVolume(n, 64 * 1024);
    setup.write(n, 0, fill(8192, i + 1));
  }
  setup.close();
  const group = ['a', 'b', 'c'].map((n) => ({ source: n, name: `${n}@g`, options: { readOnly: true, origin: n, labels: { group: 'g' } } }));

  // Refused before anything is made: a missing source, a taken name.
  const mp = memoryPool({ chunkSize: 4096 });
  mp.pool.createVolume('a', 65536);
  mp.pool.createVolume('b', 65536);
  const generation = mp.pool.stats().generation;
  t.throws(() => mp.pool.forkAll([{ source: 'a', name: 'a@g', options: { readOnly: true } }, { source: 'zz', name: 'zz@g', options: { readOnly: true } }]), { code: 'ENOENT' });
  t.throws(() => mp.pool.forkAll([{ source: 'a', name: 'b', options: { readOnly: true } }]), { code: 'EEXIST' });
  t.throws(() => mp.pool.forkAll([{ source: 'a', name: 'a@g', options: { readOnly: true } }, { source: 'b', name: 'a@g', options: { readOnly: true } }]), { code: 'EEXIST' });
  t.same(mp.pool.list().map((v) => v.name), ['a', 'b'], 'refused: nothing made');
  t.equal(mp.pool.stats().generation, generation, 'refused: nothing committed');
  mp.pool.forkAll([{ source: 'a', name: 'a@g', options: { readOnly: true, labels: { k: 'v' } } }, { source: 'b', name: 'b@g', options: { readOnly: true } }]);
  t.equal(mp.pool.stats().generation, generation + 1, 'two forks, one commit');
  t.same(mp.reopen().stat('a@g').labels, { k: 'v' }, 'labels persist');
  mp.pool.removeAll(['a@g', 'b@g']);
  t.equal(mp.pool.stats().generation, generation + 2, 'two removals, one commit');
  clean(t, mp.pool, 'after removeAll');

  // Cut power at every disk operation of the group snapshot in turn.
  let outcomes = { all: 0, none: 0 };
  for (let crashAt = 1; ; crashAt++) {
    const plan = new FaultPlan(crashAt, { crashAt });
    const meta = new SimDisk(plan, setupMeta.image());
    const data = new SimDisk(plan, setupData.image());
    const pool = Pool.open(meta, data);
    try {
      pool.forkAll(group);
      break; // got through: every operation has had its crash
    } catch (err) {
      if (!(err instanceof CrashError)) throw err;
    }
    const after = Pool.open(new MemoryDisk(meta.crashImage()), new MemoryDisk(data.crashImage()));
    const members = after.list().filter((v) => v.labels.group === 'g').map((v) => v.name);
    if (members.length === 3) outcomes = { ...outcomes, all: outcomes.all + 1 };
    else if (members.length === 0) outcomes = { ...outcomes, none: outcomes.none + 1 };
    else t.fail(`crash at operation ${crashAt}: ${members.length} of 3 members survived`);
    for (const m of members) t.ok(after.read(m, 0, 8192).equals(fill(8192, ['a', 'b', 'c'].indexOf(m[0] ?? '') + 1)), `crash at ${crashAt}: ${m} holds its data`);
    clean(t, after, `crash at ${crashAt}`);
  }
  t.ok(outcomes.none > 0, `some crashes left no member (${outcomes.none}), the others all three (${outcomes.all})`);
  t.end();
});

/** A memory data disk that counts the bytes written to it. */
class CountingDisk extends MemoryDisk {
  written = 0;

  override write(buf: Buffer, position: number): void {
    this.written += buf.length;
    super.write(buf, position);
  }
}

t.test('zeroRange keeps the range mapped: whole chunks cost no data writes, later writes go in place', async (t) => {
  const chunk = 64 * KiB;
  const meta = new MemoryDisk();
  const data = new CountingDisk();
  Pool.init(meta, data, { chunkSize: chunk });
  let pool = Pool.open(meta, data);
  pool.createVolume('v', 4 * MiB);
  pool.write('v', 0, fill(chunk, 1));
  pool.flush();
  pool.fork('v', 'v@s', { readOnly: true, parentId: pool.stat('v').id });
  pool.write('v', chunk, fill(chunk, 2));
  pool.flush();
  const before = data.written;
  pool.zeroRange('v', 2 * chunk, 8 * chunk);
  pool.zeroRange('v', 0, chunk);
  t.equal(data.written, before, 'zeroing unmapped chunks and a chunk shared with a snapshot writes no data');
  pool.zeroRange('v', chunk + 4 * KiB, 4 * KiB);
  t.equal(data.written, before + 4 * KiB, 'part of an owned chunk is zeroed in place');
  t.equal(pool.stat('v').allocatedBytes, 10 * chunk, 'every zeroed chunk is mapped');
  pool.flush();
  pool.write('v', 5 * chunk, fill(4 * KiB, 3));
  t.equal(pool.volumeUncommitted('v'), false, 'a write into a zeroed chunk changes no map, so its flush needs no commit');
  const want = Buffer.concat([Buffer.alloc(chunk), fill(4 * KiB, 2), Buffer.alloc(4 * KiB), fill(chunk, 2).subarray(8 * KiB), Buffer.alloc(3 * chunk), fill(4 * KiB, 3), Buffer.alloc(5 * chunk - 4 * KiB)]);
  t.ok(pool.read('v', 0, 10 * chunk).equals(want), 'the volume reads the zeroed ranges as zeros and the rest as written');
  t.ok(pool.read('v@s', 0, chunk).equals(fill(chunk, 1)), 'the snapshot keeps what it shared');
  t.equal(code(() => pool.zeroRange('v@s', 0, chunk)), 'EROFS', 'a snapshot cannot be zeroed');
  t.equal(code(() => pool.zeroRange('v', 4 * MiB - chunk, 2 * chunk)), 'EFBIG', 'nor past the end');
  pool.flush();
  clean(t, pool, 'after zeroing');
  pool.close();
  pool = Pool.open(meta, data);
  t.ok(pool.read('v', 0, 10 * chunk).equals(want), 'and so after reopening');
  t.equal(pool.stat('v').allocatedBytes, 10 * chunk, 'still mapped after reopening');
  pool.close();
});

t.test('zeroRange on a nearly full pool is refused whole and changes nothing', async (t) => {
  const chunk = 64 * KiB;
  const { pool } = memoryPool({ chunkSize: chunk, capacity: 8 * chunk });
  pool.createVolume('v', 64 * chunk);
  pool.write('v', 0, fill(6 * chunk, 1));
  pool.flush();
  const changes = pool.changeCount;
  t.equal(code(() => pool.zeroRange('v', 4 * chunk, 8 * chunk)), 'ENOSPC', 'six fresh chunks do not fit in two');
  t.equal(pool.changeCount, changes, 'nothing changed');
  t.ok(pool.read('v', 4 * chunk, 2 * chunk).equals(fill(6 * chunk, 1).subarray(4 * chunk)), 'the owned chunks in the range keep their data');
  t.equal(pool.stat('v').allocatedBytes, 6 * chunk, 'no chunk was mapped');
  pool.zeroRange('v', 4 * chunk, 4 * chunk);
  t.equal(pool.stat('v').allocatedBytes, 8 * chunk, 'two fresh chunks fit');
  clean(t, pool, 'after the refusal');
});
