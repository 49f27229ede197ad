/**
 * The one-flush commit (pool.ts `commit`, commit-log.ts): which flushes a
 * commit makes and in what order, how opening tells a torn newest commit
 * from a whole one, the formats it reads and refuses, and flushes that wait
 * for the disk off the event loop while reads go on.
 */
import fs from 'node:fs';
import zlib from 'node:zlib';

import t, { type Test } from 'tap';

import { checkPool } from '../src/blockstore/check.js';
import type { Disk } from '../src/blockstore/disk.js';
import { FileDisk } from '../src/blockstore/file-disk.js';
import { MemoryDisk } from '../src/blockstore/memory-disk.js';
import { PAGE_SIZE, slot } from '../src/blockstore/page.js';
import { Pool } from '../src/blockstore/pool.js';
import { readSuperblocks } from '../src/blockstore/superblock.js';
import { fill, memoryPool, tmpDir } from './helpers/pools.js';

/** A MemoryDisk that logs what is done to it, in one journal shared by both disks. */
class LoggingDisk extends MemoryDisk {
  constructor(
    private readonly name: string,
    private readonly journal: string[],
  ) {
    super();
  }
  override write(buf: Buffer, position: number): void {
    this.journal.push(position < 2 * PAGE_SIZE && this.name === 'meta' ? 'superblock' : `write ${this.name}`);
    super.write(buf, position);
  }
  override sync(): void {
    this.journal.push(`sync ${this.name}`);
  }
}

function loggingPool(): { pool: Pool; journal: string[] } {
  const journal: string[] = [];
  const meta = new LoggingDisk('meta', journal);
  const data = new LoggingDisk('data', journal);
  Pool.init(meta, data, { chunkSize: 4096 });
  const pool = Pool.open(meta, data);
  journal.length = 0;
  return { pool, journal };
}

/** What happened from the superblock write on, and whether a flush came between the first write and it. */
function tail(journal: string[]): { flushesBefore: string[]; after: string[] } {
  const sb = journal.indexOf('superblock');
  return { flushesBefore: journal.slice(0, sb).filter((e) => e.startsWith('sync')), after: journal.slice(sb) };
}

t.test('a commit of first writes into fresh chunks flushes each disk once, after the superblock is written', async (t) => {
  const { pool, journal } = loggingPool();
  pool.createVolume('v', 1 << 20);
  journal.length = 0;
  pool.write('v', 8192, fill(4096, 1));
  pool.commit();
  const { flushesBefore, after } = tail(journal);
  t.same(flushesBefore, [], 'nothing is flushed before the superblock is written');
  t.same(after.filter((e) => e.startsWith('sync')).sort(), ['sync data', 'sync meta'], 'then one flush of each disk');
  t.equal(after.length, 3);
});

t.test('a commit with a CoW copy flushes data before it writes the superblock', async (t) => {
  const { pool, journal } = loggingPool();
  pool.createVolume('v', 1 << 20);
  pool.write('v', 0, fill(4096, 1));
  pool.fork('v', 'v@s', { readOnly: true });
  journal.length = 0;
  pool.write('v', 0, fill(512, 2));
  pool.commit();
  const { flushesBefore, after } = tail(journal);
  t.same(flushesBefore, ['sync data'], 'the copy is durable before anything names it');
  t.same(after, ['superblock', 'sync meta']);
  t.same(pool.read('v@s', 0, 512), fill(512, 1), 'the snapshot kept its data');
});

t.test('a reused chunk whose hole punch is not yet durable also orders data first; once a sync made it durable, it does not', async (t) => {
  const { pool, journal } = loggingPool();
  pool.createVolume('v', 1 << 20);
  pool.write('v', 0, fill(4096, 1));
  pool.commit();
  pool.discard('v', 0, 4096);
  pool.commit(); // frees the chunk; its punch is issued after this commit
  journal.length = 0;
  pool.write('v', 4096, fill(4096, 3)); // takes the freed chunk
  pool.commit();
  t.same(tail(journal).flushesBefore, ['sync data'], 'the punch was not durable yet');
  pool.discard('v', 4096, 4096);
  pool.commit();
  pool.flush(); // nothing changed since: a data sync, which makes the punch durable
  journal.length = 0;
  pool.write('v', 8192, fill(4096, 4));
  pool.commit();
  t.same(tail(journal).flushesBefore, [], 'a durably punched chunk counts as zero');
});

/** The page the newest commit's log names first. */
function firstLogged(meta: MemoryDisk): { generation: number; page: number } {
  const [newest] = readSuperblocks(meta, 'test');
  if (!newest?.log || newest.log.entries === 0) throw new Error('the newest commit logged nothing');
  const buf = Buffer.alloc(PAGE_SIZE);
  meta.read(buf, newest.log.start * PAGE_SIZE);
  return { generation: newest.generation, page: slot(buf, 1) };
}

t.test('opening takes the previous commit when a page the newest names is not as written, and overwrites the torn one', async (t) => {
  const mp = memoryPool({ chunkSize: 4096 });
  mp.pool.createVolume('v', 64 << 20);
  mp.pool.write('v', 0, fill(4096, 1));
  mp.pool.commit();
  const before = mp.pool.generation;
  mp.pool.write('v', 4096 * 1500, fill(4096, 2)); // a new map path: pages to log
  mp.pool.commit();
  mp.pool.close();
  const { generation, page } = firstLogged(mp.meta);
  t.equal(generation, before + 1);
  const image = mp.meta.image();
  image[page * PAGE_SIZE + 100] = (image[page * PAGE_SIZE + 100] ?? 0) ^ 0xff; // as if that write never landed whole
  const meta = new MemoryDisk(image);
  const data = new MemoryDisk(mp.data.image());
  const pool = Pool.open(meta, data);
  t.equal(pool.generation, before + 1, 'the previous state, committed again over the torn superblock');
  t.same(pool.read('v', 0, 4096), fill(4096, 1), 'the flushed write of the previous commit is there');
  t.same(pool.read('v', 4096 * 1500, 4096), fill(4096, 0), 'the torn commit is not');
  const report = checkPool(pool);
  t.ok(report.ok);
  t.match(report.notes, [/commit \d+ was torn \(page \d+ is not as the commit wrote it\)/], 'check tells the owner what was discarded');
  pool.close();
  const again = Pool.open(meta, data);
  t.equal(again.generation, before + 1, 'the torn superblock is gone for good');
  again.close();
});

t.test('a torn newest commit with no earlier one left is refused as corrupt', async (t) => {
  const mp = memoryPool({ chunkSize: 4096 });
  mp.pool.createVolume('v', 1 << 20);
  mp.pool.close();
  const { page } = firstLogged(mp.meta);
  const image = mp.meta.image();
  image.fill(0, 0, PAGE_SIZE * 2);
  const [newest] = readSuperblocks(mp.meta, 'test');
  // Keep only the newest superblock, then tear a page it names.
  const slotAt = ((newest?.generation ?? 0) % 2) * PAGE_SIZE;
  mp.meta.image().copy(image, slotAt, slotAt, slotAt + PAGE_SIZE);
  image[page * PAGE_SIZE + 64] = (image[page * PAGE_SIZE + 64] ?? 0) ^ 1;
  t.throws(() => Pool.open(new MemoryDisk(image), new MemoryDisk(mp.data.image())), { code: 'ECORRUPT', message: /torn/ });
});

/** Rewrites both superblock slots in format `version` (1: the format before the commit log). */
function setFormat(image: Buffer, version: number): void {
  for (const at of [0, PAGE_SIZE]) {
    image.writeUInt32LE(version, at + 8);
    if (version !== 1) continue;
    image.fill(0, at + 104, at + 124);
    image.writeUInt32LE(zlib.crc32(image.subarray(at, at + 104)), at + 104);
  }
}

t.test('a format-1 pool opens as it is, and its next commit is written in format 2', async (t) => {
  const mp = memoryPool({ chunkSize: 4096 });
  mp.pool.createVolume('v', 1 << 20);
  mp.pool.write('v', 0, fill(4096, 7));
  mp.pool.close();
  const image = mp.meta.image();
  setFormat(image, 1);
  const meta = new MemoryDisk(image);
  const pool = Pool.open(meta, new MemoryDisk(mp.data.image()));
  t.same(pool.read('v', 0, 4096), fill(4096, 7));
  pool.createVolume('w', 4096);
  t.equal(meta.image().readUInt32LE((pool.generation % 2) * PAGE_SIZE + 8), 2, 'the new superblock is format 2');
  pool.close();
});

t.test('a pool written by a newer format is refused, not opened at an older commit', async (t) => {
  const mp = memoryPool({ chunkSize: 4096 });
  mp.pool.close();
  const image = mp.meta.image();
  setFormat(image, 3);
  t.throws(() => Pool.open(new MemoryDisk(image), new MemoryDisk()), { code: 'ENOTPOOL', message: /newer cowvol/ });
});

/** A pool on files in a fresh directory, removed when the test ends. */
function filePool(t: Test): Pool {
  const dir = tmpDir('commit');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const meta: Disk = new FileDisk(`${dir}/meta`, { create: true });
  const data: Disk = new FileDisk(`${dir}/data`, { create: true });
  Pool.init(meta, data, { chunkSize: 4096 });
  return Pool.open(meta, data);
}

t.test('fsync-style flushes commit off the event loop: reads go on, flushes arriving meanwhile share the next commit', async (t) => {
  const pool = filePool(t);
  for (let i = 0; i < 4; i++) pool.createVolume(`v${i}`, 1 << 20);
  pool.write('v0', 0, fill(4096, 1));
  const first = pool.flushAsync();
  t.ok(pool.committing, 'the commit waits for the disk on the thread pool');
  t.same(pool.read('v0', 0, 4096), fill(4096, 1), 'a read is answered meanwhile');
  t.ok(pool.committing, 'and does not finish the commit');
  const more = [1, 2, 3].map(() => pool.flushAsync());
  await Promise.all([first, ...more]);
  t.notOk(pool.committing);
  const stats = pool.flushStats();
  t.equal(stats.requests, 4);
  t.ok(stats.commits + stats.dataSyncs <= 2, `four flushes took ${stats.commits} commits and ${stats.dataSyncs} data syncs`);
  pool.close();
});

t.test('a metadata change while a commit is in flight finishes that commit first', async (t) => {
  const pool = filePool(t);
  pool.createVolume('v', 1 << 20);
  pool.write('v', 0, fill(4096, 1));
  const generation = pool.generation;
  const flushed = pool.flushAsync();
  t.ok(pool.committing);
  pool.createVolume('w', 4096);
  t.notOk(pool.committing, 'the create finished it on the spot');
  t.equal(pool.generation, generation + 2, 'then committed itself');
  await flushed;
  t.equal(pool.generation, generation + 2, 'the flush, already done, commits nothing more');
  t.ok(checkPool(pool).ok);
  pool.close();
});

t.test('a flush of a volume whose map has not changed is a data sync, even while another volume waits to commit', async (t) => {
  const pool = filePool(t);
  pool.createVolume('a', 1 << 20);
  pool.createVolume('b', 1 << 20);
  pool.write('a', 0, fill(4096, 1));
  await pool.flushAsync('a');
  pool.write('b', 0, fill(4096, 2)); // a first write: b's map changes
  pool.write('a', 0, fill(4096, 3)); // in place: a's map does not
  const before = pool.flushStats();
  await pool.flushAsync('a');
  const after = pool.flushStats();
  t.equal(after.commits, before.commits, "a's flush committed nothing");
  t.equal(after.dataSyncs, before.dataSyncs + 1, 'it synced the data file');
  t.ok(pool.uncommitted, "b's change still waits");
  await pool.flushAsync('b');
  t.equal(pool.flushStats().commits, after.commits + 1, "b's flush commits");
  t.notOk(pool.uncommitted);
  pool.close();
});
