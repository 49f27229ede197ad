/**
 * The reserve: free chunks the pool has handed to its frontend (the native
 * chunk table) to serve first writes with, by data file offset.
 *
 * A chunk is handed only if it reads as zeros even after a crash
 * (zero-chunks.ts), so a first write into it needs no data flush before the
 * commit that maps it. Handed chunks stay reserved in the data space map,
 * never counted: nothing else allocates them, and after a crash they are
 * simply free. Bounded by `limit`; the pool stops topping up near full.
 *
 * Caveat: the pool must fold what the frontend took (`take`) before it
 * reads or changes the map the chunk went into (pool.ts, `fold`).
 */
import { assert } from '../errors.js';
import type { SpaceMap } from './space-map.js';
import type { ZeroChunks } from './zero-chunks.js';

export class Reserve {
  /** Data file offset -> chunk number. */
  private readonly handed = new Map<number, number>();

  constructor(
    private readonly space: SpaceMap,
    private readonly zero: ZeroChunks,
    private readonly offsetOf: (chunk: number) => number,
    private readonly limit: number,
  ) {}

  get size(): number {
    return this.handed.size;
  }

  /**
   * Hands `give` up to `limit` chunks. Of the free chunks it met that are
   * not known to be zero, it returns those that still hold old bytes (say,
   * left from a reserve before a restart), which the caller punches, and
   * counts those punched already whose punch no data sync has made durable
   * yet (`waiting`): punching those again would change nothing. Once a data
   * sync has made a punch durable, a later top-up can hand the chunk.
   */
  topUp(give: (offsets: number[]) => number): { punch: number[]; waiting: number } {
    if (this.handed.size >= this.limit || this.space.available() < 4 * this.limit) return { punch: [], waiting: 0 };
    const chunks: number[] = [];
    const unknown: number[] = [];
    for (let i = this.handed.size; i < this.limit; i++) {
      const c = this.space.reserve();
      (this.zero.has(c) ? chunks : unknown).push(c);
    }
    for (let i = unknown.length - 1; i >= 0; i--) this.space.unreserve(unknown[i] as number);
    const took = chunks.length === 0 ? 0 : give(chunks.map((c) => this.offsetOf(c)));
    for (let i = chunks.length - 1; i >= 0; i--) {
      const c = chunks[i] as number;
      if (i < took) this.handed.set(this.offsetOf(c), c);
      else this.space.unreserve(c);
    }
    const punch = unknown.filter((c) => !this.zero.reads(c));
    return { punch, waiting: unknown.length - punch.length };
  }

  /** The chunk behind an offset the frontend wrote a first write into; it leaves the reserve, still reserved in the space map. */
  take(offset: number): number {
    const chunk = this.handed.get(offset);
    assert(chunk !== undefined, `the frontend wrote into ${offset}, which it was never handed`);
    this.handed.delete(offset);
    this.zero.taken(chunk);
    return chunk;
  }

  /** The frontend is going away: every chunk it still holds is free again. */
  drop(): void {
    for (const chunk of this.handed.values()) this.space.unreserve(chunk);
    this.handed.clear();
  }
}
