/**
 * check() must find what is wrong: a refcount off by one, a leaked chunk, a
 * damaged page, a record that lies about its size. Each case damages a
 * healthy pool one way and expects a problem naming it.
 */
import t from 'tap';

import { checkPool } from '../src/blockstore/check.js';
import { MemoryDisk } from '../src/blockstore/memory-disk.js';
import { PAGE_SIZE } from '../src/blockstore/page.js';
import { Pool } from '../src/blockstore/pool.js';
import { Volumes } from '../src/volumes/volumes.js';
import { fill, memoryPool } from './helpers/pools.js';

function healthy(): ReturnType<typeof memoryPool> {
  const mp = memoryPool({ chunkSize: 4096 });
  mp.pool.createVolume('v', 1 << 20);
  for (let i = 0; i < 40; i++) mp.pool.write('v', i * 8192, fill(4096, i + 1));
  new Volumes(mp.pool).createSnapshot('v@s');
  mp.pool.write('v', 0, fill(4096, 200));
  mp.pool.flush();
  return mp;
}

t.test('a healthy pool is clean', async (t) => {
  const r = checkPool(healthy().pool);
  t.ok(r.ok, r.problems.join('; '));
  t.equal(r.volumes, 2);
  t.ok(r.chunksReferenced >= 41);
});

t.test('an extra reference on a chunk is reported', async (t) => {
  const { pool } = healthy();
  let chunk = 0;
  pool['trees'].forEach(pool['volume']('v').tree, 0, 1, (_i, c) => (chunk = c));
  pool['data'].inc(chunk);
  pool.commit();
  const r = checkPool(pool);
  t.notOk(r.ok);
  t.match(r.problems.join('\n'), new RegExp(`chunk ${chunk} has refcount 2 but is referenced 1 times`));
});

t.test('a chunk counted but referenced by nothing is a leak', async (t) => {
  const { pool } = healthy();
  const chunk = pool['data'].reserve();
  pool['data'].confirm(chunk);
  pool.commit();
  t.match(checkPool(pool).problems.join('\n'), /chunk \d+ is leaked/);
});

t.test('a lost reference on a shared page is reported', async (t) => {
  const { pool } = healthy();
  const root = pool['volume']('v@s').tree.root;
  pool['meta'].dec(root);
  pool.commit();
  t.match(checkPool(pool).problems.join('\n'), /page \d+ has refcount 1 but is referenced 2 times|marked free/);
});

t.test('a damaged page fails its checksum', async (t) => {
  const mp = healthy();
  mp.pool.close();
  const image = mp.meta.image();
  const root = Pool.open(new MemoryDisk(image), new MemoryDisk(mp.data.image()))['volume']('v@s').tree.root;
  image[root * PAGE_SIZE + 100] ^= 0xff;
  const pool = Pool.open(new MemoryDisk(image), new MemoryDisk(mp.data.image()));
  const r = checkPool(pool);
  t.notOk(r.ok);
  t.match(r.problems.join('\n'), new RegExp(`page ${root} is damaged: checksum mismatch`));
});

t.test('a record whose mapped count is wrong is reported', async (t) => {
  const { pool } = healthy();
  pool['volume']('v').mapped += 1;
  t.match(checkPool(pool).problems.join('\n'), /volume v: record says \d+ chunks mapped/);
});

t.test('a torn superblock falls back to the other copy', async (t) => {
  const mp = healthy();
  const gen = mp.pool.generation;
  mp.pool.close();
  const image = mp.meta.image();
  image[(gen % 2) * PAGE_SIZE + 30] ^= 0xff; // the newest copy
  const pool = Pool.open(new MemoryDisk(image), new MemoryDisk(mp.data.image()));
  t.equal(pool.generation, gen - 1, 'opened the previous generation');
  t.ok(checkPool(pool).ok, 'and it is consistent');
});
