/**
 * Crash test on the simulated disk (src/blockstore/sim-disk.ts). Each seed
 * runs a random workload and cuts power at a random disk operation; unsynced
 * writes are then kept, lost or torn at 512-byte sectors, in shuffled order,
 * as the seed says. Half the flushes are FUSE-style (flushAsync): awaited,
 * or left in flight for the next operation to finish (Pool.settle) or for
 * the crash to cut. Half the seeds put a stand-in for the native chunk
 * table in front (helpers/frontend.ts): it serves in-place writes and first
 * writes into holes with reserved chunks, writing the data disk itself, and
 * the pool folds those into its maps; it also answers flushes with a data
 * sync of its own while the pool says no commit is needed. The recovered
 * pool must open, pass check(), hold every flushed write, and show each
 * unflushed operation wholly or not at all:
 *  - the namespace (names, sizes, kinds) is the one of the last durable
 *    operation, or of the operation the crash interrupted if its commit
 *    landed;
 *  - every 512-byte sector of every volume holds its value at the last
 *    durable point or a value a later write (or discard) gave it. A commit
 *    that landed does not make unflushed first writes whole: a first write
 *    into a zero chunk shares one flush with its commit, so its sectors may
 *    still read as before (a snapshot or clone taken then shows the same).
 * Then the pool must take new writes and commit again. COWVOL_SEED=N replays.
 */
import t from 'tap';

import { checkPool } from '../src/blockstore/check.js';
import { MemoryDisk } from '../src/blockstore/memory-disk.js';
import { Pool } from '../src/blockstore/pool.js';
import { Prng } from '../src/blockstore/prng.js';
import { CrashError, FaultPlan, SimDisk } from '../src/blockstore/sim-disk.js';
import { TableModel } from './helpers/frontend.js';
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

/** The sectors a write or discard touches, with their values in the model now. */
function sectorValues(model: Model, op: Op): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  if (op.kind !== 'write' && op.kind !== 'discard') return out;
  const length = op.kind === 'write' ? op.data.length : op.length;
  const data = model.get(op.name).data;
  for (let s = Math.floor(op.offset / SECTOR); s * SECTOR < op.offset + length; s++) {
    out.set(s, Buffer.from(data.subarray(s * SECTOR, (s + 1) * SECTOR)));
  }
  return out;
}

/** Adds what `op` wrote; a sector's first entry is its value before (the durable one, for a volume the candidate shares). */
function recordAlternatives(alts: Map<string, Map<number, Buffer[]>>, name: string, before: Map<number, Buffer>, after: Map<number, Buffer>): void {
  let perVolume = alts.get(name);
  if (!perVolume) alts.set(name, (perVolume = new Map()));
  for (const [s, value] of after) {
    const list = perVolume.get(s) ?? [before.get(s) as Buffer];
    list.push(value);
    perVolume.set(s, list);
  }
}

function copyAlternatives(alts: Map<string, Map<number, Buffer[]>>): Map<string, Map<number, Buffer[]>> {
  const out = new Map<string, Map<number, Buffer[]>>();
  for (const [name, perVolume] of alts) out.set(name, new Map([...perVolume].map(([s, list]) => [s, [...list]])));
  return out;
}

/**
 * The state if the commit of durable op `op` lands: its namespace, and per
 * sector what the writes since the last durable point may have left. A
 * snapshot or clone inherits its source's possibilities.
 */
function interruptedBy(op: Op, model: Model, durable: Candidate): Candidate {
  const alternatives = copyAlternatives(durable.alternatives);
  const source = op.kind === 'snapshot' ? op.name : op.kind === 'clone' ? op.source : null;
  const copy = source === null ? undefined : alternatives.get(source);
  if (copy && (op.kind === 'snapshot' || op.kind === 'clone')) {
    const name = op.kind === 'snapshot' ? `${op.name}@${op.snap}` : op.name;
    alternatives.set(name, new Map([...copy].map(([s, list]) => [s, [...list]])));
  }
  return { label: `after ${describe(op)}`, volumes: snapshotModel(model), alternatives };
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

/** `durable`, with volume `name` as the model holds it now: what a flush of that one volume makes durable. */
function flushedOne(durable: Candidate, model: Model, name: string, step: number): Candidate {
  const volumes = new Map(durable.volumes);
  const v = model.get(name);
  volumes.set(name, { ...v, data: Buffer.from(v.data) });
  const alternatives = copyAlternatives(durable.alternatives);
  alternatives.delete(name);
  return { label: `after flushAsync(${name}) at step ${step}`, volumes, alternatives };
}

/** Whether the chunk table stand-in served the operation itself (a write, or a flush that needs no commit). */
function served(table: TableModel | null, pool: Pool, op: Op): boolean {
  if (table === null) return false;
  if (op.kind === 'write') return table.write(pool.stat(op.name).id, op.offset, op.data);
  return op.kind === 'flush' && table.flush();
}

async function runSeed(seed: number): Promise<string | null> {
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
  /** flushAsync calls not awaited: each may or may not have landed. */
  const unsettled: Candidate[] = [];
  let log: string[] = [];
  try {
    Pool.init(metaDisk, dataDisk, { chunkSize });
    const pool = Pool.open(metaDisk, dataDisk, options);
    const table = rng.chance(0.5) ? new TableModel(new Prng(seed ^ 0x7ab1e), dataDisk, chunkSize) : null;
    pool.listener = table;
    const steps = 10 + rng.int(60);
    for (let i = 0; i < steps; i++) {
      const op = nextOp(rng, model, shape);
      const asyncFlush = op.kind === 'flush' && rng.chance(0.5);
      log.push(asyncFlush ? 'flushAsync' : describe(op));
      const before = sectorValues(model, op);
      model.apply(op);
      const after = sectorValues(model, op);
      if (op.kind === 'write' || op.kind === 'discard') {
        for (const c of [durable, ...unsettled]) recordAlternatives(c.alternatives, op.name, before, after);
      }
      const durableOp = op.kind !== 'write' && op.kind !== 'discard' && op.kind !== 'bad' && !asyncFlush;
      interrupted = durableOp ? interruptedBy(op, model, durable) : null;
      if (asyncFlush) {
        // Half of them flush one volume (as a FUSE fsync does): only its writes must be durable then.
        const writable = model.writable();
        const one = writable.length > 0 && rng.chance(0.5) ? rng.pick(writable).name : undefined;
        const landed = pool.flushAsync(one);
        landed.catch(() => undefined);
        const state = one === undefined ? { label: `after flushAsync at step ${i}`, volumes: snapshotModel(model), alternatives: new Map() } : flushedOne(durable, model, one, i);
        if (rng.chance(0.5)) {
          // Power may have gone during it, or before it (the pool then refuses with EIO).
          await landed.catch((err: unknown) => {
            throw plan.crashed ? new CrashError() : err;
          });
          durable = state;
          if (one === undefined) unsettled.length = 0;
        } else {
          unsettled.push(state);
        }
        continue;
      }
      try {
        if (!served(table, pool, op)) applyToPool(pool, op);
      } catch (err) {
        // A flush left in flight may have met the power cut first: the pool then refuses with EIO.
        if (err instanceof CrashError || plan.crashed) throw new CrashError();
        return `step ${i} ${describe(op)} failed: ${(err as Error).stack}`;
      }
      if (durableOp) {
        durable = { label: `after ${describe(op)}`, volumes: snapshotModel(model), alternatives: new Map() };
        unsettled.length = 0;
      }
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
  const tries = [durable, ...unsettled, ...(interrupted ? [interrupted] : [])];
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
  await runSeeds(t, { first: 7000, count: SEEDS, file: 'dist/test/crash-sim.test.js', run: runSeed });
});
