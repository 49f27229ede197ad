/**
 * Group commit for data: callers that each need "everything written so far
 * is durable" share one sync instead of queueing one each. A sync already
 * running may have begun before a caller's writes, so a caller that arrives
 * meanwhile joins the next one; every caller arriving during the same
 * running sync shares that next one. The sync itself runs off the event
 * loop (Disk.writeBack, on libuv's thread pool).
 *
 * Bounded: at most one sync runs and at most one waits, whatever the number
 * of callers.
 */
export class GroupSync {
  private running: Promise<void> | null = null;
  private queued: Promise<void> | null = null;
  /** Callers, and syncs actually made for them: the ratio is the grouping. */
  requests = 0;
  syncs = 0;

  constructor(private readonly syncOnce: () => Promise<void>) {}

  /** Settles once a sync that began after this call has completed. */
  sync(): Promise<void> {
    this.requests++;
    if (this.running === null) return this.start();
    this.queued ??= this.running
      .catch(() => undefined)
      .then(() => {
        this.queued = null;
        return this.start();
      });
    return this.queued;
  }

  private start(): Promise<void> {
    this.syncs++;
    const p: Promise<void> = this.syncOnce().finally(() => {
      if (this.running === p) this.running = null;
    });
    this.running = p;
    return p;
  }
}
