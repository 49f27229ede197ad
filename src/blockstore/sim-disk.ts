/**
 * A simulated disk with a volatile write cache, for crash testing.
 *
 * Writes land in a cache until `sync`. A `FaultPlan` shared by the pool's two
 * disks counts every write, copy, punch and sync; at the chosen operation the
 * machine "loses power": that call and every later one throw `CrashError`.
 * `crashImage` then builds what a real disk could hold afterwards: everything
 * synced, plus each unsynced write applied whole, lost, or torn at sector
 * granularity, in an order the seed shuffles (a disk cache writes back in
 * any order, so an older write to the same place may land last). Same seed,
 * same workload: same image.
 *
 * `writeBack` is a sync that completes later (on a setImmediate), as an
 * fdatasync on another thread does: it makes durable what was written before
 * it was called, and fails with `CrashError` if power went first.
 *
 * Read faults, when switched on (`readFaults`): a read fails with EIO, or
 * returns its bytes with one bit flipped (the disk's copy stays intact, as
 * with a bad cable or a transient media error), at the rates given, drawn
 * from the same seed. `flips` and `failures` count what was injected.
 */
import type { Disk } from './disk.js';
import { MemoryDisk } from './memory-disk.js';
import { Prng } from './prng.js';

export class CrashError extends Error {
  constructor() {
    super('simulated power loss');
    this.name = 'CrashError';
  }
}

export class FaultPlan {
  readonly rng: Prng;
  /** Operation number (1-based) that crashes; 0 never crashes. */
  readonly crashAt: number;
  readonly sectorSize: number;
  ops = 0;
  crashed = false;

  constructor(seed: number, options: { crashAt?: number; sectorSize?: number } = {}) {
    this.rng = new Prng(seed);
    this.crashAt = options.crashAt ?? 0;
    this.sectorSize = options.sectorSize ?? 512;
  }

  tick(): void {
    if (this.crashed) throw new CrashError();
    this.ops++;
    if (this.crashAt > 0 && this.ops >= this.crashAt) {
      this.crashed = true;
      throw new CrashError();
    }
  }
}

export interface ReadFaults {
  /** Chance per read that one bit of the returned bytes is flipped. */
  flip: number;
  /** Chance per read that it fails with EIO. */
  fail: number;
}

/** The error a failed read raises: an OS error named EIO, as Node's fs raises it. */
export function simulatedReadError(): Error {
  return Object.assign(new Error('EIO: i/o error, simulated read fault'), { code: 'EIO' });
}

interface PendingWrite {
  position: number;
  data: Buffer;
  /** Order of issue, so a writeBack knows which writes it covers. */
  seq: number;
}

export class SimDisk implements Disk {
  private readonly plan: FaultPlan;
  private readonly current: MemoryDisk;
  private readonly durable: MemoryDisk;
  private pending: PendingWrite[] = [];
  private nextSeq = 0;
  readFaults: ReadFaults | null = null;
  flips = 0;
  failures = 0;

  constructor(plan: FaultPlan, initial?: Buffer) {
    this.plan = plan;
    this.current = new MemoryDisk(initial);
    this.durable = new MemoryDisk(initial);
  }

  read(buf: Buffer, position: number): void {
    if (this.plan.crashed) throw new CrashError();
    const faults = this.readFaults;
    if (faults && this.plan.rng.chance(faults.fail)) {
      this.failures++;
      throw simulatedReadError();
    }
    this.current.read(buf, position);
    if (faults && buf.length > 0 && this.plan.rng.chance(faults.flip)) {
      this.flips++;
      const bit = this.plan.rng.int(buf.length * 8);
      buf[bit >> 3] = (buf[bit >> 3] ?? 0) ^ (1 << (bit & 7));
    }
  }

  write(buf: Buffer, position: number): void {
    this.plan.tick();
    this.current.write(buf, position);
    this.pending.push({ position, data: Buffer.from(buf), seq: this.nextSeq++ });
  }

  punch(position: number, length: number): void {
    this.plan.tick();
    this.current.punch(position, length);
    const end = Math.min(position + length, this.current.size());
    if (end > position) this.pending.push({ position, data: Buffer.alloc(end - position), seq: this.nextSeq++ });
  }

  sync(): void {
    this.plan.tick();
    for (const w of this.pending) this.durable.write(w.data, w.position);
    this.pending = [];
  }

  writeBack(): Promise<void> {
    this.plan.tick();
    const covers = this.nextSeq;
    return new Promise((resolve, reject) =>
      setImmediate(() => {
        if (this.plan.crashed) return reject(new CrashError());
        for (const w of this.pending) if (w.seq < covers) this.durable.write(w.data, w.position);
        this.pending = this.pending.filter((w) => w.seq >= covers);
        resolve();
      }),
    );
  }

  size(): number {
    return this.current.size();
  }

  close(): void {}

  /** Unsynced writes waiting in the volatile cache. */
  pendingWrites(): number {
    return this.pending.length;
  }

  /** What the disk holds after power loss, decided by the plan's seed. */
  crashImage(): Buffer {
    const rng = this.plan.rng;
    const image = new MemoryDisk(this.durable.image());
    const sector = this.plan.sectorSize;
    for (const w of rng.shuffle([...this.pending])) {
      const roll = rng.int(100);
      if (roll < 45) {
        image.write(w.data, w.position);
      } else if (roll < 80) {
        continue; // lost
      } else {
        // torn: each sector (on absolute sector boundaries) made it or not
        let off = 0;
        while (off < w.data.length) {
          const next = Math.min(w.data.length, (Math.floor((w.position + off) / sector) + 1) * sector - w.position);
          if (rng.chance(0.5)) image.write(w.data.subarray(off, next), w.position + off);
          off = next;
        }
      }
    }
    return image.image();
  }
}
