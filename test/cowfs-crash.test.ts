/**
 * Power loss under cowfs, on the simulated disk (src/blockstore/sim-disk.ts):
 * each seed runs random namespace and data operations on a filesystem
 * volume (with flushes, FUSE-style async flushes and snapshots among them)
 * and cuts power at a random disk operation; unsynced writes are kept, lost
 * or torn, in shuffled order. The recovered pool must open, pass the pool's
 * check and the filesystem's, and:
 *  - its namespace (names, kinds, link counts, sizes, symlink targets,
 *    xattrs) is exactly the state after one operation, at or after the
 *    last flush that returned: every operation is whole or absent;
 *  - every 512-byte sector of every file holds a value that path held at
 *    one of those states (or, since the disk may land an older write last,
 *    bytes each of which one of them held), and one that no later operation
 *    changed holds exactly its flushed value (zeros are allowed only where
 *    a write since the flush was lost);
 *  - a snapshot that survived has the namespace of its moment.
 * Among the operations are first writes into holes as the addon makes them
 * (`NativeFirstWrites`: a new file's first chunk, the first chunk past a
 * file's end, or an unmapped chunk inside a sparse file, which moves no
 * size): straight into a reserved chunk, folded into the tree only
 * when the next operation, flush or snapshot starts, as a mount folds
 * before each request; a crash may come before the fold. And writes into a
 * chunk a snapshot shares as the addon makes them (a CoW break): the chunk
 * copied into a reserved one with the write over it, folded the same way.
 * Then it takes new operations and commits again. COWVOL_SEED=N replays.
 */
import t from 'tap';

import { checkPool } from '../src/blockstore/check.js';
import { MemoryDisk } from '../src/blockstore/memory-disk.js';
import type { Disk } from '../src/blockstore/disk.js';
import { Pool } from '../src/blockstore/pool.js';
import { Prng } from '../src/blockstore/prng.js';
import type { Reserve } from '../src/blockstore/reserve.js';
import { CrashError, FaultPlan, SimDisk } from '../src/blockstore/sim-disk.js';
import { checkFilesystem } from '../src/cowfs/fs-check.js';
import { Filesystem } from '../src/cowfs/filesystem.js';
import { FsModel, applyToFs, describeFsOp, dumpFs, dumpModel, ino, nextFsOp } from './helpers/fs-workload.js';
import { runSeeds } from './helpers/seeds.js';

const SEEDS = Number(process.env.COWVOL_CRASH_SEEDS ?? 600);
/** Across the seeds: first writes and CoW breaks made as the addon makes them, and crashes that found some not folded yet. */
const tally = { native: 0, inside: 0, breaks: 0, cutBeforeFold: 0 };
const SECTOR = 512;

/** A state the crash may leave: the model after some operation. */
interface State {
  label: string;
  model: FsModel;
}

/** Files by identity in a state, and the identity of each path. */
function filesOf(s: State): { byId: Map<number, Buffer>; idOf: Map<string, number> } {
  const files = s.model.all().filter(([, n]) => n.kind === 'file');
  return { byId: new Map(files.map(([, n]) => [n.id, n.data])), idOf: new Map(files.map(([p, n]) => [p.join('/'), n.id])) };
}

/**
 * Each file of the recovered state `matched`, sector by sector, against what
 * that file (by identity, whatever its name then) held in every state since
 * the flush: a rename can be lost while a write in place after it lands.
 */
function sectorsOk(fs: Filesystem, states: State[], matched: number): string | null {
  const files = states.map(filesOf);
  const durable = (files[0] as ReturnType<typeof filesOf>).byId;
  for (const [path, id] of (files[matched] as ReturnType<typeof filesOf>).idOf) {
    const inode = fs.getattr(ino(fs, path.split('/')));
    const got = fs.read(inode.ino, 0, inode.size);
    for (let s = 0; s * SECTOR < inode.size; s++) {
      const have = got.subarray(s * SECTOR, (s + 1) * SECTOR);
      // The same bytes in each state (a state where the file was shorter reads zeros past its end).
      const span = (data: Buffer | undefined): Buffer | undefined => {
        if (data === undefined) return undefined;
        const out = Buffer.alloc(have.length);
        if (data.length > s * SECTOR) data.copy(out, 0, s * SECTOR, Math.min(data.length, s * SECTOR + have.length));
        return out;
      };
      const values = files.map((f) => span(f.byId.get(id))).filter((v): v is Buffer => v !== undefined);
      if (values.some((v) => v.equals(have))) continue;
      const first = span(durable.get(id));
      const unchanged = first !== undefined && values.length === files.length && values.every((v) => v.equals(first));
      if (!unchanged && have.every((b) => b === 0)) continue;
      // The disk may land an older unsynced write after a newer one (sim-disk.ts): a write that covered
      // part of the sector over a later one that covered all of it leaves bytes of both.
      if (!unchanged && have.every((b, k) => b === 0 || values.some((v) => v[k] === b))) continue;
      return `${path} sector ${s} holds a value that file never had${unchanged ? ' (a flushed, unchanged sector)' : ''}`;
    }
  }
  return null;
}

/**
 * What a cowfs mount's FUSE threads do with a new file's first write
 * (native/src/chunk_table.c, src/fuse/file-chunks.ts): the bytes go into a
 * zero chunk of the mount's reserve, and the take and the file's new end
 * wait for `fold`, which the mount makes before it serves anything else.
 */
class NativeFirstWrites {
  private readonly reserve: Reserve;
  private readonly handed: number[] = [];
  /** end: how far a write through a hole past the end reached; null for a hole inside the file or a break (the addon notes no end). */
  private pending: { ino: number; chunk: number; offset: number; old: number; end: number | null }[] = [];

  constructor(
    private readonly pool: Pool,
    private readonly fs: Filesystem,
    private readonly dataDisk: Disk,
  ) {
    this.reserve = pool.openReserve(8);
  }

  /** Into file chunk `chunk` at byte `within`, a hole past the file's end or (`inside`) in it; false when the reserve has nothing to give (no chunk is known to read as zeros yet). */
  write(ino: number, chunk: number, within: number, data: Buffer, inside: boolean): boolean {
    const offset = this.take();
    if (offset === undefined) return false;
    tally.native++;
    if (inside) tally.inside++;
    this.pending.push({ ino, chunk, offset, old: -1, end: inside ? null : chunk * this.pool.chunkSize + within + data.length });
    this.dataDisk.write(data, offset + within);
    return true;
  }

  /** Into file chunk `chunk`, mapped at data offset `old` and shared: the chunk copied into a reserved one with the write over it; false when the reserve has nothing to give. */
  overwriteShared(ino: number, chunk: number, within: number, data: Buffer, old: number): boolean {
    const offset = this.take();
    if (offset === undefined) return false;
    tally.breaks++;
    const copy = Buffer.alloc(this.pool.chunkSize);
    this.dataDisk.read(copy, old);
    data.copy(copy, within);
    this.pending.push({ ino, chunk, offset, old, end: null });
    this.dataDisk.write(copy, offset);
    return true;
  }

  private take(): number | undefined {
    if (this.handed.length === 0) {
      this.pool.topUpReserve(this.reserve, (offsets) => {
        this.handed.push(...offsets);
        return offsets.length;
      });
    }
    return this.handed.pop();
  }

  get waiting(): boolean {
    return this.pending.length > 0;
  }

  /** Waiting until it returns: a power cut inside it counts as one before the fold. */
  fold(): void {
    const pending = this.pending;
    if (pending.length === 0) return;
    const ends = pending.flatMap((p) => (p.end === null ? [] : [{ ino: p.ino, end: p.end }]));
    this.fs.absorb(this.reserve, { takes: pending, ends });
    this.pending = [];
  }
}

/** A whole chunk inside the file at `path` that a snapshot shares (the in-place rule refuses it), with its data offset; null for none. */
function sharedChunk(pool: Pool, fs: Filesystem, path: string[]): { path: string[]; chunk: number; offset: number } | null {
  const n = ino(fs, path);
  for (const c of fs.chunksIn(n, 0, fs.getattr(n).size).chunks) {
    const place = pool.placeOf('v', c.index);
    if (place !== null && !place.writable) return { path, chunk: c.chunk, offset: place.offset };
  }
  return null;
}

/** Runs an operation the power may cut: the caller then records what it may have left before the crash goes on. */
function survive<T>(op: () => T): T | null {
  try {
    return op();
  } catch (err) {
    if (err instanceof CrashError) return null;
    throw err;
  }
}

async function runSeed(seed: number): Promise<string | null> {
  const rng = new Prng(seed);
  const chunkSize = rng.pick([4096, 8192]);
  const plan = new FaultPlan(seed ^ 0xf5, { crashAt: 1 + rng.int(rng.chance(0.5) ? 80 : 800) });
  const metaDisk = new SimDisk(plan);
  const dataDisk = new SimDisk(plan);
  const options = { cacheBytes: rng.chance(0.5) ? 64 * 1024 : 4 << 20, dirtyPageLimit: rng.chance(0.5) ? 16 : 1000 };
  let model = new FsModel();
  /** The last flushed state first, then one per operation since. */
  let states: State[] = [];
  const snapshots = new Map<string, string>();
  const log: string[] = [];
  let formatted = false;
  let native: NativeFirstWrites | null = null;
  try {
    Pool.init(metaDisk, dataDisk, { chunkSize });
    const pool = Pool.open(metaDisk, dataDisk, options);
    pool.createVolume('v', 32 << 20, { kind: 'fs', filesystem: true });
    Filesystem.format(pool, 'v', { uid: 0, gid: 0 });
    formatted = true;
    states = [{ label: 'formatted', model: model.clone() }];
    const fs = new Filesystem(pool, pool.stat('v').id);
    const firstWrites = new NativeFirstWrites(pool, fs, dataDisk);
    native = firstWrites;
    const steps = 10 + rng.int(60);
    for (let i = 0; i < steps; i++) {
      // The background commit may start while first writes wait (it does not fold); the fold then finishes it.
      if (firstWrites.waiting && rng.chance(0.4)) fs.flush().catch(() => undefined);
      firstWrites.fold();
      const r = rng.int(100);
      if (r < 8) {
        log.push('flush');
        if (rng.chance(0.5)) pool.flush();
        else await fs.flush();
        states = [{ label: `flush at step ${i}`, model: model.clone() }];
        continue;
      }
      if (r < 12) {
        // An async flush left in flight: the next operation settles it, or the crash cuts it.
        log.push('flushAsync');
        fs.flush().catch(() => undefined);
        continue;
      }
      if (r < 15) {
        const name = `v@s${i}`;
        log.push(`snapshot ${name}`);
        pool.fork('v', name, { readOnly: true });
        snapshots.set(name, dumpModel(model, false));
        states = [{ label: `snapshot at step ${i}`, model: model.clone() }];
        continue;
      }
      const files = model.all().filter(([, n]) => n.kind === 'file');
      if (r < 20 && files.length > 0) {
        // A new file's first chunk, the first chunk wholly past a file's end, or one inside it never written: the holes a mount offers.
        const [path, file] = rng.pick(files);
        const inside = rng.chance(0.5) ? (fs.holesInside(ino(fs, path), 0, 1, 1 << 20)?.chunks[0] ?? null) : null;
        const chunk = inside ?? Math.ceil(file.data.length / chunkSize);
        const within = inside === null ? 0 : rng.int(chunkSize);
        const length = 1 + rng.int(chunkSize - within);
        const op = { op: 'write' as const, path, offset: chunk * chunkSize + within, length, byte: 1 + rng.int(250) };
        log.push(`native ${describeFsOp(op)}`);
        model.apply(op);
        const wrote = survive(() => firstWrites.write(ino(fs, path), chunk, within, Buffer.alloc(op.length, op.byte), inside !== null));
        if (plan.crashed) {
          states.push({ label: `interrupted native step ${i}`, model: model.clone() });
          throw new CrashError();
        }
        if (wrote) {
          states.push({ label: `after native step ${i} ${describeFsOp(op)}`, model: model.clone() });
          continue;
        }
        // Nothing reserved: the write goes to JavaScript, as the addon's would.
        if (applyToFs(fs, op) !== null) return `step ${i}: a write into an empty file failed`;
        states.push({ label: `after step ${i} ${describeFsOp(op)}`, model: model.clone() });
        continue;
      }
      const shared = r < 25 && files.length > 0 ? sharedChunk(pool, fs, rng.pick(files)[0]) : null;
      if (shared !== null) {
        const within = rng.int(chunkSize);
        const op = { op: 'write' as const, path: shared.path, offset: shared.chunk * chunkSize + within, length: 1 + rng.int(chunkSize - within), byte: 1 + rng.int(250) };
        log.push(`native break ${describeFsOp(op)}`);
        model.apply(op);
        const wrote = survive(() => firstWrites.overwriteShared(ino(fs, shared.path), shared.chunk, within, Buffer.alloc(op.length, op.byte), shared.offset));
        if (plan.crashed) {
          states.push({ label: `interrupted native break ${i}`, model: model.clone() });
          throw new CrashError();
        }
        // Nothing reserved: the write goes to JavaScript, which breaks the chunk itself.
        if (!wrote && applyToFs(fs, op) !== null) return `step ${i}: a write inside a file failed`;
        states.push({ label: `after native break ${i} ${describeFsOp(op)}`, model: model.clone() });
        continue;
      }
      const op = nextFsOp(rng, model, chunkSize);
      log.push(describeFsOp(op));
      const want = model.apply(op);
      const got = survive(() => applyToFs(fs, op));
      if (plan.crashed) {
        // Power went inside the operation; its commit (at its end) may have landed.
        states.push({ label: `interrupted step ${i} ${describeFsOp(op)}`, model: model.clone() });
        throw new CrashError();
      }
      if (got !== want) return `step ${i} ${describeFsOp(op)}: filesystem says ${got ?? 'ok'}, model ${want ?? 'ok'}`;
      states.push({ label: `after step ${i} ${describeFsOp(op)}`, model: model.clone() });
    }
    plan.crashed = true;
  } catch (err) {
    if (!(err instanceof CrashError) && !plan.crashed) return `unexpected: ${(err as Error).stack}`;
    if (native?.waiting === true) tally.cutBeforeFold++;
    if (!formatted) return null; // power went before the filesystem existed
  }
  const last = log.slice(-6).join(' | ');
  let pool: Pool;
  try {
    pool = Pool.open(new MemoryDisk(metaDisk.crashImage()), new MemoryDisk(dataDisk.crashImage()), options);
  } catch (err) {
    return `recovered pool does not open: ${(err as Error).message}\n  last ops: ${last}`;
  }
  const report = checkPool(pool);
  if (!report.ok) return `pool check after crash: ${report.problems.slice(0, 5).join('; ')}\n  last ops: ${last}`;
  if (!pool.has('v')) return `the volume is gone\n  last ops: ${last}`;
  const id = pool.stat('v').id;
  const problems = checkFilesystem(pool, id);
  if (problems.length > 0) return `filesystem check after crash: ${problems.slice(0, 5).join('; ')}\n  last ops: ${last}`;
  const fs = new Filesystem(pool, id);
  const shape = dumpFs(fs, false);
  const matched = states.findIndex((s) => dumpModel(s.model, false) === shape);
  if (matched < 0) return `the namespace is no state after the last flush:\n${shape}\n  wanted one of ${states.length}, the flushed one:\n${dumpModel((states[0] as State).model, false)}\n  last ops: ${last}`;
  const sectors = sectorsOk(fs, states, matched);
  if (sectors) return `${sectors}\n  last ops: ${last}`;
  for (const [name, want] of snapshots) {
    if (!pool.has(name)) continue;
    const got = dumpFs(new Filesystem(pool, pool.stat(name).id), false);
    if (got !== want) return `snapshot ${name} is not its moment's namespace\n  last ops: ${last}`;
  }
  // The recovered filesystem keeps working.
  model = new FsModel();
  const after = fs.mkdir(1, Buffer.from(`after-${seed}`), 0o755, { uid: 0, gid: 0 });
  fs.write(fs.mknod(after.ino, Buffer.from('f'), 0o100644, 0, { uid: 0, gid: 0 }).ino, 0, Buffer.alloc(5000, 7));
  pool.flush();
  const again = checkFilesystem(pool, id);
  if (again.length > 0) return `filesystem check after new operations: ${again.slice(0, 5).join('; ')}`;
  if (!checkPool(pool).ok) return 'pool check after new operations failed';
  return null;
}

t.test(`power loss under cowfs at any disk operation (${process.env.COWVOL_SEED ?? `${SEEDS} seeds`})`, async (t) => {
  await runSeeds(t, { first: 20000, count: SEEDS, file: 'dist/test/cowfs-crash.test.js', run: runSeed });
  if (process.env.COWVOL_SEED === undefined) {
    t.ok(tally.native > SEEDS / 4, `${tally.native} first writes made as the addon makes them`);
    t.ok(tally.inside > 0, `${tally.inside} of them into holes inside sparse files`);
    t.ok(tally.breaks > 0, `${tally.breaks} writes into shared chunks broken as the addon breaks them`);
    t.ok(tally.cutBeforeFold > 0, `${tally.cutBeforeFold} power cuts found some not folded yet`);
  }
});

/**
 * One operation that frees a lot (unlinking a file of many regions, then
 * truncating another) must land whole or not at all, whatever disk operation
 * the power cut stops at: the dirty-page bound must not commit half of it.
 */
t.test('power loss at every disk operation of a large unlink and a large truncate', async (t) => {
  const owner = { uid: 0, gid: 0 };
  const scenario = (crashAt: number): { plan: FaultPlan; meta: SimDisk; data: SimDisk; from: number; shapes: string[] } => {
    const plan = new FaultPlan(77, { crashAt });
    const meta = new SimDisk(plan);
    const data = new SimDisk(plan);
    const shapes: string[] = [];
    let from = 0;
    try {
      Pool.init(meta, data, { chunkSize: 4096 });
      const pool = Pool.open(meta, data, { cacheBytes: 64 * 1024, dirtyPageLimit: 16 });
      pool.createVolume('v', 32 << 20, { kind: 'fs', filesystem: true });
      Filesystem.format(pool, 'v', owner);
      const fs = new Filesystem(pool, pool.stat('v').id);
      const dir = fs.mkdir(1, Buffer.from('d'), 0o755, owner);
      for (const name of ['big', 'other']) {
        const file = fs.mknod(dir.ino, Buffer.from(name), 0o100644, 0, owner);
        // Sparse over 64 MiB: its chunks sit under many map pages, more than the dirty bound.
        for (let at = 0; at < 64 << 20; at += 256 << 10) fs.write(file.ino, at, Buffer.alloc(4096, 9));
      }
      pool.flush();
      shapes.push(dumpFs(fs, false));
      from = plan.ops;
      fs.unlink(dir.ino, Buffer.from('big'));
      shapes.push(dumpFs(fs, false));
      fs.setattr(fs.lookup(dir.ino, Buffer.from('other')).ino, { size: 1000 });
      shapes.push(dumpFs(fs, false));
      pool.flush();
    } catch (err) {
      if (!(err instanceof CrashError) && !plan.crashed) throw err;
    }
    return { plan, meta, data, from, shapes };
  };
  const whole = scenario(0);
  t.equal(whole.shapes.length, 3, 'the run without a power cut made both changes');
  const shapes = whole.shapes;
  let cut = 0;
  for (let at = whole.from + 1; at <= whole.plan.ops; at++) {
    const run = scenario(at);
    const pool = Pool.open(new MemoryDisk(run.meta.crashImage()), new MemoryDisk(run.data.crashImage()), { cacheBytes: 64 * 1024 });
    const problems = [...checkPool(pool).problems, ...checkFilesystem(pool, pool.stat('v').id)];
    const shape = dumpFs(new Filesystem(pool, pool.stat('v').id), false);
    if (problems.length > 0 || !shapes.includes(shape)) {
      t.fail(`power cut at disk operation ${at}: ${problems.length > 0 ? problems.slice(0, 3).join('; ') : `a namespace no operation left:\n${shape}`}`);
      return;
    }
    cut++;
  }
  t.ok(cut > 20, `${cut} power cuts, each left a whole state`);
});
