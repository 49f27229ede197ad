/**
 * The byte store under the pool: one for metadata pages, one for data chunks.
 *
 * All calls are synchronous on purpose. The blockstore's metadata work is
 * short and mostly cached; running it without interleaving makes every
 * transaction atomic with respect to the event loop and lets the simulated
 * disk replay a failing seed exactly. Implementations: `FileDisk` (a real
 * file), `MemoryDisk` (the test double) and `SimDisk` (faults under a seed).
 */
export interface Disk {
  /** Fills `buf` from `position`; bytes past the end read as zeros. */
  read(buf: Buffer, position: number): void;
  write(buf: Buffer, position: number): void;
  /** Gives the range back to the filesystem; it reads as zeros afterwards. */
  punch(position: number, length: number): void;
  /** Makes every write so far durable. */
  sync(): void;
  /**
   * Starts writing back what is buffered, off the calling thread, and
   * settles when it is done. A pacing hint for long writers (an import),
   * so the next `sync` has little left to do; never a barrier the pool's
   * guarantees rest on. Disks without a cache leave it out.
   */
  writeBack?(): Promise<void>;
  /**
   * `punch`, off the calling thread, settling when it is done: the pool
   * keeps the range out of allocation until then (Pool.punchRun). `close`
   * must wait for those still running. Disks whose punch is cheap, or that
   * must replay exactly (the simulated one), leave it out.
   */
  punchAsync?(position: number, length: number): Promise<void>;

  size(): number;
  close(): void;
}
