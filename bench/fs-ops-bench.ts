/**
 * What a cowfs namespace operation costs in JavaScript alone (issue 11):
 * Filesystem.mknod, getattr and unlink of FILES files in 200 directories,
 * each in its own atomically() step as a mount serves it, over a pool on
 * memory disks, with a commit every 5000. No FUSE, no kernel, no threads:
 * the part of a create or an unlink that the daemon's one JavaScript
 * thread spends in the tree, which the FUSE bench (cowfs-bench.ts) cannot
 * tell apart from the machine's scheduling noise.
 *
 *   node dist/bench/fs-ops-bench.js [--files N] [--runs R]
 *
 * Prints microseconds per operation for each run, then the medians.
 * Caveat: the tree's pages live in memory here; on a pool file a commit
 * also writes them, which this does not time.
 */
import { MemoryDisk } from '../src/blockstore/memory-disk.js';
import { Pool } from '../src/blockstore/pool.js';
import { Filesystem } from '../src/cowfs/filesystem.js';
import { flag } from './args.js';

const files = Number(flag('--files') ?? 20000);
const runs = Number(flag('--runs') ?? 3);
const DIRS = 200;
const COMMIT_EVERY = 5000;

type Op = 'mknod' | 'getattr' | 'unlink';

function microsPer(count: number, fn: () => void): number {
  const t0 = performance.now();
  fn();
  return ((performance.now() - t0) * 1000) / count;
}

function once(): Record<Op, number> {
  const meta = new MemoryDisk();
  const data = new MemoryDisk();
  Pool.init(meta, data, { chunkSize: 64 * 1024 });
  const pool = Pool.open(meta, data);
  const v = pool.createVolume('fs', 2 ** 30, { kind: 'fs', filesystem: true, items: Filesystem.emptyItems({ uid: 0, gid: 0 }) });
  const fs = new Filesystem(pool, v.id);
  const caller = { uid: 0, gid: 0, umask: 0o22 };
  const dirs: number[] = [];
  for (let d = 0; d < DIRS; d++) dirs.push(pool.atomically(() => fs.mkdir(1, Buffer.from(`d${d}`), 0o755, caller)).ino);
  const dirOf = (i: number): number => dirs[i % DIRS] as number;
  const inos: number[] = [];
  const commitNow = (i: number): void => {
    if (i % COMMIT_EVERY === COMMIT_EVERY - 1) pool.commit();
  };
  const mknod = microsPer(files, () => {
    for (let i = 0; i < files; i++) {
      inos.push(pool.atomically(() => fs.mknod(dirOf(i), Buffer.from(`f${i}`), 0o100644, 0, caller)).ino);
      commitNow(i);
    }
  });
  const getattr = microsPer(files, () => {
    for (const ino of inos) pool.atomically(() => fs.getattr(ino));
  });
  const unlink = microsPer(files, () => {
    for (let i = 0; i < files; i++) {
      pool.atomically(() => fs.unlink(dirOf(i), Buffer.from(`f${i}`)));
      commitNow(i);
    }
  });
  pool.close();
  return { mknod, getattr, unlink };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

const results: Record<Op, number>[] = [];
for (let r = 0; r < runs; r++) {
  const one = once();
  results.push(one);
  console.log(`run ${r + 1}: mknod ${one.mknod.toFixed(1)} us, getattr ${one.getattr.toFixed(1)} us, unlink ${one.unlink.toFixed(1)} us`);
}
const ops: Op[] = ['mknod', 'getattr', 'unlink'];
console.log(`median of ${runs}, ${files} files: ${ops.map((op) => `${op} ${median(results.map((x) => x[op])).toFixed(1)} us`).join(', ')}`);
