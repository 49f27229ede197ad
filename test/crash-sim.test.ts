/**
 * Crash test on the simulated disk (src/blockstore/sim-disk.ts). Each seed
 * runs a random workload and cuts power at a random disk operation; unsynced
 * writes are then kept, lost or torn at 512-byte sectors as the seed says.
 * The recovered pool must open, pass check(), hold every flushed write, and
 * show each unflushed operation wholly or not at all:
 *  - the namespace (names, sizes, kinds) is the one of the last durable
 *    operation, or of the operation the crash interrupted if its commit
 *    landed;
 *  - every 512-byte sector of every volume holds its value at the last
 *    durable point or a value a later write (or discard) gave it.
 * Then the pool must take new writes and commit again. COWVOL_SEED=N replays.
 */
import t from 'tap';

import { checkPool } from '../src/blockstore/check.js';
import { MemoryDisk } from '../src/blockstore/memory-disk.js';
import { Pool } from '../src/blockstore/pool.js';
import { Prng } from '../src/blockstore/prng.js';
import { CrashError, FaultPlan, SimDisk } from '../src/blockstore/sim-disk.js';
import { runSeeds } from './helpers/seeds.js';
import { Model, type ModelVolume, type Op, applyToPool, describe, nextOp } from './helpers/workload.js';

const SEEDS = Number(process.env.COWVOL_CRASH_SEEDS ?? 3000);
const only = process.env.COWVOL_SEED === undefined ? null : Number(process.env.COWVOL_SEED);
const SECTOR = 512;

/** What a crash may legally leave. */
interface Candidate {
  label: string;
  volumes: Map<string, ModelVolume>;
  /** Per volume, per sector: values written since this candidate's durable point. */
  alternatives: Map<string, Map<number, Buffer[]>>;
}

function snapshotModel(model: Model): Map<string, ModelVolume> {
  const out = new Map<string, ModelVolume>();
  for (const [k, v] of model.volumes) out.set(k, { ...v, data: Buffer.from(v.data) });
  return out;
}

function recordAlternatives(alts: Map<string, Map<number, Buffer[]>>, model: Model, op: Op): void {
  if (op.kind !== 'write' && op.kind !== 'discard') return;
  const length = op.kind === 'write' ? op.data.length : op.length;
  const data = model.get(op.name).data;
  let perVolume = alts.get(op.name);
  if (!perVolume) alts.set(op.name, (perVolume = new Map()));
  for (let s = Math.floor(op.offset / SECTOR); s * SECTOR < op.offset + length; s++) {
    const list = perVolume.get(s) ?? [];
    list.push(Buffer.from(data.subarray(s * SECTOR, (s + 1) * SECTOR)));
    perVolume.set(s, list);
  }
}

function matches(pool: Pool, c: Candidate): string | null {
  const names = pool.list().map((v) => v.name).sort();
  const want = [...c.volumes.keys()].sort();
  if (names.join(',') !== want.join(',')) return `${c.label}: volumes [${names}] != [${want}]`;
  for (const v of c.volumes.values()) {
    const info = pool.stat(v.name);
    if (info.size !== v.data.length || info.readOnly !== v.readOnly) return `${c.label}: ${v.name} size/kind differ`;
    const got = pool.read(v.name, 0, v.data.length);
    const alts = c.alternatives.get(v.name);
    for (let s = 0; s * SECTOR < v.data.length; s++) {
      const have = got.subarray(s * SECTOR, (s + 1) * SECTOR);
      if (have.equals(v.data.subarray(s * SECTOR, (s + 1) * SECTOR))) continue;
      if (alts?.get(s)?.some((b) => b.equals(have))) continue;
      return `${c.label}: ${v.name} sector ${s} holds a value no write gave it`;
    }
  }
  return null;
}

function runSeed(seed: number): string | null {
  const rng = new Prng(seed);
  const chunkSize = rng.pick([4096, 8192]);
  const shape = { chunkSize, maxChunks: rng.chance(0.1) ? 1100 : 24, align: SECTOR };
  const plan = new FaultPlan(seed ^ 0x5eed, { crashAt: 1 + rng.int(rng.chance(0.5) ? 60 : 600) });
  const metaDisk = new SimDisk(plan);
  const dataDisk = new SimDisk(plan);
  const options = { cacheBytes: rng.chance(0.5) ? 64 * 1024 : 4 << 20, dirtyPageLimit: rng.chance(0.5) ? 16 : 1000 };
  const model = new Model();
  let durable: Candidate = { label: 'last durable point', volumes: new Map(), alternatives: new Map() };
  let interrupted: Candidate | null = null;
  let log: string[] = [];
  try {
    Pool.init(metaDisk, dataDisk, { chunkSize });
    const pool = Pool.open(metaDisk, dataDisk, options);
    const steps = 10 + rng.int(60);
    for (let i = 0; i < steps; i++) {
      const op = nextOp(rng, model, shape);
      log.push(describe(op));
      model.apply(op);
      recordAlternatives(durable.alternatives, model, op);
      const durableOp = op.kind !== 'write' && op.kind !== 'discard' && op.kind !== 'bad';
      interrupted = durableOp ? { label: `after ${describe(op)}`, volumes: snapshotModel(model), alternatives: new Map() } : null;
      try {
        applyToPool(pool, op);
      } catch (err) {
        if (err instanceof CrashError) throw err;
        return `step ${i} ${describe(op)} failed: ${(err as Error).stack}`;
      }
      if (durableOp) durable = { label: `after ${describe(op)}`, volumes: snapshotModel(model), alternatives: new Map() };
      interrupted = null;
    }
    plan.crashed = true; // the workload ended first: power is cut now
  } catch (err) {
    if (!(err instanceof CrashError)) return `unexpected: ${(err as Error).stack}`;
    if (log.length === 0) return null; // crashed inside init: there is no pool yet
  }
  log = log.slice(-8);
  let pool: Pool;
  try {
    pool = Pool.open(new MemoryDisk(metaDisk.crashImage()), new MemoryDisk(dataDisk.crashImage()), options);
  } catch (err) {
    return `recovered pool does not open: ${(err as Error).message}\n  last ops: ${log.join(' | ')}`;
  }
  const report = checkPool(pool);
  if (!report.ok) return `check after crash: ${report.problems.slice(0, 5).join('; ')}\n  last ops: ${log.join(' | ')}`;
  const tries = [durable, ...(interrupted ? [interrupted] : [])];
  const verdicts = tries.map((c) => matches(pool, c));
  if (verdicts.every((v) => v !== null)) return `${verdicts.join(' / ')}\n  last ops: ${log.join(' | ')}`;
  // The recovered pool keeps working.
  const vols = pool.list().filter((v) => !v.readOnly);
  const target = vols[0];
  if (target) {
    pool.write(target.name, 0, Buffer.alloc(512, 0xab));
    pool.flush();
  }
  pool.createVolume('after-crash', 8192);
  const again = checkPool(pool);
  if (!again.ok) return `check after post-crash writes: ${again.problems.slice(0, 5).join('; ')}`;
  return null;
}

t.test(`power loss at any disk operation (${only === null ? `${SEEDS} seeds` : `seed ${only}`})`, async (t) => {
  runSeeds(t, { first: 7000, count: SEEDS, file: 'dist/test/crash-sim.test.js', run: runSeed });
});
