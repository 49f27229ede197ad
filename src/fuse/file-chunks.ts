/**
 * The data path of one cowfs mount: which chunks of which files the addon
 * reads and writes itself (native/src/fs_ops.c, through its chunk table
 * keyed by inode and file chunk), and the way back from the volume's map
 * to those entries, so that every drop the pool makes reaches them.
 *
 * Why the addon never serves a wrong byte:
 * - An entry JavaScript maps is a whole chunk below the file's size, in a
 *   region: a write through it never changes a size or allocates, and a
 *   read never sees past the end more than the zeros a truncate left there.
 *   The other kind is marked as reaching past the end (TAIL): the chunk
 *   holding a file's end, and holes past it (below). Reads through one
 *   come here, and a write through one notes its end.
 * - Writable only where the pool's in-place rule says so (`placeOf`), never
 *   for a file with set-id bits (a write must reach us to clear them), never
 *   on a read-only mount. Anything else goes to JavaScript, which may then
 *   offer the chunk again. A chunk the rule refuses because a snapshot or
 *   a reflink shares it is entered breakable: the addon's next write copies
 *   it into a chunk of the reserve and records the break, which `fold` maps
 *   as the pool's own break (the copy mapped, the shared chunk released).
 *   Before JavaScript changes such a chunk itself (`quiesce`), the entry is
 *   taken back and a break made meanwhile folded, as for holes.
 * - The pool's drops (discard, CoW break, reflink, fork, delete) arrive as
 *   volume map indices and are found through `byIndex`; a setattr (size,
 *   mode) forgets the file's entries. Drops wait for the I/O in flight.
 * - A native write stamps no time itself: the addon notes the file, and
 *   `stamp` sets its mtime and ctime before JavaScript answers anything
 *   else on this mount, before an fsync and a fork, and once a second.
 * - First writes and appends (`extend`): a file made by CREATE gets its
 *   chunk 0 as a hole, which the addon fills from this mount's reserve of
 *   zero chunks, so the write a close sends back from the page cache never
 *   reaches us; a file JavaScript wrote, or one that took a hole past its
 *   first chunk, gets the chunk holding its end and holes past it. The
 *   addon notes how far such writes reach; `stamp` and `fold` map each
 *   taken chunk into the file's region and grow its size, before
 *   JavaScript answers anything else, before an fsync or fdatasync
 *   commits, and before a fork. Each hole holds a chunk of the volume's
 *   room (`Pool.holdRoom`), given back when the volume runs short. A
 *   sparse file (preallocated, or grown by truncate) gets holes inside it
 *   too, after a run of chunks JavaScript wrote and after those the addon
 *   took (`fill`): a first write there changes no size, and a read there
 *   gives zeros. Holes are withdrawn before JavaScript changes their
 *   file's chunks itself (`quiesce`, `forget`), so the addon never takes a
 *   chunk JavaScript mapped.
 * - fdatasync is made by the addon (one fdatasync of the data file) for a
 *   file whose size and chunks the last durable commit holds: the addon
 *   marks a file around every request that may change it (every file for
 *   a request that may change several) with the generation of the pool's
 *   open transaction, and `generations` tells it which one is durable
 *   (native/src/flush_marks.c). Times do not count: fdatasync need not
 *   keep them. After the pool failed, never again.
 *
 * Memory: the table holds `slots` entries of 16 bytes; `byIndex` holds at
 * most as many, and evicting from it evicts from the table; `breakable`,
 * and what a fork took back to enter again, hold at most as many too. At most
 * HOLES_MAX holes and RESERVE_CHUNKS reserved chunks per mount.
 */
import type { Pool, VolumeWatcher } from '../blockstore/pool.js';
import type { Reserve } from '../blockstore/reserve.js';
import type { Filesystem, Served } from '../cowfs/filesystem.js';
import { fromMonotonic } from '../cowfs/inode.js';
import type { FuseSession } from './session.js';

/** Stands for every entry in FuseSession.invalidate. */
const EVERY_FILE = 0;
/** Zero chunks a mount holds for first writes (the table asks for more at half): 4 MiB at 64 KiB chunks. */
const RESERVE_CHUNKS = 64;
/** Holes offered at once, each holding a chunk of the volume's room; the oldest is withdrawn beyond. */
const HOLES_MAX = 256;
/** Chunks past a file's end offered as holes once it grows: an appending writer goes on without us. */
const HOLES_AHEAD = 2;
/** Holes offered at once inside a sparse file (a preallocated log, a file grown by truncate), among the next HOLES_WINDOW chunks. */
const HOLES_INSIDE = 16;
const HOLES_WINDOW = 64;

/** A hole's key in `holes`. */
function holeKey(ino: number, chunk: number): string {
  return `${ino}:${chunk}`;
}

export class FileChunks implements VolumeWatcher {
  /** Volume map index -> [inode, file chunk], oldest first. Lock: event loop only. */
  private readonly byIndex = new Map<number, [number, number]>();
  /** The holes offered and not yet taken (as far as we folded), oldest first: holeKey -> [inode, file chunk]. Lock: event loop only. */
  private readonly holes = new Map<string, [number, number]>();
  /** Entries the addon may break (a chunk a snapshot or a reflink shares, copied at its first write), each also in byIndex: holeKey -> [inode, file chunk]. Lock: event loop only. */
  private readonly breakable = new Map<string, [number, number]>();
  /** Zero chunks the table serves first writes from; null on a read-only mount. */
  private readonly reserve: Reserve | null;
  /** What a fork took back from the table, to enter again once the fork is done (`reenter`): inode -> file chunks. */
  private dropped: Map<number, number[]> | null = null;
  /** Set by `close`: nothing reaches the session after it. */
  private closed = false;

  constructor(
    private readonly pool: Pool,
    private readonly volume: number,
    private readonly fs: Filesystem,
    private readonly session: FuseSession,
    private readonly slots: number,
    /** False for a read-only mount: entries serve reads only. */
    private readonly writable: boolean,
  ) {
    // The flush marks decide from now on; until the open transaction is durable, every file waits for it.
    const g = pool.generations();
    session.generations(g.open, g.durable, true);
    session.commitNeeded(false);
    this.reserve = writable ? pool.openReserve(RESERVE_CHUNKS) : null;
  }

  /**
   * A regular file was made or grew: the addon serves its appends. The
   * chunk holding its end (if mapped) is entered as holding the end, and
   * the next `ahead` chunks past it become holes, each holding room (one
   * for a new file: most stay within their first chunk). Not for a file
   * with set-id bits (a write must reach us to clear them).
   */
  extend(ino: number, ahead = HOLES_AHEAD): void {
    if (this.reserve === null) return;
    const edge = this.fs.edgeOf(ino, ahead);
    if (edge === null || edge.setId) return;
    if (edge.partial !== null) {
      const place = this.pool.placeOf(this.volume, edge.partial.index);
      if (place !== null) this.install(ino, edge.partial.chunk, edge.partial.index, place, false, true);
    }
    this.offerHoles(ino, edge.unmapped, true);
  }

  /**
   * A sparse file's unmapped chunks inside it, from chunk `from` on
   * (HOLES_INSIDE of them among the next HOLES_WINDOW), become holes: a
   * first write there is the addon's, a read there gives zeros without us.
   * Offered after a fold for the files that took a hole past their first
   * chunk, and after JavaScript wrote a file where a run of writes goes on
   * (fillAfterWrite).
   */
  fill(ino: number, from: number, run = false): void {
    if (this.reserve === null) return;
    const inside = this.fs.holesInside(ino, from, HOLES_INSIDE, HOLES_WINDOW, run);
    if (inside === null || inside.setId) return;
    this.offerHoles(ino, inside.chunks, false);
  }

  /**
   * After JavaScript wrote from file chunk `chunk` on: holes after it, if
   * the write goes on a run (the chunk before it is mapped, or it is the
   * first). A random writer of a sparse file would rarely find the holes
   * offered after each of its writes, and pay for looking.
   */
  fillAfterWrite(ino: number, chunk: number): void {
    this.fill(ino, chunk, true);
  }

  /** Offers the file's `chunks` (unmapped, as the tree says now) as holes, each holding a chunk of room; `tail`: they may lie past the end. */
  private offerHoles(ino: number, chunks: readonly number[], tail: boolean): void {
    const fresh: number[] = [];
    for (const c of chunks) {
      if (this.holes.has(holeKey(ino, c))) continue;
      if (!this.pool.holdRoom(this.volume, 1)) break;
      fresh.push(c);
      this.holes.set(holeKey(ino, c), [ino, c]);
    }
    if (fresh.length === 0) return;
    // The table asks for more at half; an empty one (a new mount's) is filled now.
    if (this.reserve !== null && this.reserve.size === 0) this.pool.topUpReserve(this.reserve, (offsets) => this.session.reserve(offsets));
    this.session.holes(ino, fresh, tail);
    for (const [key, [oldIno, oldChunk]] of this.holes) {
      if (this.holes.size <= HOLES_MAX) break;
      this.session.invalidate(oldIno, oldChunk);
      this.unhold(key);
    }
  }

  /** The table's reserve runs low: fold what it took, then top it up. */
  replenish(): void {
    if (this.reserve === null) return;
    this.fold();
    this.pool.topUpReserve(this.reserve, (offsets) => this.session.reserve(offsets));
  }

  /**
   * JavaScript is about to change the file's chunks in [offset,
   * offset+length) itself (a write, fallocate or copy it serves): the holes
   * there go first, and what the addon took through them is folded, so both
   * never map one chunk.
   */
  quiesce(ino: number, offset: number, length: number): void {
    const cs = this.pool.chunkSize;
    const from = Math.floor(offset / cs);
    const to = Math.ceil((offset + length) / cs);
    if (this.withdraw(ino, from, to) + this.unbreak(ino, from, to) > 0) this.fold();
  }

  /** After JavaScript served a read or write of the range: the addon serves its whole chunks from now on. */
  offer(ino: number, offset: number, length: number): void {
    const { chunks, setId } = this.fs.chunksIn(ino, offset, length);
    for (const c of chunks) {
      const place = this.pool.placeOf(this.volume, c.index);
      if (place !== null) this.install(ino, c.chunk, c.index, place, setId, false);
    }
  }

  /**
   * Enters a mapped chunk of a file: written in place if the pool's rule
   * allows, else (shared by a snapshot or a reflink) broken by the addon
   * at its next write, into a chunk of the reserve. Neither on a read-only
   * mount, nor while the file has set-id bits a write must clear.
   */
  private install(ino: number, chunk: number, index: number, place: { offset: number; writable: boolean }, setId: boolean, tail: boolean): void {
    this.remember(index, ino, chunk);
    const writes = this.writable && !setId;
    if (writes && !place.writable) this.breakable.set(holeKey(ino, chunk), [ino, chunk]);
    this.session.map(ino, chunk, place.offset, writes && place.writable, writes && !place.writable, tail);
  }

  /** The file's size or mode changes: none of its entries stays, and what the addon wrote through them is folded first. */
  forget(ino: number): void {
    this.session.invalidate(ino, -1);
    for (const [key, [holeIno]] of this.holes) if (holeIno === ino) this.unhold(key);
    for (const [key, [entryIno]] of this.breakable) if (entryIno === ino) this.breakable.delete(key);
    this.fold();
  }

  /** Folds the addon's first writes and sizes, sets the times of the files it wrote, then the times it answered for the kernel. */
  stamp(): void {
    const written = this.session.written();
    const grown = this.absorb({
      ends: written.filter((w) => w.end > 0),
      written: written.filter((w) => w.sec >= 0).map((w) => ({ ino: w.ino, at: fromMonotonic(w.sec, w.nsec) })),
      kernel: this.session.kernelTimes(),
    });
    // Files that took a hole past their first chunk are growing, or filling their holes inside: holes past their new
    // end and after the chunks they took (only here, before a request, which may withdraw them).
    for (const [ino, chunk] of grown) {
      this.extend(ino);
      this.fill(ino, chunk + 1);
    }
  }

  /** What an fdatasync must find in the tree: the chunks the addon took and how far its writes reached, not their times. */
  fold(): void {
    this.absorb({ ends: this.session.written(true) });
  }

  /** The mount is going away, its requests all answered: what the addon took is folded, and the rest of the reserve freed. */
  close(): void {
    this.closed = true;
    this.stamp();
    // Its chunks are free again, as they are after a crash: nothing maps them.
    this.reserve?.drop();
  }

  generations(open: number, durable: number): void {
    this.session.generations(open, durable);
  }

  dropVolume(): void {
    // A read-only mount breaks nothing: what it held comes back as it is read.
    const held = this.reserve === null ? null : this.heldByFile();
    this.session.invalidate(EVERY_FILE, -1);
    this.byIndex.clear();
    this.breakable.clear();
    for (const key of [...this.holes.keys()]) this.unhold(key);
    if (held === null || held.size === 0) return;
    // A fork runs on the event loop: once it is done, its chunks are shared and may be entered breakable.
    if (this.dropped === null) setImmediate(() => this.reenter());
    this.dropped = held;
  }

  /** The chunks the table holds, by file. */
  private heldByFile(): Map<number, number[]> {
    const held = new Map<number, number[]>();
    for (const [ino, chunk] of this.byIndex.values()) {
      const chunks = held.get(ino);
      if (chunks === undefined) held.set(ino, [chunk]);
      else chunks.push(chunk);
    }
    return held;
  }

  /**
   * After a fork: the chunks the table held are entered again, as the tree
   * says they are now (shared, so breakable), so a write after a snapshot
   * is copied by the addon instead of going to JavaScript. At most `slots`
   * chunks, off the fork's own time.
   */
  private reenter(): void {
    const files = this.dropped;
    this.dropped = null;
    // A deleted volume drops its entries too.
    if (files === null || this.closed || !this.pool.has(this.volume)) return;
    const cs = this.pool.chunkSize;
    for (const [ino, chunks] of files) {
      // Gone or changed since: `offer` enters what the tree holds now.
      if (!this.fs.isFile(ino)) continue;
      chunks.sort((a, b) => a - b);
      for (let i = 0; i < chunks.length; ) {
        let n = 1;
        while (chunks[i + n] === (chunks[i] as number) + n) n++;
        this.offer(ino, (chunks[i] as number) * cs, n * cs);
        i += n;
      }
    }
  }

  dropChunk(index: number): void {
    const entry = this.byIndex.get(index);
    if (entry === undefined) return;
    this.byIndex.delete(index);
    this.breakable.delete(holeKey(entry[0], entry[1]));
    this.session.invalidate(entry[0], entry[1]);
  }

  settle(): void {
    this.stamp();
  }

  failed(): void {
    this.session.commitNeeded(true);
  }

  releaseRoom(): void {
    for (const [ino, chunk] of this.holes.values()) this.session.invalidate(ino, chunk);
    // A hole taken before its withdrawal holds its room until its chunk is mapped here.
    this.fold();
    for (const key of [...this.holes.keys()]) this.unhold(key);
  }

  /** The first writes taken since the last look, with the rest of what the addon served, into the tree; returns the files that took one past their first chunk, each with the last chunk it took. */
  private absorb(served: Served): Map<number, number> {
    const taken = this.reserve === null ? [] : this.session.taken();
    for (const t of taken) this.unhold(holeKey(t.ino, t.index));
    const indices = this.fs.absorb(this.reserve, { ...served, takes: taken.map((t) => ({ ino: t.ino, chunk: t.index, offset: t.offset, old: t.old })) });
    const grown = new Map<number, number>();
    // Its entry may reach past the end (reads go to us), but the pool's drops of the chunk must reach it.
    indices.forEach((index, i) => {
      const t = taken[i] as { ino: number; index: number; old: number };
      if (index === null) return;
      this.remember(index, t.ino, t.index);
      // A break leaves its entry writable, and says nothing of growth.
      if (t.old >= 0) return;
      if (t.index > 0) grown.set(t.ino, Math.max(grown.get(t.ino) ?? 0, t.index));
    });
    return grown;
  }

  /**
   * Takes the file's holes in chunks [from, to) back from the table and
   * gives their room back (a take through one before this is folded
   * later); returns how many.
   */
  private withdraw(ino: number, from: number, to: number): number {
    let n = 0;
    for (const [key, [holeIno, chunk]] of this.holes) {
      if (holeIno !== ino || chunk < from || chunk >= to) continue;
      this.session.invalidate(ino, chunk);
      this.unhold(key);
      n++;
    }
    return n;
  }

  /** Takes the file's breakable entries in chunks [from, to) back from the table (a break through one before this is folded later); returns how many. */
  private unbreak(ino: number, from: number, to: number): number {
    let n = 0;
    const drop = (chunk: number): void => {
      if (!this.breakable.delete(holeKey(ino, chunk))) return;
      this.session.invalidate(ino, chunk);
      n++;
    };
    // Whichever is shorter: the range, or the entries.
    if (to - from <= this.breakable.size) for (let c = from; c < to; c++) drop(c);
    // Deleting the entry being visited is safe in a Map's iteration, as `withdraw` relies on too.
    else for (const [i, c] of this.breakable.values()) if (i === ino && c >= from && c < to) drop(c);
    return n;
  }

  private unhold(key: string): void {
    if (this.holes.delete(key)) this.pool.holdRoom(this.volume, -1);
  }

  private remember(index: number, ino: number, chunk: number): void {
    const before = this.byIndex.get(index);
    if (before !== undefined) this.breakable.delete(holeKey(before[0], before[1]));
    this.byIndex.delete(index);
    this.byIndex.set(index, [ino, chunk]);
    if (this.byIndex.size <= this.slots) return;
    const [oldest, [oldIno, oldChunk]] = this.byIndex.entries().next().value as [number, [number, number]];
    this.byIndex.delete(oldest);
    this.breakable.delete(holeKey(oldIno, oldChunk));
    this.session.invalidate(oldIno, oldChunk);
  }
}
