/**
 * Radix trees on their own, for unit tests: a page cache over a memory disk
 * and TreeHooks backed by plain maps, so a tree or a space map is tested
 * without the pool around it. `commit()` makes the current counts the
 * committed ones, which is all shadow paging asks of the hooks.
 */
import { MemoryDisk } from '../../src/blockstore/memory-disk.js';
import { PageCache } from '../../src/blockstore/page-cache.js';
import { RadixTrees } from '../../src/blockstore/radix-tree.js';

export class TreeHarness {
  readonly disk = new MemoryDisk();
  readonly cache = new PageCache(this.disk, 64 * 4096);
  readonly trees = new RadixTrees(this.cache);
  /** Page refcounts now, and as of the last commit. */
  readonly pages = new Map<number, number>();
  committedPages = new Map<number, number>();
  /** Holders the trees gave to data chunks (leaf values of shared MAP pages). */
  readonly chunks = new Map<number, number>();
  private nextPage = 2;
  private readonly free: number[] = [];

  constructor() {
    this.trees.hooks = {
      allocPage: () => this.free.pop() ?? this.nextPage++,
      confirmPage: (p) => this.pages.set(p, 1),
      pageCount: (p) => this.pages.get(p) ?? 0,
      pageCommittedCount: (p) => this.committedPages.get(p) ?? 0,
      incPage: (p) => this.pages.set(p, (this.pages.get(p) ?? 0) + 1),
      decPage: (p) => {
        const left = (this.pages.get(p) ?? 0) - 1;
        if (left < 0) throw new Error(`page ${p} released more often than held`);
        if (left === 0) {
          this.pages.delete(p);
          if (!this.committedPages.has(p)) this.free.push(p);
        } else this.pages.set(p, left);
        return left;
      },
      incChunk: (c) => this.chunks.set(c, (this.chunks.get(c) ?? 0) + 1),
      decChunk: (c) => this.chunks.set(c, (this.chunks.get(c) ?? 0) - 1),
    };
  }

  commit(): void {
    this.cache.flush();
    this.committedPages = new Map(this.pages);
    // Pages freed since the last commit become reusable only now.
    for (let p = 2; p < this.nextPage; p++) if (!this.pages.has(p) && !this.free.includes(p)) this.free.push(p);
  }

  /** Pages held by nobody now. */
  livePages(): number {
    return this.pages.size;
  }
}
