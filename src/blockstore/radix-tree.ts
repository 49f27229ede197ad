/**
 * Copy-on-write radix trees: the one metadata structure of the pool.
 *
 * A tree is a sparse array of u32 indexed by a u32-range integer. Interior
 * pages hold child page numbers, leaves hold values, 0 means "absent" at both
 * levels. It is a B-tree whose keys are implicit (ZFS's indirect blocks are
 * the same shape): lookups are one walk of `levels` pages with no key
 * comparisons, and a volume's chunk map, the refcount arrays and the volume
 * directory all use it.
 *
 * Shadow paging: a page the committed state can see is never modified. To
 * change it, the page is copied to a freshly allocated page and the parent is
 * pointed at the copy. A MAP page referenced by more than one parent (after a
 * snapshot or clone) is shared; copying it gives every child one more holder
 * (dm-thin's rule), and the shared original loses one.
 *
 * Allocation and refcounts come in through `TreeHooks` because they live in
 * trees of their own: changing a refcount may shadow a page of the refcount
 * tree, which allocates a page, which changes a refcount. The recursion ends
 * because every page shadowed in a transaction stays writable until commit.
 */
import { assert } from '../errors.js';
import type { PageCache } from './page-cache.js';
import { PageKind, SLOTS, newPage, pageKind, pageLevel, setSlot, slot } from './page.js';

export interface Tree {
  root: number;
  levels: number;
}

export interface TreeHooks {
  /** Picks a free page number; its refcount is recorded by `confirmPage`. */
  allocPage(): number;
  confirmPage(page: number): void;
  pageCount(page: number): number;
  pageCommittedCount(page: number): number;
  incPage(page: number): void;
  /** Returns the new count. */
  decPage(page: number): number;
  /** A copied shared MAP leaf gives its data chunks one more holder. */
  incChunk(chunk: number): void;
  /** A released MAP leaf drops its hold on a data chunk. */
  decChunk(chunk: number): void;
}

export const MAX_LEVELS = 5;
/** Bound on walk restarts in one set(); each restart made a page writable. */
const MAX_RESTARTS = 64;

export function capacity(levels: number): number {
  return SLOTS ** levels;
}

export function levelsFor(entries: number): number {
  let levels = 1;
  while (capacity(levels) < entries) levels++;
  assert(levels <= MAX_LEVELS, `tree of ${entries} entries is too deep`);
  return levels;
}

function slotAt(index: number, level: number): number {
  return Math.floor(index / SLOTS ** level) % SLOTS;
}

export class RadixTrees {
  readonly cache: PageCache;
  hooks!: TreeHooks;
  private depth = 0;

  constructor(cache: PageCache) {
    this.cache = cache;
  }

  get(tree: Tree, index: number): number {
    if (tree.root === 0 || index >= capacity(tree.levels)) return 0;
    let page = tree.root;
    for (let level = tree.levels - 1; level >= 0; level--) {
      const value = slot(this.cache.get(page), slotAt(index, level));
      if (level === 0 || value === 0) return value;
      page = value;
    }
    return 0;
  }

  /** Pages from the root down to the leaf holding `index` (fewer if absent). */
  path(tree: Tree, index: number): number[] {
    const pages: number[] = [];
    if (tree.root === 0 || index >= capacity(tree.levels)) return pages;
    let page = tree.root;
    for (let level = tree.levels - 1; level >= 0; level--) {
      pages.push(page);
      if (level === 0) break;
      page = slot(this.cache.get(page), slotAt(index, level));
      if (page === 0) break;
    }
    return pages;
  }

  /** The leaf page that holds `index`, or 0. */
  leaf(tree: Tree, index: number): number {
    const pages = this.path(tree, index);
    return pages.length === tree.levels ? (pages[pages.length - 1] ?? 0) : 0;
  }

  /** Sets one value and returns the old one. Refcounts of values are the caller's. */
  set(tree: Tree, kind: PageKind, index: number, value: number): number {
    this.depth++;
    assert(this.depth < 64, 'refcount recursion does not converge');
    try {
      for (let restart = 0; restart < MAX_RESTARTS; restart++) {
        if (index >= capacity(tree.levels)) {
          if (value === 0) return 0;
          this.ensureLevels(tree, kind, levelsFor(index + 1));
          continue;
        }
        if (tree.root === 0) {
          if (value === 0) return 0;
          this.allocate(kind, tree.levels - 1, (page) => (tree.root = page));
          continue;
        }
        if (!this.writable(tree.root, kind)) {
          this.shadow(tree.root, kind, (page) => (tree.root = page));
          continue;
        }
        let page = tree.root;
        let changed = false;
        for (let level = tree.levels - 1; level > 0; level--) {
          const at = slotAt(index, level);
          const child = slot(this.cache.get(page), at);
          if (child === 0) {
            if (value === 0) return 0;
            const parent = page;
            this.allocate(kind, level - 1, (fresh) => this.link(parent, at, fresh));
            changed = true;
            break;
          }
          if (!this.writable(child, kind)) {
            const parent = page;
            this.shadow(child, kind, (copy) => this.link(parent, at, copy));
            changed = true;
            break;
          }
          page = child;
        }
        if (changed) continue;
        const leaf = this.cache.get(page);
        const at = slotAt(index, 0);
        const old = slot(leaf, at);
        if (old !== value) {
          setSlot(leaf, at, value);
          this.cache.put(page, leaf);
        }
        return old;
      }
      assert(false, `set(${index}) did not settle after ${MAX_RESTARTS} restarts`);
    } finally {
      this.depth--;
    }
  }

  /** Adds root levels until the tree spans `levels`; the old root moves down. */
  ensureLevels(tree: Tree, kind: PageKind, levels: number): void {
    assert(levels <= MAX_LEVELS, `tree of ${levels} levels is too deep`);
    while (tree.levels < levels) {
      if (tree.root !== 0) {
        // The old root's holder changes from the tree's owner to the new
        // root page, so its refcount stays as it is.
        const root = this.hooks.allocPage();
        const buf = newPage(kind, tree.levels);
        setSlot(buf, 0, tree.root);
        this.cache.put(root, buf);
        tree.root = root;
        tree.levels++;
        this.hooks.confirmPage(root);
      } else {
        tree.levels++;
      }
    }
  }

  /** Drops the owner's hold on the tree; pages and chunks nobody else holds are freed. */
  release(tree: Tree): void {
    if (tree.root !== 0) this.releasePage(tree.root, tree.levels - 1);
    tree.root = 0;
  }

  /** Calls fn for each non-zero value with index in [from, to), in order. */
  forEach(tree: Tree, from: number, to: number, fn: (index: number, value: number) => void): void {
    if (tree.root === 0) return;
    this.visit(tree.root, tree.levels - 1, 0, from, Math.min(to, capacity(tree.levels)), (index, value) => {
      fn(index, value);
    });
  }

  /** The first index in [from, to) with a non-zero value, or -1. */
  next(tree: Tree, from: number, to: number): number {
    let found = -1;
    if (tree.root !== 0) {
      this.visit(tree.root, tree.levels - 1, 0, from, Math.min(to, capacity(tree.levels)), (index) => {
        found = index;
        return true;
      });
    }
    return found;
  }

  /** Whether a page may be modified in place in this transaction. */
  writable(page: number, kind: PageKind): boolean {
    if (this.hooks.pageCommittedCount(page) !== 0) return false;
    return kind !== PageKind.MAP || this.hooks.pageCount(page) === 1;
  }

  /** Visits non-zero values in [from, to) in order; stops early when fn returns true (and says so). */
  private visit(page: number, level: number, base: number, from: number, to: number, fn: (index: number, value: number) => boolean | void): boolean {
    const span = SLOTS ** level;
    const first = Math.max(0, Math.floor((from - base) / span));
    const last = Math.min(SLOTS - 1, Math.floor((to - 1 - base) / span));
    for (let i = first; i <= last; i++) {
      // Re-fetch each time: fn may touch other pages and evict this one.
      const value = slot(this.cache.get(page), i);
      if (value === 0) continue;
      const stop = level === 0 ? fn(base + i, value) === true : this.visit(value, level - 1, base + i * span, from, to, fn);
      if (stop) return true;
    }
    return false;
  }

  /*
   * New pages are linked into their parent before their refcount is
   * recorded: recording it may walk this very tree (when it is a refcount
   * tree), and that walk must already see the new page.
   */
  private allocate(kind: PageKind, level: number, link: (page: number) => void): void {
    const page = this.hooks.allocPage();
    this.cache.put(page, newPage(kind, level));
    link(page);
    this.hooks.confirmPage(page);
  }

  private link(parent: number, at: number, child: number): void {
    const buf = this.cache.get(parent);
    setSlot(buf, at, child);
    this.cache.put(parent, buf);
  }

  /** Copies a page the transaction may not modify and links the copy in its place. */
  private shadow(page: number, kind: PageKind, link: (copy: number) => void): void {
    const original = this.cache.get(page);
    assert(pageKind(original) === kind, `page ${page} is kind ${pageKind(original)}, expected ${kind}`);
    const level = pageLevel(original);
    const copy = this.hooks.allocPage();
    this.cache.put(copy, Buffer.from(original));
    link(copy);
    this.hooks.confirmPage(copy);
    if (this.hooks.pageCount(page) > 1) {
      assert(kind === PageKind.MAP, `only map pages are shared (page ${page})`);
      const children = this.children(copy);
      for (const child of children) {
        if (level === 0) this.hooks.incChunk(child);
        else this.hooks.incPage(child);
      }
    }
    this.hooks.decPage(page);
  }

  /** The non-zero slots of a page: child pages, or a leaf's values. */
  children(page: number): number[] {
    const buf = this.cache.get(page);
    const out: number[] = [];
    for (let i = 0; i < SLOTS; i++) {
      const value = slot(buf, i);
      if (value !== 0) out.push(value);
    }
    return out;
  }

  private releasePage(page: number, level: number): void {
    // Read the children before the page can be freed and reused.
    const children = this.children(page);
    if (this.hooks.decPage(page) > 0) return;
    for (const child of children) {
      if (level === 0) this.hooks.decChunk(child);
      else this.releasePage(child, level - 1);
    }
  }
}
