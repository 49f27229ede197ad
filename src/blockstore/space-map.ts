/**
 * Reference counts and allocation for one numbered space: metadata pages or
 * data chunks. Counts live in a radix tree of their own.
 *
 * A number is free only when both the open transaction and the last commit
 * count it zero: something freed now is still visible to the committed state
 * (a crash returns to it), so it is reused only after the next commit.
 * Numbers allocated and freed inside one transaction are reusable at once.
 */
import { assert, fail } from '../errors.js';
import type { PageCache } from './page-cache.js';
import { PageKind, SLOTS, slot } from './page.js';
import type { RadixTrees, Tree } from './radix-tree.js';

export interface SpaceState {
  tree: Tree;
  /** Numbers below this have been handed out at least once. */
  highWater: number;
  /** Numbers with a non-zero count. */
  used: number;
}

export class SpaceMap {
  readonly kind: PageKind;
  readonly tree: Tree;
  committed: Tree;
  highWater: number;
  used: number;
  /** Lowest valid number (pages 0 and 1 are superblocks, chunk 0 means "none"). */
  readonly base: number;
  /** Highest highWater allowed (pool capacity); Infinity when unbounded. */
  limit: number;
  /** Freed by this transaction but still counted by the committed state. */
  pendingFree = 0;
  private readonly reserved = new Set<number>();
  private hint: number;
  private readonly trees: RadixTrees;
  private readonly cache: PageCache;

  constructor(trees: RadixTrees, kind: PageKind, state: SpaceState, base: number, limit: number) {
    this.trees = trees;
    this.cache = trees.cache;
    this.kind = kind;
    this.tree = { ...state.tree };
    this.committed = { ...state.tree };
    this.highWater = Math.max(base, state.highWater);
    this.used = state.used;
    this.base = base;
    this.limit = limit;
    this.hint = base;
  }

  state(): SpaceState {
    return { tree: { ...this.tree }, highWater: this.highWater, used: this.used };
  }

  count(n: number): number {
    return this.trees.get(this.tree, n);
  }

  committedCount(n: number): number {
    return this.trees.get(this.committed, n);
  }

  /** Numbers that could be allocated now, counting growth up to the limit. */
  available(): number {
    return this.freeBelowHighWater() + (this.limit - this.highWater);
  }

  /** Picks a free number without recording it; `confirm` or `unreserve` follows. */
  reserve(): number {
    let n: number;
    if (this.freeBelowHighWater() > 0) {
      n = this.scan();
    } else {
      if (this.highWater >= this.limit) fail('ENOSPC', 'the pool is full: free space by deleting volumes or snapshots, or discarding data');
      n = this.highWater++;
    }
    this.reserved.add(n);
    return n;
  }

  confirm(n: number): void {
    assert(this.reserved.has(n), `${n} was not reserved`);
    // Stays reserved while its count is written: that write may allocate.
    const old = this.trees.set(this.tree, this.kind, n, 1);
    assert(old === 0, `allocated ${n} already had count ${old}`);
    this.reserved.delete(n);
    this.used++;
  }

  /** Gives back a number that was never confirmed (its write failed). */
  unreserve(n: number): void {
    assert(this.reserved.delete(n), `${n} was not reserved`);
    // Undo a growth step, or the scan would later find the number again and
    // fail the same way (the disk under a grown number may be full).
    if (n === this.highWater - 1) this.highWater--;
  }

  /**
   * Keeps a number that is free in both states out of allocation, without
   * counting it: the commit log's pages, held until a newer commit is durable.
   */
  hold(n: number): void {
    assert(n >= this.base && this.count(n) === 0 && this.committedCount(n) === 0, `held ${n} is in use`);
    if (n >= this.highWater) this.highWater = n + 1;
    this.reserved.add(n);
  }

  /** Ends a `hold` (or a reservation kept for one): the number is free again. */
  release(n: number): void {
    assert(this.reserved.delete(n), `${n} was not held`);
  }

  inc(n: number): void {
    const c = this.count(n);
    assert(c > 0, `inc of free ${n}`);
    this.trees.set(this.tree, this.kind, n, c + 1);
  }

  /** Returns the new count; at zero the number is free (after commit if the committed state holds it). */
  dec(n: number): number {
    const c = this.count(n);
    assert(c > 0, `dec of free ${n} (kind ${this.kind})`);
    const old = this.trees.set(this.tree, this.kind, n, c - 1);
    assert(old === c, `count of ${n} changed under dec`);
    if (c === 1) {
      this.used--;
      if (this.committedCount(n) > 0) this.pendingFree++;
    }
    return c - 1;
  }

  /** Called once the superblock naming the current state is durable. */
  committedNow(): void {
    this.committed = { ...this.tree };
    this.pendingFree = 0;
  }

  private freeBelowHighWater(): number {
    return this.highWater - this.base - this.used - this.pendingFree - this.reserved.size;
  }

  /** Next-fit scan, a leaf of counts at a time, for a number free in both states. */
  private scan(): number {
    const span = this.highWater - this.base;
    let n = this.hint >= this.base && this.hint < this.highWater ? this.hint : this.base;
    // Each step skips at least one number; a full wrap visits every one.
    for (let visited = 0; visited <= span; ) {
      const leafNow = this.trees.leaf(this.tree, n);
      const leafThen = this.trees.leaf(this.committed, n);
      const leafBase = n - (n % SLOTS);
      const end = Math.min(leafBase + SLOTS, this.highWater);
      const now = leafNow === 0 ? null : this.cache.get(leafNow);
      const then = leafThen === 0 ? null : this.cache.get(leafThen);
      for (; n < end; n++, visited++) {
        const at = n - leafBase;
        if (now && slot(now, at) !== 0) continue;
        if (then && slot(then, at) !== 0) continue;
        if (this.reserved.has(n)) continue;
        this.hint = n + 1;
        return n;
      }
      if (n >= this.highWater) n = this.base;
    }
    assert(false, `no free number found though ${this.freeBelowHighWater()} should be free`);
  }
}
