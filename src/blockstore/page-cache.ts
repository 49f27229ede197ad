/**
 * Metadata pages in memory, bounded by a byte budget.
 *
 * Dirty pages are always pages allocated by the open transaction, at places
 * the committed state does not reference, so evicting one simply writes it
 * early. That keeps memory within the budget whatever a transaction touches.
 * Callers must not hold a page buffer across a call that may modify other
 * pages: re-fetch after it, and hand modified buffers back with `put`.
 *
 * A page may also be stored as a way to make its bytes (`putDeferred`): a
 * B+tree node that changes many times in one transaction is then encoded
 * once, when it is read as bytes, written, or pushed out, not once per
 * change. At most DEFERRED_MAX such pages wait; beyond that the oldest is
 * made into bytes, so memory stays bounded by the budget plus that many.
 */
import { LRUCache } from 'lru-cache';

import { assert } from '../errors.js';
import type { Disk } from './disk.js';
import { PAGE_SIZE, pageCrc, sealPage, verifyPage } from './page.js';

export const MIN_CACHE_BYTES = 16 * PAGE_SIZE;
/** Pages kept as a way to make them rather than as bytes (see putDeferred). */
const DEFERRED_MAX = 1024;

/** Makes a deferred page's bytes: a fresh buffer of PAGE_SIZE the cache then owns. */
export type PageMaker = () => Buffer;

export class PageCache {
  private readonly disk: Disk;
  private readonly lru: LRUCache<number, Buffer>;
  private readonly dirty = new Set<number>();
  /** Dirty pages not made into bytes yet, oldest first; never also in the LRU. */
  private readonly deferred = new Map<number, PageMaker>();
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
    const make = this.deferred.get(pageNo);
    if (make !== undefined) return this.materialize(pageNo, make);
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
    this.deferred.delete(pageNo);
    this.dirty.add(pageNo);
    this.lru.set(pageNo, buf);
  }

  /** Stores a new or modified page as the way to make it; `make` runs at most once, when the bytes are needed. */
  putDeferred(pageNo: number, make: PageMaker): void {
    this.dirty.delete(pageNo);
    this.lru.delete(pageNo);
    // Deleted first, so a page changed again moves to the newest end: the bound makes the oldest.
    this.deferred.delete(pageNo);
    this.deferred.set(pageNo, make);
    if (this.deferred.size <= DEFERRED_MAX) return;
    const [oldest, oldestMake] = this.deferred.entries().next().value as [number, PageMaker];
    this.materialize(oldest, oldestMake);
  }

  /** Whether `make` is still how the page's current bytes will be made (nothing stored over it since). */
  deferredAs(pageNo: number, make: PageMaker): boolean {
    return this.deferred.get(pageNo) === make;
  }

  /**
   * Drops a page that was freed; nothing is written. A page freed by the
   * transaction that wrote it is no part of the commit, and may be written
   * again before the commit is superseded: it leaves the log too.
   */
  forget(pageNo: number): void {
    this.deferred.delete(pageNo);
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
    return this.dirty.size + this.deferred.size + this.written.size;
  }

  dirtyCount(): number {
    return this.dirty.size + this.deferred.size;
  }

  /** Writes every dirty page; the caller syncs the disk. */
  flush(): void {
    for (const [pageNo, make] of [...this.deferred]) this.materialize(pageNo, make);
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

  private materialize(pageNo: number, make: PageMaker): Buffer {
    const buf = make();
    assert(buf.length === PAGE_SIZE, `a deferred page ${pageNo} made ${buf.length} bytes`);
    this.put(pageNo, buf);
    return buf;
  }

  private writePage(pageNo: number, buf: Buffer): void {
    sealPage(buf, pageNo);
    this.disk.write(buf, pageNo * PAGE_SIZE);
    this.written.set(pageNo, pageCrc(buf));
    this.writes++;
  }
}
