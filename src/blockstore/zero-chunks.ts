/**
 * Which free data chunks read as zeros on the disk even after power loss.
 *
 * Why the pool asks: a commit makes data and metadata durable in one flush
 * when losing the transaction's data writes could only make a chunk read as
 * zeros, which is what its index read before (pool.ts, `commit`). That holds
 * for a first write into a chunk that is zero on disk: one past everything
 * the data file ever held, or one whose hole punch a completed data sync
 * has since made durable. Anything else (a CoW copy, a reused chunk whose
 * old bytes may come back) needs its data durable before the superblock.
 *
 * Bounded: at most `limit` punched chunks are remembered; a chunk forgotten
 * is merely treated as not zero (the commit then takes two flushes).
 */
export class ZeroChunks {
  /** Chunk -> data syncs started when its punch was issued. */
  private readonly punched = new Map<number, number>();
  private syncsStarted = 0;
  private syncsDone = 0;

  /**
   * @param frontier chunks at or past it were never written (the data file ends before them)
   * @param limit most punched chunks remembered
   */
  constructor(
    private frontier: number,
    private readonly limit: number,
  ) {}

  /** Zero on disk now and after a crash. */
  has(chunk: number): boolean {
    if (chunk >= this.frontier) return true;
    const at = this.punched.get(chunk);
    return at !== undefined && this.syncsDone > at;
  }

  /** Zero in the file now (what a reader sees), durable or not. */
  reads(chunk: number): boolean {
    return chunk >= this.frontier || this.punched.has(chunk);
  }

  /** The chunk is being allocated: whatever it held, it is about to change. */
  taken(chunk: number): void {
    this.punched.delete(chunk);
    if (chunk >= this.frontier) this.frontier = chunk + 1;
  }

  punchedNow(first: number, count: number): void {
    for (let c = first; c < first + count && this.punched.size < this.limit; c++) this.punched.set(c, this.syncsStarted);
  }

  /** Brackets a data sync: what was punched before `start` is durable at `done`. */
  syncStart(): number {
    return ++this.syncsStarted;
  }

  syncDone(ticket: number): void {
    if (ticket > this.syncsDone) this.syncsDone = ticket;
  }
}
