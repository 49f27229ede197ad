/**
 * A stand-in for the native chunk table (native/src/chunk_table.c) in
 * JavaScript, for the crash simulation: a MappingListener that keeps the
 * entries, holes and reserved chunks the pool gives it, and serves writes
 * itself when the table would (every chunk writable or a hole; holes take
 * reserved chunks, all or none, and are reported as taken), and flushes
 * itself with a sync of the data disk while the pool says no commit is
 * needed (and it has handed over nothing since). It writes to the pool's
 * data disk directly, as the addon does. Entries are evicted at
 * random, as a full bucket evicts them, so the pool's own path meets chunks
 * the table took and the pool has not folded yet.
 */
import type { Disk } from '../../src/blockstore/disk.js';
import type { MappingListener } from '../../src/blockstore/pool.js';
import type { Prng } from '../../src/blockstore/prng.js';

type Entry = { offset: number; writable: boolean } | 'hole';

export class TableModel implements MappingListener {
  private readonly entries = new Map<string, Entry>();
  private readonly reserved: number[] = [];
  private takenList: [number, number, number][] = [];
  private needed = true;
  firstWrites = 0;
  served = 0;
  flushes = 0;

  constructor(
    private readonly rng: Prng,
    private readonly dataDisk: Disk,
    private readonly chunkSize: number,
  ) {}

  map(id: number, index: number, offset: number, writable: boolean): void {
    this.entries.set(`${id}:${index}`, { offset, writable });
  }

  dropVolume(id: number): void {
    for (const key of [...this.entries.keys()]) if (key.startsWith(`${id}:`)) this.entries.delete(key);
  }

  dropChunk(id: number, index: number): void {
    this.entries.delete(`${id}:${index}`);
  }

  holes(id: number, indices: number[]): void {
    for (const index of indices) {
      const e = this.entries.get(`${id}:${index}`);
      if (e === undefined || e === 'hole') this.entries.set(`${id}:${index}`, 'hole');
    }
  }

  reserve(offsets: number[]): number {
    const room = Math.max(0, 1024 - this.reserved.length);
    this.reserved.push(...offsets.slice(0, room));
    return Math.min(room, offsets.length);
  }

  taken(): [number, number, number][] {
    const out = this.takenList;
    this.takenList = [];
    if (out.length > 0) this.needed = true;
    return out;
  }

  commitNeeded(needed: boolean): void {
    this.needed = needed;
  }

  /** Serves a flush as the addon would (a data sync); false sends it to the pool. */
  flush(): boolean {
    if (this.needed || this.takenList.length > 0) return false;
    this.dataDisk.sync();
    this.flushes++;
    return true;
  }

  /** Serves the write as the table would; false sends it to the pool. */
  write(id: number, offset: number, data: Buffer): boolean {
    if (this.rng.chance(0.2)) this.evictOne();
    const first = Math.floor(offset / this.chunkSize);
    const last = Math.floor((offset + data.length - 1) / this.chunkSize);
    let holes = 0;
    for (let i = first; i <= last; i++) {
      const e = this.entries.get(`${id}:${i}`);
      if (e === undefined || (e !== 'hole' && !e.writable)) return false;
      if (e === 'hole') holes++;
    }
    if (holes > this.reserved.length) return false;
    for (let i = first; i <= last; i++) {
      if (this.entries.get(`${id}:${i}`) !== 'hole') continue;
      const at = this.reserved.pop() as number;
      this.entries.set(`${id}:${i}`, { offset: at, writable: true });
      this.takenList.push([id, i, at]);
      this.firstWrites++;
    }
    for (let pos = offset; pos < offset + data.length; ) {
      const index = Math.floor(pos / this.chunkSize);
      const within = pos - index * this.chunkSize;
      const n = Math.min(this.chunkSize - within, offset + data.length - pos);
      const e = this.entries.get(`${id}:${index}`) as { offset: number };
      this.dataDisk.write(data.subarray(pos - offset, pos - offset + n), e.offset + within);
      pos += n;
    }
    this.served++;
    return true;
  }

  private evictOne(): void {
    const keys = [...this.entries.keys()];
    if (keys.length > 0) this.entries.delete(this.rng.pick(keys));
  }
}
