/**
 * Model-based test: thousands of random sequences of create, write, discard,
 * grow, snapshot, clone, delete, flush and rejected operations against the
 * pool and a plain in-memory model. After every sequence each volume reads
 * back exactly as the model says, check() is clean, and the same holds after
 * reopening the pool from its disks. A failure prints its seed;
 * COWVOL_SEED=N replays that one sequence.
 */
import t from 'tap';

import { checkPool } from '../src/blockstore/check.js';
import { MemoryDisk } from '../src/blockstore/memory-disk.js';
import { Pool } from '../src/blockstore/pool.js';
import { Prng } from '../src/blockstore/prng.js';
import { runSeeds } from './helpers/seeds.js';
import { Model, applyToPool, describe, nextOp } from './helpers/workload.js';

const SEQUENCES = Number(process.env.COWVOL_SEQUENCES ?? 2000);
const only = process.env.COWVOL_SEED === undefined ? null : Number(process.env.COWVOL_SEED);

function compare(pool: Pool, model: Model): string | null {
  const names = pool.list().map((v) => v.name).sort();
  const want = [...model.volumes.keys()].sort();
  if (JSON.stringify(names) !== JSON.stringify(want)) return `volumes ${names.join(',')} != model ${want.join(',')}`;
  for (const v of model.volumes.values()) {
    const info = pool.stat(v.name);
    if (info.size !== v.data.length) return `${v.name}: size ${info.size} != ${v.data.length}`;
    if (info.readOnly !== v.readOnly) return `${v.name}: readOnly ${info.readOnly}`;
    const got = pool.read(v.name, 0, v.data.length);
    if (!got.equals(v.data)) {
      let at = 0;
      while (got[at] === v.data[at]) at++;
      return `${v.name}: differs at byte ${at} (chunk ${Math.floor(at / pool.chunkSize)})`;
    }
  }
  return null;
}

function runSequence(seed: number): string | null {
  const rng = new Prng(seed);
  const chunkSize = rng.pick([4096, 8192, 16384]);
  const shape = { chunkSize, maxChunks: rng.chance(0.15) ? 1100 : 64 };
  const meta = new MemoryDisk();
  const data = new MemoryDisk();
  Pool.init(meta, data, { chunkSize });
  const options = { cacheBytes: rng.chance(0.5) ? 64 * 1024 : 8 << 20, xlateEntries: rng.chance(0.5) ? 16 : 4096 };
  let pool = Pool.open(meta, data, options);
  const model = new Model();
  const steps = 20 + rng.int(80);
  for (let i = 0; i < steps; i++) {
    const op = nextOp(rng, model, shape);
    try {
      applyToPool(pool, op);
    } catch (err) {
      return `step ${i} (${describe(op)}): ${(err as Error).stack}`;
    }
    model.apply(op);
    if (rng.chance(0.05)) {
      const wrong = compare(pool, model);
      if (wrong) return `after step ${i} (${describe(op)}): ${wrong}`;
    }
    if (rng.chance(0.03)) {
      pool.close();
      pool = Pool.open(meta, data, options);
    }
  }
  const report = checkPool(pool);
  if (!report.ok) return `check: ${report.problems.join('; ')}`;
  const wrong = compare(pool, model);
  if (wrong) return wrong;
  pool.close();
  const reopened = Pool.open(new MemoryDisk(meta.image()), new MemoryDisk(data.image()), options);
  const again = compare(reopened, model);
  if (again) return `after reopen: ${again}`;
  const report2 = checkPool(reopened);
  if (!report2.ok) return `check after reopen: ${report2.problems.join('; ')}`;
  return null;
}

t.test(`random sequences match the model (${only === null ? SEQUENCES : `seed ${only}`})`, async (t) => {
  await runSeeds(t, { first: 1000, count: SEQUENCES, file: 'dist/test/pool-model.test.js', run: runSequence });
});
