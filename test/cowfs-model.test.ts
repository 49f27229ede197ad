/**
 * cowfs against a model: random sequences of creates, mkdirs, symlinks,
 * hard links, unlinks, rmdirs, renames (plain, NOREPLACE, EXCHANGE), writes
 * across regions, truncates both ways, hole punches and xattrs, with
 * snapshots and writable clones taken along the way and the pool reopened
 * mid-sequence. Every operation answers what the model says (its errno
 * included); at the end the volume, every snapshot and every clone read
 * back as their models, and the pool's check and the filesystem check are
 * clean, again after reopening. COWVOL_SEED=N replays one sequence.
 */
import t from 'tap';

import { checkPool } from '../src/blockstore/check.js';
import { MemoryDisk } from '../src/blockstore/memory-disk.js';
import { Pool } from '../src/blockstore/pool.js';
import { Prng } from '../src/blockstore/prng.js';
import { checkFilesystem } from '../src/cowfs/fs-check.js';
import { Filesystem } from '../src/cowfs/filesystem.js';
import { runSeeds } from './helpers/seeds.js';
import { FsModel, applyToFs, describeFsOp, dumpFs, dumpModel, nextFsOp } from './helpers/fs-workload.js';

const SEQUENCES = Number(process.env.COWVOL_SEQUENCES ?? 120);
const SIZE = 64 << 20;

interface Copy {
  name: string;
  model: FsModel;
  /** Snapshots keep the dump of the moment they were taken. */
  frozen: string | null;
}

function compareAll(pool: Pool, copies: Copy[]): string | null {
  for (const c of copies) {
    const fs = new Filesystem(pool, pool.stat(c.name).id);
    const got = dumpFs(fs);
    const want = c.frozen ?? dumpModel(c.model);
    if (got !== want) return `${c.name} differs from its model:\n--- got\n${got}\n--- want\n${want}`;
  }
  const report = checkPool(pool);
  if (!report.ok) return `pool check: ${report.problems.join('; ')}`;
  for (const c of copies) {
    const problems = checkFilesystem(pool, pool.stat(c.name).id);
    if (problems.length > 0) return `filesystem check: ${problems.join('; ')}`;
  }
  return null;
}

function runSequence(seed: number): string | null {
  const rng = new Prng(seed);
  const chunkSize = rng.pick([4096, 16384]);
  const meta = new MemoryDisk();
  const data = new MemoryDisk();
  Pool.init(meta, data, { chunkSize });
  const options = { cacheBytes: rng.chance(0.5) ? 64 * 1024 : 8 << 20 };
  let pool = Pool.open(meta, data, options);
  pool.createVolume('v', SIZE, { kind: 'fs', filesystem: true });
  Filesystem.format(pool, 'v', { uid: 0, gid: 0 });
  const copies: Copy[] = [{ name: 'v', model: new FsModel(), frozen: null }];
  let active = copies[0] as Copy;
  const steps = 30 + rng.int(120);
  for (let i = 0; i < steps; i++) {
    const op = nextFsOp(rng, active.model, chunkSize);
    const fs = new Filesystem(pool, pool.stat(active.name).id);
    const want = active.model.apply(op);
    const got = applyToFs(fs, op);
    if (got !== want) return `step ${i} on ${active.name} (${describeFsOp(op)}): filesystem says ${got ?? 'ok'}, model ${want ?? 'ok'}`;
    if (rng.chance(0.04)) {
      const name = `${active.name}@s${i}`;
      pool.fork(active.name, name, { readOnly: true });
      copies.push({ name, model: active.model.clone(), frozen: dumpModel(active.model) });
    }
    if (rng.chance(0.03)) {
      const name = `c${i}`;
      pool.fork(active.name, name, { readOnly: false });
      const clone: Copy = { name, model: active.model.clone(), frozen: null };
      copies.push(clone);
      if (rng.chance(0.5)) active = clone;
    }
    if (rng.chance(0.03)) {
      pool.close();
      pool = Pool.open(meta, data, options);
    }
    if (rng.chance(0.02)) {
      const wrong = compareAll(pool, copies);
      if (wrong) return `after step ${i}: ${wrong}`;
    }
  }
  const wrong = compareAll(pool, copies);
  if (wrong) return wrong;
  pool.close();
  const reopened = Pool.open(new MemoryDisk(meta.image()), new MemoryDisk(data.image()), options);
  const again = compareAll(reopened, copies);
  if (again) return `after reopen: ${again}`;
  // Deleting in any order leaves the rest whole, and the last delete frees everything.
  for (const c of [...copies].reverse().filter((_, n) => n % 2 === 0)) reopened.remove(c.name);
  const left = copies.filter((c) => reopened.has(c.name));
  const afterDelete = compareAll(reopened, left);
  if (afterDelete) return `after deleting some: ${afterDelete}`;
  for (const c of left) reopened.remove(c.name);
  const empty = reopened.stats();
  if (empty.usedChunks !== 0) return `every volume deleted, ${empty.usedChunks} chunks still used`;
  return null;
}

t.test(`random filesystem sequences match the model (${process.env.COWVOL_SEED ?? SEQUENCES})`, async (t) => {
  await runSeeds(t, { first: 5000, count: SEQUENCES, file: 'dist/test/cowfs-model.test.js', run: runSequence });
});
