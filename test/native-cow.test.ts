/**
 * Copy-on-write breaks served by the addon (native/src/chunk_table.c): a
 * write into a chunk a snapshot shares is copied into a reserved chunk on
 * the FUSE thread, and the pool folds the record as it folds its own CoW
 * breaks. Through a real daemon: the write never reaches JavaScript, the
 * volume has the new bytes, the snapshot keeps the old ones, both survive a
 * restart and check is clean. In the pool alone: a snapshot's chunks are
 * never offered for breaking, and a fold of a break releases the old chunk.
 */
import fs from 'node:fs';

import t from 'tap';

import { checkPool } from '../src/blockstore/check.js';
import type { MappingListener } from '../src/blockstore/pool.js';
import { Daemon, cli, scratchPool } from './helpers/daemon.js';
import { memoryPool } from './helpers/pools.js';
import { scrape } from './helpers/scrape.js';

const KiB = 1024;
const CHUNK = 64 * KiB;

/** Plays the addon: remembers what the pool maps and reserves, and reports the breaks the test makes. */
class Table implements MappingListener {
  mapped = new Map<string, { offset: number; writable: boolean; breakable: boolean }>();
  reserved: number[] = [];
  records: [number, number, number, number][] = [];
  dropVolume(id: number): void {
    for (const key of this.mapped.keys()) if (key.startsWith(`${id}:`)) this.mapped.delete(key);
  }
  dropChunk(): void {}
  map(id: number, index: number, offset: number, writable: boolean, breakable = false): void {
    this.mapped.set(`${id}:${index}`, { offset, writable, breakable });
  }
  holes(): void {}
  reserve(offsets: number[]): number {
    this.reserved.push(...offsets);
    return offsets.length;
  }
  taken(): [number, number, number, number][] {
    const out = this.records;
    this.records = [];
    return out;
  }
}

t.test('the pool: a break folds like its own, and a snapshot is never breakable', async (t) => {
  const mp = memoryPool();
  const pool = mp.pool;
  const table = new Table();
  pool.listener = table;
  const v = pool.createVolume('v', 4 * CHUNK);
  pool.write('v', 0, Buffer.alloc(CHUNK, 1));
  pool.fork('v', 'v@s', { readOnly: true });
  const s = pool.stat('v@s');
  pool.read('v', 0, 4096);
  pool.read('v@s', 0, 4096);
  const shared = table.mapped.get(`${v.id}:0`);
  t.same([shared?.writable, shared?.breakable], [false, true], 'the volume\'s shared chunk: not in place, but breakable');
  const frozen = table.mapped.get(`${s.id}:0`);
  t.same([frozen?.writable, frozen?.breakable], [false, false], 'the snapshot\'s: neither');
  pool.replenish();
  const fresh = table.reserved.pop() as number;
  // What the addon does: copy the chunk, then write into the copy.
  const copy = Buffer.alloc(CHUNK, 1);
  copy.fill(2, 0, 4096);
  mp.data.write(copy, fresh);
  table.records.push([v.id, 0, fresh, shared?.offset ?? -1]);
  const usedBefore = pool.stats().usedChunks;
  t.ok(pool.read('v', 0, 4096).equals(Buffer.alloc(4096, 2)), 'the volume reads the copy once folded');
  t.ok(pool.read('v@s', 0, 4096).equals(Buffer.alloc(4096, 1)), 'the snapshot keeps the old chunk');
  t.equal(pool.stats().usedChunks, usedBefore + 1, 'one chunk more: the copy');
  t.equal(pool.activity().cowBreaks, 1, 'counted as a CoW break');
  pool.commit();
  const r = checkPool(pool);
  t.ok(r.ok, `check clean: ${r.problems.join('; ')}`);
  const again = mp.reopen();
  t.ok(again.read('v', 0, 4096).equals(Buffer.alloc(4096, 2)), 'durable after the commit');
  t.ok(again.read('v@s', 0, 4096).equals(Buffer.alloc(4096, 1)));
});

t.test('the addon breaks a shared chunk without JavaScript; data and check hold across a restart', async (t) => {
  const s = scratchPool(t, 'native-cow');
  t.equal(cli(s.pool, 'volume', 'create', 'v', '--size', '4M').status, 0);
  let d = await Daemon.start(s.pool, s.mount, ['--metrics-address', '127.0.0.1:0']);
  t.teardown(() => d.stop());
  const address = (JSON.parse(cli(s.pool, 'pool', 'show', '--json').stdout) as { metricsAddress: string }).metricsAddress;
  fs.writeFileSync(d.file('v'), Buffer.alloc(4 * CHUNK, 1), { flag: 'r+' });
  t.equal(cli(s.pool, 'snapshot', 'create', 'v@s').status, 0);
  const fd = fs.openSync(d.file('v'), 'r+');
  // A read first puts the shared chunks in the table (mapped, not writable).
  fs.readSync(fd, Buffer.alloc(4 * CHUNK), 0, 4 * CHUNK, 0);
  const before = await scrape(address);
  const jsWrites = before.all('cowvol_fuse_javascript_requests_total', { op: 'write' })[0]?.value ?? 0;
  for (let c = 0; c < 4; c++) fs.writeSync(fd, Buffer.alloc(4096, 2 + c), 0, 4096, c * CHUNK + 8192);
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  const after = await scrape(address);
  t.equal(after.all('cowvol_fuse_javascript_requests_total', { op: 'write' })[0]?.value ?? 0, jsWrites, 'no write went to JavaScript');
  t.equal(after.value('cowvol_cow_breaks_total') - before.value('cowvol_cow_breaks_total'), 4, 'four chunks broken');
  const expect = (c: number): Buffer => {
    const b = Buffer.alloc(CHUNK, 1);
    b.fill(2 + c, 8192, 8192 + 4096);
    return b;
  };
  const check = (what: string): void => {
    const vol = fs.readFileSync(d.file('v'));
    const snap = fs.readFileSync(d.file('v@s')).subarray(0, 4 * CHUNK);
    for (let c = 0; c < 4; c++) t.ok(vol.subarray(c * CHUNK, (c + 1) * CHUNK).equals(expect(c)), `${what}: chunk ${c} of the volume has the copy and the write`);
    t.ok(snap.equals(Buffer.alloc(4 * CHUNK, 1)), `${what}: the snapshot kept the old bytes`);
  };
  check('served');
  await d.stop();
  const r = cli(s.pool, 'check');
  t.equal(r.status, 0, `check: ${r.stdout}${r.stderr}`);
  d = await Daemon.start(s.pool, s.mount);
  check('after a restart');
});

t.test('breaks the addon made and nobody committed are replayed from the journal after a kill -9', async (t) => {
  const s = scratchPool(t, 'native-cow-kill');
  t.equal(cli(s.pool, 'volume', 'create', 'v', '--size', '1M').status, 0);
  const grace = ['--handover-grace', '30'];
  let d = await Daemon.start(s.pool, s.mount, grace);
  t.teardown(() => cli(s.pool, 'stop'));
  fs.writeFileSync(d.file('v'), Buffer.alloc(2 * CHUNK, 1), { flag: 'r+' });
  t.equal(cli(s.pool, 'snapshot', 'create', 'v@s').status, 0, 'the snapshot commits the first writes');
  const fd = fs.openSync(d.file('v'), 'r+');
  fs.readSync(fd, Buffer.alloc(2 * CHUNK), 0, 2 * CHUNK, 0);
  fs.writeSync(fd, Buffer.alloc(4096, 7), 0, 4096, CHUNK + 4096);
  fs.closeSync(fd);
  // No fsync: the break lives in the addon's record, the journal and the host's page cache only.
  await d.stop('SIGKILL');
  d = await Daemon.start(s.pool, s.mount, grace);
  t.match(d.log, /replayed the previous daemon's journal/, 'the successor replayed the journal');
  const vol = fs.readFileSync(d.file('v')).subarray(0, 2 * CHUNK);
  const want = Buffer.alloc(2 * CHUNK, 1);
  want.fill(7, CHUNK + 4096, CHUNK + 8192);
  t.ok(vol.equals(want), 'the volume has the write the killed daemon acknowledged');
  t.ok(fs.readFileSync(d.file('v@s')).subarray(0, 2 * CHUNK).equals(Buffer.alloc(2 * CHUNK, 1)), 'the snapshot kept the old bytes');
  t.equal(cli(s.pool, 'stop').status, 0);
  const r = cli(s.pool, 'check');
  t.equal(r.status, 0, `check: ${r.stdout}${r.stderr}`);
});
