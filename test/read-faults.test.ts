/**
 * Read faults on the simulated disk (src/blockstore/sim-disk.ts): under a
 * seed, metadata reads come back with a flipped bit or fail with EIO, and
 * data reads fail with EIO. Whatever the pool answers must be the truth or
 * an error that says so:
 *  - a read that returns data returns exactly what the model holds;
 *  - a call during which a metadata page came back damaged fails with
 *    ECORRUPT (the damage is reported, never served as data), and ECORRUPT
 *    is never reported when nothing was damaged;
 *  - an injected read failure surfaces as EIO;
 *  - check() reports a page it read damaged;
 *  - with faults off again the pool reads every volume right (a damaged
 *    page is not cached).
 * Data chunks carry no checksum (as in ext4 or xfs), so flips are injected
 * into metadata reads only. COWVOL_SEED=N replays one seed.
 */
import t from 'tap';

import { checkPool } from '../src/blockstore/check.js';
import { MemoryDisk } from '../src/blockstore/memory-disk.js';
import { Pool } from '../src/blockstore/pool.js';
import { Prng } from '../src/blockstore/prng.js';
import { FaultPlan, SimDisk } from '../src/blockstore/sim-disk.js';
import { CowvolError } from '../src/errors.js';
import { runSeeds } from './helpers/seeds.js';
import { Model, applyToPool, nextOp } from './helpers/workload.js';

const SEEDS = Number(process.env.COWVOL_READ_SEEDS ?? 300);
/** Small caches, so that reads go back to the disk again and again. */
const OPTIONS = { cacheBytes: 16 * 4096, xlateEntries: 16 };

interface Built {
  model: Model;
  meta: Buffer;
  data: Buffer;
}

function build(rng: Prng): Built {
  const meta = new MemoryDisk();
  const data = new MemoryDisk();
  Pool.init(meta, data, { chunkSize: 4096 });
  const pool = Pool.open(meta, data);
  const model = new Model();
  const shape = { chunkSize: 4096, maxChunks: 1100, align: 512 };
  for (let i = 0; i < 40; i++) {
    const op = nextOp(rng, model, shape);
    model.apply(op);
    applyToPool(pool, op);
  }
  pool.close();
  return { model, meta: meta.image(), data: data.image() };
}

/** One read under faults, judged; null when the answer was the truth or an honest error. */
function judgedRead(pool: Pool, meta: SimDisk, data: SimDisk, name: string, want: Buffer, offset: number, length: number): string | null {
  const flips = meta.flips;
  const failures = meta.failures + data.failures;
  let got: Buffer;
  try {
    got = pool.read(name, offset, length);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === 'ECORRUPT') return meta.flips > flips ? null : `${name}: ECORRUPT though no page was damaged`;
    if (code === 'EIO') return meta.failures + data.failures > failures ? null : `${name}: EIO though no read failed`;
    return `${name}: unexpected ${String(err)}`;
  }
  if (meta.flips > flips) return `${name}: a damaged page was read and the call still returned data`;
  if (!got.equals(want.subarray(offset, offset + length))) return `${name} ${offset}+${length}: served data that no write gave it`;
  return null;
}

function runSeed(seed: number): string | null {
  const rng = new Prng(seed);
  const built = build(rng);
  const plan = new FaultPlan(seed ^ 0xfa17);
  const meta = new SimDisk(plan, built.meta);
  const data = new SimDisk(plan, built.data);
  const pool = Pool.open(meta, data, OPTIONS);
  // Faults from here on: opening (superblock, records) is covered by the torn-superblock tests.
  meta.readFaults = { flip: 0.04, fail: 0.02 };
  data.readFaults = { flip: 0, fail: 0.02 };
  const volumes = [...built.model.volumes.values()];
  for (let i = 0; i < 200 && volumes.length > 0; i++) {
    const v = rng.pick(volumes);
    const offset = rng.int(v.data.length / 512) * 512;
    const length = Math.min(v.data.length - offset, 512 * (1 + rng.int(64)));
    const wrong = judgedRead(pool, meta, data, v.name, v.data, offset, length);
    if (wrong !== null) return wrong;
  }
  const flipsBefore = meta.flips;
  let report;
  try {
    report = checkPool(pool);
  } catch (err) {
    if ((err as { code?: unknown }).code !== 'EIO') return `check threw ${String(err)}`;
  }
  if (report && meta.flips > flipsBefore && !report.problems.some((p) => p.includes('damaged'))) return 'check read a damaged page and did not report it';
  if (report && meta.flips === flipsBefore && !report.ok) return `check reported problems with no damage: ${report.problems[0]}`;
  meta.readFaults = null;
  data.readFaults = null;
  for (const v of volumes) {
    if (!pool.read(v.name, 0, v.data.length).equals(v.data)) return `${v.name}: wrong after the faults stopped`;
  }
  if (meta.flips + meta.failures + data.failures === 0) return null;
  return checkPool(pool).ok ? null : 'check not clean after the faults stopped';
}

t.test(`metadata pages read damaged are reported, never served (${SEEDS} seeds)`, async (t) => {
  await runSeeds(t, { first: 1, count: SEEDS, file: 'dist/test/read-faults.test.js', run: runSeed });
});

t.test('the faults really happen: flips and failures are injected', async (t) => {
  const plan = new FaultPlan(1);
  const disk = new SimDisk(plan, Buffer.alloc(4096, 7));
  disk.readFaults = { flip: 1, fail: 0 };
  const buf = Buffer.alloc(4096);
  disk.read(buf, 0);
  t.equal(disk.flips, 1);
  let differ = 0;
  for (const b of buf) if (b !== 7) differ++;
  t.equal(differ, 1, 'one byte differs (one bit flipped)');
  disk.readFaults = { flip: 0, fail: 1 };
  t.throws(() => disk.read(buf, 0), { code: 'EIO' });
  t.ok(CowvolError, 'errors module loads');
});
