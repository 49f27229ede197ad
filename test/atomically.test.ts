/**
 * Pool.atomically: no commit inside the step, whatever asks for one (the
 * dirty-page bound, a full map-change journal); the commit a full journal
 * made due comes once, at the step's end, and not again after.
 */
import t from 'tap';

import type { MappingListener } from '../src/blockstore/pool.js';
import { Filesystem } from '../src/cowfs/filesystem.js';
import { memoryPool } from './helpers/pools.js';

t.test('a full journal commits once, at the end of the step, and the next step commits nothing', async (t) => {
  const { pool } = memoryPool({ chunkSize: 4096 }, { dirtyPageLimit: 16 });
  pool.createVolume('v', 64 << 20, { kind: 'fs', filesystem: true, items: Filesystem.emptyItems({ uid: 0, gid: 0 }) });
  const id = pool.stat('v').id;
  let full = true;
  const listener: MappingListener = { dropVolume: () => {}, dropChunk: () => {}, journal: () => !full };
  pool.listener = listener;
  const fs = new Filesystem(pool, id);
  const file = fs.mknod(1, Buffer.from('f'), 0o100644, 0, { uid: 0, gid: 0 });
  const commits = (): number => pool.activity().commits;

  const before = commits();
  let inside = -1;
  pool.atomically(() => {
    // First writes far apart: each journals (refused: full) and dirties map pages past the bound.
    for (let i = 0; i < 64; i++) fs.write(file.ino, i * (1 << 20), Buffer.alloc(4096, i));
    inside = commits();
  });
  t.equal(inside, before, 'nothing committed inside the step');
  t.equal(commits(), before + 1, 'one commit at its end');

  full = false;
  const after = commits();
  fs.setxattr(file.ino, Buffer.from('user.x'), Buffer.from('y'), 0);
  t.equal(commits(), after, 'a later step with nothing due commits nothing');
});
