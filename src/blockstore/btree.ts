/**
 * Copy-on-write B+trees with 16-byte keys and small byte values: the
 * metadata tree of a filesystem volume (src/cowfs decides what the keys
 * mean; this file only orders them with memcmp).
 *
 * Why a second structure beside the radix tree: a filesystem's keys are
 * sparse and ordered (inode, item type, offset), its values vary in length
 * (a directory entry carries its name), and one volume must hold millions
 * of them with lookups that do not scan. btrfs keeps a filesystem in the
 * same shape.
 *
 * A page is a node: the 32-byte header (kind FS, level 0 for a leaf), a u16
 * count, then the entries in key order. Leaf entry: key | u16 length |
 * value. Interior entry: key | u32 child page; an interior key is a lower
 * bound of everything under its child and above everything under the child
 * before it (the first key of a node is never compared).
 *
 * Sharing follows the radix tree's rule, so snapshots of a filesystem are
 * one refcount on the root: a page the committed state can see, or that
 * more than one parent holds, is copied before it changes, and a copy of a
 * shared interior page gives each child one more holder. Leaves reference
 * nothing (a file's data lives in the volume's chunk map), so a leaf copy
 * takes no holds and a released leaf releases nothing.
 *
 * Caveats: underfull leaves merge with their right sibling, interior nodes
 * only disappear when empty, so a tree that shrank a lot keeps some sparse
 * interior pages until it is deleted. Every operation is bounded by the
 * tree's height (MAX_HEIGHT).
 */
import { assert, fail } from '../errors.js';
import type { PageCache } from './page-cache.js';
import { HEADER_SIZE, PAGE_SIZE, PageKind, newPage, pageKind, pageLevel } from './page.js';
import type { Tree, TreeHooks } from './radix-tree.js';

export const KEY_SIZE = 16;
/** Two largest items always fit in one leaf, so a split always succeeds in two pages or three. */
export const MAX_VALUE = 2000;
/** Nodes kept from stores at most (see BTrees.stored): 4096 pages' worth, 16 MiB of pages. */
const STORED_MAX = 4096;
const ROOM = PAGE_SIZE - HEADER_SIZE - 2;
const MAX_HEIGHT = 8;
/** A leaf smaller than this after a delete is merged into its left neighbour, or takes its right one in. */
const MERGE_BELOW = ROOM / 4;

interface Node {
  level: number;
  keys: Buffer[];
  /** Leaf values (level 0). */
  values: Buffer[];
  /** Child pages (level > 0). */
  children: number[];
}

/** A node the open transaction stored, the way to encode it, and its bytes once encoded. */
interface Stored {
  node: Node;
  make: () => Buffer;
  buf: Buffer | null;
}

/** A writable page on the way down, with the index taken in it. */
interface Step {
  page: number;
  /** The page's node: shared (read-only) until `owned`, which a change needs first (BTrees.mine). */
  node: Node;
  at: number;
  owned: boolean;
}

function decode(buf: Buffer, page: number): Node {
  assert(pageKind(buf) === PageKind.FS, `page ${page} is kind ${pageKind(buf)}, expected a filesystem tree page`);
  const level = pageLevel(buf);
  const count = buf.readUInt16LE(HEADER_SIZE);
  const node: Node = { level, keys: [], values: [], children: [] };
  let at = HEADER_SIZE + 2;
  // Views, not copies: a page is never changed in place (a change stores a new buffer), so they stay true.
  for (let i = 0; i < count; i++) {
    node.keys.push(buf.subarray(at, at + KEY_SIZE));
    at += KEY_SIZE;
    if (level === 0) {
      const length = buf.readUInt16LE(at);
      node.values.push(buf.subarray(at + 2, at + 2 + length));
      at += 2 + length;
    } else {
      node.children.push(buf.readUInt32LE(at));
      at += 4;
    }
  }
  return node;
}

function entryBytes(node: Node, i: number): number {
  return KEY_SIZE + (node.level === 0 ? 2 + (node.values[i]?.length ?? 0) : 4);
}

function bytesOf(node: Node): number {
  let n = 0;
  for (let i = 0; i < node.keys.length; i++) n += entryBytes(node, i);
  return n;
}

function encode(node: Node): Buffer {
  const buf = newPage(PageKind.FS, node.level);
  buf.writeUInt16LE(node.keys.length, HEADER_SIZE);
  let at = HEADER_SIZE + 2;
  node.keys.forEach((key, i) => {
    key.copy(buf, at);
    at += KEY_SIZE;
    if (node.level === 0) {
      const value = node.values[i] as Buffer;
      buf.writeUInt16LE(value.length, at);
      value.copy(buf, at + 2);
      at += 2 + value.length;
    } else {
      buf.writeUInt32LE(node.children[i] as number, at);
      at += 4;
    }
  });
  assert(at <= PAGE_SIZE, `tree node overflows its page (${at} bytes)`);
  return buf;
}

/**
 * Byte order of two keys (KEY_SIZE bytes each) in four word compares.
 * Buffer.compare is a call into C++ per pair, and a lookup makes a dozen:
 * it was a tenth of a cowfs create's time.
 */
function compareKeys(a: Buffer, b: Buffer): number {
  for (let at = 0; at < KEY_SIZE; at += 4) {
    const x = a.readUInt32BE(at);
    const y = b.readUInt32BE(at);
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

/** Index of the last key <= key in a node (0 when every key is greater: the first key is a lower bound by position). */
function childIndex(node: Node, key: Buffer): number {
  let lo = 1;
  let hi = node.keys.length - 1;
  let found = 0;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (compareKeys(node.keys[mid] as Buffer, key) <= 0) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found;
}

/** Position of key in a leaf: [index, present]. */
function leafIndex(node: Node, key: Buffer): [number, boolean] {
  let lo = 0;
  let hi = node.keys.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const c = compareKeys(node.keys[mid] as Buffer, key);
    if (c === 0) return [mid, true];
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return [lo, false];
}

/** Entries [from, to) of a node as a node of their own. */
function slice(node: Node, from: number, to: number): Node {
  return {
    level: node.level,
    keys: node.keys.slice(from, to),
    values: node.level === 0 ? node.values.slice(from, to) : [],
    children: node.level === 0 ? [] : node.children.slice(from, to),
  };
}

/** Cuts an overfull node into pieces that each fit a page: two halves by bytes, or three around a large entry. */
function split(node: Node): Node[] {
  const total = bytesOf(node);
  const pieces: Node[] = [];
  let start = 0;
  let size = 0;
  const target = Math.min(ROOM, Math.ceil(total / 2));
  for (let i = 0; i < node.keys.length; i++) {
    const e = entryBytes(node, i);
    if (i > start && (size + e > ROOM || (pieces.length === 0 && size >= target))) {
      pieces.push(slice(node, start, i));
      start = i;
      size = 0;
    }
    size += e;
  }
  pieces.push(slice(node, start, node.keys.length));
  assert(pieces.length >= 2 && pieces.every((p) => bytesOf(p) <= ROOM), 'a tree node did not split into pages');
  return pieces;
}

function checkKey(key: Buffer): void {
  assert(key.length === KEY_SIZE, `tree keys are ${KEY_SIZE} bytes, got ${key.length}`);
}

export class BTrees {
  private readonly cache: PageCache;
  private readonly hooksOf: () => TreeHooks;
  /**
   * Decoded nodes by the page buffer they came from: a changed page is a
   * new buffer, so an entry can never be stale, and it goes when its buffer
   * leaves the page cache. Read-only: changes start from own().
   */
  private readonly decoded = new WeakMap<Buffer, Node>();
  /**
   * The node each page was last stored from, with the buffer it was
   * encoded into once the cache needed its bytes, so reading a page just
   * changed neither encodes nor decodes it (a decode makes a Buffer per
   * entry, an encode a page: most of what a create or an unlink cost).
   * Only the open transaction's pages are kept, at most STORED_MAX: their
   * entries may view older page buffers and keep them alive, so a commit
   * (`committed`) lets them all go. An entry the cache no longer holds (as
   * its maker or its buffer) is stale and ignored.
   */
  private stored = new Map<number, Stored>();

  /** hooks come from the pool (the same ones the radix trees use), read at each call. */
  constructor(cache: PageCache, hooks: () => TreeHooks) {
    this.cache = cache;
    this.hooksOf = hooks;
  }

  private get hooks(): TreeHooks {
    return this.hooksOf();
  }

  /** The page's node, shared: not to be changed. */
  private node(page: number): Node {
    const kept = this.stored.get(page);
    if (kept !== undefined && this.cache.deferredAs(page, kept.make)) return kept.node;
    const buf = this.cache.get(page);
    if (kept !== undefined && kept.buf === buf) return kept.node;
    let node = this.decoded.get(buf);
    if (node === undefined) {
      node = decode(buf, page);
      this.decoded.set(buf, node);
    }
    return node;
  }

  /** A copy of the page's node whose arrays the caller may change. */
  private own(page: number): Node {
    const n = this.node(page);
    return { level: n.level, keys: [...n.keys], values: [...n.values], children: [...n.children] };
  }

  /** The page is encoded when its bytes are needed (PageCache.putDeferred): a leaf changed a hundred times is encoded once. */
  private store(page: number, node: Node, last = false): void {
    if (this.stored.size >= STORED_MAX && !this.stored.has(page)) this.stored.clear();
    // A copy of the arrays, unless this is the `last` change the caller makes to the node: it may go on
    // changing it (a split, a parent's new child) before storing it again.
    const copy = last ? node : { level: node.level, keys: [...node.keys], values: [...node.values], children: [...node.children] };
    const kept: Stored = { buf: null, node: copy, make: () => (kept.buf = encode(kept.node)) };
    this.stored.set(page, kept);
    this.cache.putDeferred(page, kept.make);
  }

  /** A commit made the transaction's pages durable: the nodes kept for them go (see `stored`). */
  committed(): void {
    this.stored = new Map();
  }

  get(tree: Readonly<Tree>, key: Buffer): Buffer | undefined {
    checkKey(key);
    if (tree.root === 0) return undefined;
    let page = tree.root;
    for (let depth = 0; depth < MAX_HEIGHT; depth++) {
      const node = this.node(page);
      if (node.level === 0) {
        const [i, present] = leafIndex(node, key);
        return present ? node.values[i] : undefined;
      }
      page = node.children[childIndex(node, key)] as number;
    }
    assert(false, 'tree deeper than its bound');
  }

  /**
   * Calls fn for each entry with from <= key < to, in key order, until fn
   * returns true. Reads only the pages on the way; fn must not change the
   * tree (collect, then change).
   */
  range(tree: Readonly<Tree>, from: Buffer, to: Buffer, fn: (key: Buffer, value: Buffer) => boolean | void): void {
    checkKey(from);
    checkKey(to);
    if (tree.root !== 0) this.visit(tree.root, from, to, fn, 0);
  }

  private visit(page: number, from: Buffer, to: Buffer, fn: (key: Buffer, value: Buffer) => boolean | void, depth: number): boolean {
    assert(depth < MAX_HEIGHT, 'tree deeper than its bound');
    const node = this.node(page);
    if (node.level === 0) {
      for (let i = leafIndex(node, from)[0]; i < node.keys.length; i++) {
        const key = node.keys[i] as Buffer;
        if (compareKeys(key, to) >= 0) return true;
        if (fn(key, node.values[i] as Buffer) === true) return true;
      }
      return false;
    }
    for (let i = childIndex(node, from); i < node.children.length; i++) {
      if (i > 0 && compareKeys(node.keys[i] as Buffer, to) >= 0) return true;
      if (this.visit(node.children[i] as number, from, to, fn, depth + 1)) return true;
    }
    return false;
  }

  /** Inserts or replaces one entry. */
  put(tree: Tree, keyIn: Buffer, valueIn: Buffer): void {
    checkKey(keyIn);
    if (valueIn.length > MAX_VALUE) fail('EINVAL', `tree value of ${valueIn.length} bytes is over ${MAX_VALUE}`);
    // Copies: a node kept from a store holds them, and the caller's buffers are the caller's to change.
    const key = Buffer.from(keyIn);
    const value = Buffer.from(valueIn);
    if (tree.root === 0) {
      tree.root = this.fresh({ level: 0, keys: [key], values: [value], children: [] });
      tree.levels = 1;
      return;
    }
    const path = this.descend(tree, key);
    const leaf = path[path.length - 1] as Step;
    const [i, present] = leafIndex(leaf.node, key);
    if (present) leaf.node.values[i] = value;
    else {
      leaf.node.keys.splice(i, 0, key);
      leaf.node.values.splice(i, 0, value);
    }
    this.settleUp(tree, path);
  }

  /** Removes one entry; says whether it was there. */
  del(tree: Tree, key: Buffer): boolean {
    checkKey(key);
    if (tree.root === 0 || this.get(tree, key) === undefined) return false;
    const path = this.descend(tree, key);
    const leaf = path[path.length - 1] as Step;
    const [i, present] = leafIndex(leaf.node, key);
    assert(present, 'a key found on the way down vanished');
    leaf.node.keys.splice(i, 1);
    leaf.node.values.splice(i, 1);
    this.store(leaf.page, leaf.node);
    if (path.length > 1) this.mergeLeaf(path);
    this.pruneEmpty(tree, path);
    return true;
  }

  /** Drops the owner's hold; pages nobody else holds are freed, recursively. */
  release(tree: Tree): void {
    if (tree.root !== 0) this.releasePage(tree.root, 0);
    tree.root = 0;
    tree.levels = 0;
  }

  /** Every page of the tree with its level and children, parents first; for the checker. */
  walk(tree: Readonly<Tree>, fn: (page: number, level: number, children: number[], entries: number) => boolean): void {
    const go = (page: number, depth: number): void => {
      assert(depth < MAX_HEIGHT, 'tree deeper than its bound');
      const node = this.node(page);
      if (!fn(page, node.level, node.children, node.keys.length)) return;
      for (const child of node.children) go(child, depth + 1);
    };
    if (tree.root !== 0) go(tree.root, 0);
  }

  // ---- internals -----------------------------------------------------------

  private fresh(node: Node): number {
    const page = this.hooks.allocPage();
    this.store(page, node);
    this.hooks.confirmPage(page);
    return page;
  }

  private writable(page: number): boolean {
    return this.hooks.pageCommittedCount(page) === 0 && this.hooks.pageCount(page) === 1;
  }

  /** A writable copy of a page the transaction may not change; the original loses this holder. */
  private shadow(page: number): number {
    const node = this.node(page);
    const copy = this.fresh(node);
    if (this.hooks.pageCount(page) > 1) for (const child of node.children) this.hooks.incPage(child);
    this.hooks.decPage(page);
    return copy;
  }

  /** Makes every page from the root to key's leaf writable, and returns them. */
  private descend(tree: Tree, key: Buffer): Step[] {
    if (!this.writable(tree.root)) tree.root = this.shadow(tree.root);
    const path: Step[] = [];
    let page = tree.root;
    for (let depth = 0; depth < MAX_HEIGHT; depth++) {
      const shared = this.node(page);
      if (shared.level === 0) {
        path.push({ page, node: this.own(page), at: 0, owned: true });
        return path;
      }
      const at = childIndex(shared, key);
      let child = shared.children[at] as number;
      // An inner node is copied only when it changes: most puts change the leaf alone.
      const step: Step = { page, node: shared, at, owned: false };
      if (!this.writable(child)) {
        child = this.shadow(child);
        this.mine(step).children[at] = child;
        this.store(page, step.node);
      }
      path.push(step);
      page = child;
    }
    assert(false, 'tree deeper than its bound');
  }

  /** The step's node, copied first if it is still the shared one: to be changed, then stored. */
  private mine(step: Step): Node {
    if (!step.owned) {
      step.node = this.own(step.page);
      step.owned = true;
    }
    return step.node;
  }

  /** Writes the changed leaf and splits upward while a node overflows. */
  private settleUp(tree: Tree, path: Step[]): void {
    for (let d = path.length - 1; d >= 0; d--) {
      const step = path[d] as Step;
      if (bytesOf(step.node) <= ROOM) {
        this.store(step.page, step.node, true);
        return;
      }
      const pieces = split(step.node);
      this.store(step.page, pieces[0] as Node, true);
      const extra = pieces.slice(1).map((p) => ({ key: p.keys[0] as Buffer, page: this.fresh(p) }));
      if (d === 0) {
        assert(tree.levels < MAX_HEIGHT, 'tree would grow past its height bound');
        const root: Node = { level: step.node.level + 1, keys: [Buffer.alloc(KEY_SIZE), ...extra.map((e) => e.key)], values: [], children: [step.page, ...extra.map((e) => e.page)] };
        tree.root = this.fresh(root);
        tree.levels++;
        return;
      }
      const up = path[d - 1] as Step;
      const parent = this.mine(up);
      parent.keys.splice(up.at + 1, 0, ...extra.map((e) => e.key));
      parent.children.splice(up.at + 1, 0, ...extra.map((e) => e.page));
    }
  }

  /** A small leaf takes its right sibling in (or gives itself to its left one) when both fit one page. */
  private mergeLeaf(path: Step[]): void {
    const leaf = path[path.length - 1] as Step;
    const parent = path[path.length - 2] as Step;
    if (leaf.node.keys.length === 0 || bytesOf(leaf.node) >= MERGE_BELOW) return;
    const pairs: [number, number][] = [
      [parent.at, parent.at + 1],
      [parent.at - 1, parent.at],
    ];
    for (const [l, r] of pairs) {
      if (l < 0 || r >= parent.node.children.length) continue;
      const leftPage = parent.node.children[l] as number;
      const rightPage = parent.node.children[r] as number;
      const left = l === parent.at ? leaf.node : this.node(leftPage);
      const right = r === parent.at ? leaf.node : this.node(rightPage);
      if (bytesOf(left) + bytesOf(right) > ROOM) continue;
      // Both go into a writable page: the leaf itself when it is the left one, else a copy of the left.
      const target = l === parent.at ? leftPage : this.writable(leftPage) ? leftPage : this.shadow(leftPage);
      this.store(target, { level: 0, keys: [...left.keys, ...right.keys], values: [...left.values, ...right.values], children: [] });
      this.mine(parent);
      parent.node.children[l] = target;
      parent.node.keys.splice(r, 1);
      parent.node.children.splice(r, 1);
      this.store(parent.page, parent.node);
      // The page that was merged away loses the parent's hold; it was the leaf (writable) or an unchanged sibling.
      this.releasePage(rightPage, 0);
      path[path.length - 1] = { page: target, node: this.own(target), at: 0, owned: true };
      parent.at = l;
      return;
    }
  }

  /** Removes emptied nodes bottom-up and collapses a root with one child. */
  private pruneEmpty(tree: Tree, path: Step[]): void {
    for (let d = path.length - 1; d > 0; d--) {
      const step = path[d] as Step;
      const node = this.node(step.page);
      if (node.keys.length > 0) break;
      const parent = path[d - 1] as Step;
      this.mine(parent);
      parent.node.keys.splice(parent.at, 1);
      parent.node.children.splice(parent.at, 1);
      this.store(parent.page, parent.node);
      this.releasePage(step.page, 0);
    }
    for (let depth = 0; depth < MAX_HEIGHT; depth++) {
      const root = this.node(tree.root);
      if (root.level === 0 && root.keys.length === 0) {
        this.releasePage(tree.root, 0);
        tree.root = 0;
        tree.levels = 0;
        return;
      }
      if (root.level === 0 || root.children.length !== 1) return;
      // The only child changes holder from the root page to the tree's owner: its count stays.
      const only = root.children[0] as number;
      this.store(tree.root, { ...root, keys: [], children: [] });
      this.releasePage(tree.root, 0);
      tree.root = only;
      tree.levels--;
    }
  }

  private releasePage(page: number, depth: number): void {
    assert(depth < MAX_HEIGHT, 'tree deeper than its bound');
    // Read the children before the page can be freed and reused.
    const children = this.node(page).children;
    if (this.hooks.decPage(page) > 0) return;
    for (const child of children) this.releasePage(child, depth + 1);
  }
}
