/**
 * The data path of one cowfs mount: which chunks of which files the addon
 * reads and writes itself (native/src/fs_ops.c, through its chunk table
 * keyed by inode and file chunk), and the way back from the volume's map
 * to those entries, so that every drop the pool makes reaches them.
 *
 * Why the addon never serves a wrong byte:
 * - An entry is only a whole chunk below the file's size, in a region: a
 *   native write never changes a size or allocates, and a read never sees
 *   past the end more than the zeros a truncate left there.
 * - Writable only where the pool's in-place rule says so (`placeOf`), never
 *   for a file with set-id bits (a write must reach us to clear them), never
 *   on a read-only mount. Anything else goes to JavaScript, which may then
 *   offer the chunk again.
 * - The pool's drops (discard, CoW break, reflink, fork, delete) arrive as
 *   volume map indices and are found through `byIndex`; a setattr (size,
 *   mode) forgets the file's entries. Drops wait for the I/O in flight.
 * - A native write stamps no time itself: the addon notes the file, and
 *   `stamp` sets its mtime and ctime before JavaScript answers anything
 *   else on this mount, before an fsync and a fork, and once a second.
 * - fdatasync is made by the addon (one fdatasync of the data file) for a
 *   file whose size and chunks the last durable commit holds: the addon
 *   marks a file around every request that may change it (every file for
 *   a request that may change several) with the generation of the pool's
 *   open transaction, and `generations` tells it which one is durable
 *   (native/src/flush_marks.c). Times do not count: fdatasync need not
 *   keep them. After the pool failed, never again.
 *
 * Memory: the table holds `slots` entries of 16 bytes; `byIndex` holds at
 * most as many, and evicting from it evicts from the table.
 */
import type { Pool, VolumeWatcher } from '../blockstore/pool.js';
import type { Filesystem } from '../cowfs/filesystem.js';
import { fromMonotonic } from '../cowfs/inode.js';
import type { FuseSession } from './session.js';

/** Stands for every entry in FuseSession.invalidate. */
const EVERY_FILE = 0;

export class FileChunks implements VolumeWatcher {
  /** Volume map index -> [inode, file chunk], oldest first. Lock: event loop only. */
  private readonly byIndex = new Map<number, [number, number]>();

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
  }

  /** After JavaScript served a read or write of the range: the addon serves its whole chunks from now on. */
  offer(ino: number, offset: number, length: number): void {
    const { chunks, setId } = this.fs.chunksIn(ino, offset, length);
    for (const c of chunks) {
      const place = this.pool.placeOf(this.volume, c.index);
      if (place === null) continue;
      this.remember(c.index, ino, c.chunk);
      this.session.map(ino, c.chunk, place.offset, place.writable && this.writable && !setId, false);
    }
  }

  /** The file's size or mode changes: none of its entries stays. */
  forget(ino: number): void {
    this.session.invalidate(ino, -1);
  }

  /** Sets the times of the files the addon wrote since the last look, then the times it answered for the kernel. */
  stamp(): void {
    const written = this.session.written();
    if (written.length > 0) this.fs.stampWritten(written.map((w) => ({ ino: w.ino, at: fromMonotonic(w.sec, w.nsec) })));
    this.fs.applyKernelTimes(this.session.kernelTimes());
  }

  generations(open: number, durable: number): void {
    this.session.generations(open, durable);
  }

  dropVolume(): void {
    this.session.invalidate(EVERY_FILE, -1);
    this.byIndex.clear();
  }

  dropChunk(index: number): void {
    const entry = this.byIndex.get(index);
    if (entry === undefined) return;
    this.byIndex.delete(index);
    this.session.invalidate(entry[0], entry[1]);
  }

  settle(): void {
    this.stamp();
  }

  failed(): void {
    this.session.commitNeeded(true);
  }

  private remember(index: number, ino: number, chunk: number): void {
    this.byIndex.delete(index);
    this.byIndex.set(index, [ino, chunk]);
    if (this.byIndex.size <= this.slots) return;
    const [oldest, [oldIno, oldChunk]] = this.byIndex.entries().next().value as [number, [number, number]];
    this.byIndex.delete(oldest);
    this.session.invalidate(oldIno, oldChunk);
  }
}
