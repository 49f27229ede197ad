/**
 * Metadata pages in memory, bounded by a byte budget.
 *
 * Dirty pages are always pages allocated by the open transaction, at places
 * the committed state does not reference, so evicting one simply writes it
 * early. That keeps memory within the budget whatever a transaction touches.
 * Callers must not hold a page buffer across a call that may modify other
 * pages: re-fetch after it, and hand modified buffers back with `put`.
 */
import { LRUCache } from 'lru-cache';

import type { Disk } from './disk.js';
import { PAGE_SIZE, pageCrc, sealPage, verifyPage } from './page.js';

export const MIN_CACHE_BYTES = 16 * PAGE_SIZE;

export class PageCache {
  private readonly disk: Disk;
  private readonly lru: LRUCache<number, Buffer>;
  private readonly dirty = new Set<number>();
  /** Pages written since the last `takeWritten`, with their crc: the commit log's entries. */
  private written = new Map<number, number>();
  /** Set when a write-back failed; the pool refuses work until reopened. */
  writeError: unknown = null;
  reads = 0;
  writes = 0;
  private hits = 0;
  private evictions = 0;

  constructor(disk: Disk, budgetBytes: number) {
    this.disk = disk;
    this.lru = new LRUCache<number, Buffer>({
      maxSize: Math.max(MIN_CACHE_BYTES, budgetBytes),
      sizeCalculation: () => PAGE_SIZE,
      dispose: (buf, pageNo, reason) => {
        if (reason === 'evict') this.evictions++;
        if (reason !== 'evict' || !this.dirty.has(pageNo)) return;
        this.dirty.delete(pageNo);
        try {
          this.writePage(pageNo, buf);
        } catch (err) {
          this.writeError ??= err;
        }
      },
    });
  }

  get(pageNo: number): Buffer {
    const hit = this.lru.get(pageNo);
    if (hit) {
      this.hits++;
      return hit;
    }
    const buf = Buffer.allocUnsafe(PAGE_SIZE);
    this.disk.read(buf, pageNo * PAGE_SIZE);
    this.reads++;
    verifyPage(buf, pageNo);
    this.lru.set(pageNo, buf);
    return buf;
  }

  /** Lookups served from memory, read from disk (misses), and pages pushed out by the budget. */
  traffic(): { hits: number; misses: number; evictions: number } {
    return { hits: this.hits, misses: this.reads, evictions: this.evictions };
  }

  /** Stores a new or modified page; it is written at commit or eviction. */
  put(pageNo: number, buf: Buffer): void {
    this.dirty.add(pageNo);
    this.lru.set(pageNo, buf);
  }

  /**
   * Drops a page that was freed; nothing is written. A page freed by the
   * transaction that wrote it is no part of the commit, and may be written
   * again before the commit is superseded: it leaves the log too.
   */
  forget(pageNo: number): void {
    this.dirty.delete(pageNo);
    this.written.delete(pageNo);
    this.lru.delete(pageNo);
  }

  /** The pages written since the last call (page -> crc), for the commit log. */
  takeWritten(): Map<number, number> {
    const out = this.written;
    this.written = new Map();
    return out;
  }

  /** Pages the open transaction has written or will write: what its log will name. */
  pendingCount(): number {
    return this.dirty.size + this.written.size;
  }

  dirtyCount(): number {
    return this.dirty.size;
  }

  /** Writes every dirty page; the caller syncs the disk. */
  flush(): void {
    for (const pageNo of this.dirty) {
      const buf = this.lru.peek(pageNo);
      if (buf) this.writePage(pageNo, buf);
    }
    this.dirty.clear();
  }

  bytes(): number {
    return this.lru.calculatedSize;
  }

  budget(): number {
    return this.lru.maxSize;
  }

  private writePage(pageNo: number, buf: Buffer): void {
    sealPage(buf, pageNo);
    this.disk.write(buf, pageNo * PAGE_SIZE);
    this.written.set(pageNo, pageCrc(buf));
    this.writes++;
  }
}
