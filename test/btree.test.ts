/**
 * The copy-on-write B+tree on its own (no pool): entries against a sorted
 * map model through inserts, replacements and deletes of values of every
 * size (splits into two and three pages, leaf merges, a root that grows
 * and collapses), range walks, shadow paging that never changes a page the
 * last commit can see, and sharing: a fork is one hold on the root, the two
 * trees then diverge without seeing each other's changes, and releasing
 * both leaves no page held. The tree keeps the nodes it just stored to
 * skip decoding them again, so a caller changing its buffers after a put
 * must not reach them, and encodes a changed node only when its bytes are
 * needed (a commit, a read as bytes, or the bound on nodes waiting).
 */
import t from 'tap';

import { BTrees, KEY_SIZE, MAX_VALUE } from '../src/blockstore/btree.js';
import { PageCache } from '../src/blockstore/page-cache.js';
import { Prng } from '../src/blockstore/prng.js';
import type { Tree } from '../src/blockstore/radix-tree.js';
import { TreeHarness } from './helpers/trees.js';

function key(n: number): Buffer {
  const k = Buffer.alloc(KEY_SIZE);
  k.writeUInt32BE(Math.floor(n / 2 ** 32), 8);
  k.writeUInt32BE(n % 2 ** 32, 12);
  return k;
}

function num(k: Buffer): number {
  return k.readUInt32BE(8) * 2 ** 32 + k.readUInt32BE(12);
}

function value(rng: Prng, n: number): Buffer {
  const size = rng.chance(0.05) ? MAX_VALUE - rng.int(20) : rng.int(300);
  return Buffer.alloc(size, n % 251);
}

function contents(b: BTrees, tree: Tree): [number, string][] {
  const out: [number, string][] = [];
  b.range(tree, Buffer.alloc(KEY_SIZE), Buffer.alloc(KEY_SIZE, 0xff), (k, v) => {
    out.push([num(k), v.toString('hex')]);
  });
  return out;
}

function modelContents(model: Map<number, Buffer>): [number, string][] {
  return [...model.entries()].sort((a, b) => a[0] - b[0]).map(([k, v]) => [k, v.toString('hex')]);
}

/** Every page of both trees kept its committed bytes: the harness's disk holds what the last commit wrote. */
function committedUnchanged(h: TreeHarness, before: Map<number, string>): number {
  let changed = 0;
  for (const [page, hex] of before) {
    if (!h.committedPages.has(page)) continue;
    const now = Buffer.alloc(4096);
    h.disk.read(now, page * 4096);
    if (now.toString('hex') !== hex) changed++;
  }
  return changed;
}

t.test('put, get, del and range agree with a sorted map through splits and merges', async (t) => {
  for (const seed of [1, 2, 3]) {
    const h = new TreeHarness();
    const b = new BTrees(h.cache, () => h.trees.hooks);
    const tree: Tree = { root: 0, levels: 0 };
    const model = new Map<number, Buffer>();
    const rng = new Prng(seed);
    let maxLevels = 0;
    for (let i = 0; i < 6000; i++) {
      const n = rng.int(4000);
      if (rng.chance(0.35)) {
        const had = b.del(tree, key(n));
        if (had !== model.has(n)) t.fail(`seed ${seed}: del(${n}) said ${had}`);
        model.delete(n);
      } else {
        const v = value(rng, n);
        b.put(tree, key(n), v);
        model.set(n, v);
      }
      maxLevels = Math.max(maxLevels, tree.levels);
      if (i % 700 === 0) h.commit();
    }
    t.same(contents(b, tree), modelContents(model), `seed ${seed}: the whole tree reads as the model, in order`);
    let wrong = 0;
    for (let n = 0; n < 4000; n++) if ((b.get(tree, key(n))?.toString('hex') ?? null) !== (model.get(n)?.toString('hex') ?? null)) wrong++;
    t.equal(wrong, 0, `seed ${seed}: every key reads back, present or absent`);
    t.ok(maxLevels >= 3, `seed ${seed}: the tree grew to ${maxLevels} levels`);
    const some: number[] = [];
    b.range(tree, key(1000), key(1100), (k) => {
      some.push(num(k));
    });
    t.same(some, [...model.keys()].filter((k) => k >= 1000 && k < 1100).sort((a, c) => a - c), `seed ${seed}: a range visits exactly its keys`);
    for (const n of [...model.keys()]) b.del(tree, key(n));
    t.equal(tree.root, 0, `seed ${seed}: deleting everything empties the tree`);
    t.equal(h.livePages(), 0, `seed ${seed}: and holds no page`);
  }
});

t.test('a committed tree is never written over; a fork shares its root and diverges', async (t) => {
  const h = new TreeHarness();
  const b = new BTrees(h.cache, () => h.trees.hooks);
  const a: Tree = { root: 0, levels: 0 };
  const rng = new Prng(9);
  const modelA = new Map<number, Buffer>();
  for (let n = 0; n < 3000; n++) {
    const v = value(rng, n);
    b.put(a, key(n * 3), v);
    modelA.set(n * 3, v);
  }
  h.commit();
  const before = new Map<number, string>();
  b.walk(a, (page) => {
    const buf = Buffer.alloc(4096);
    h.disk.read(buf, page * 4096);
    before.set(page, buf.toString('hex'));
    return true;
  });
  // The fork: one more holder on the root, nothing copied.
  const pagesBefore = h.livePages();
  h.trees.hooks.incPage(a.root);
  const c: Tree = { ...a };
  const modelC = new Map(modelA);
  t.equal(h.livePages(), pagesBefore, 'a fork allocates no page');
  for (let i = 0; i < 2000; i++) {
    const n = rng.int(9000);
    const [tree, model] = rng.chance(0.5) ? [a, modelA] : [c, modelC];
    if (rng.chance(0.4)) {
      b.del(tree, key(n));
      model.delete(n);
    } else {
      const v = value(rng, n + 7);
      b.put(tree, key(n), v);
      model.set(n, v);
    }
  }
  t.same(contents(b, a), modelContents(modelA), 'the original reads as its own model');
  t.same(contents(b, c), modelContents(modelC), 'the fork reads as its own model');
  h.cache.flush();
  t.equal(committedUnchanged(h, before), 0, 'no page the commit could see was written');
  b.release(a);
  t.same(contents(b, c), modelContents(modelC), 'releasing the original leaves the fork whole');
  b.release(c);
  t.equal(h.livePages(), 0, 'releasing both frees every page');
});

t.test('values over the bound are refused, keys must be 16 bytes', async (t) => {
  const h = new TreeHarness();
  const b = new BTrees(h.cache, () => h.trees.hooks);
  const tree: Tree = { root: 0, levels: 0 };
  t.throws(() => b.put(tree, key(1), Buffer.alloc(MAX_VALUE + 1)), { code: 'EINVAL' });
  t.equal(tree.root, 0, 'nothing was written');
  t.throws(() => b.get(tree, Buffer.alloc(4)));
});

t.test('a put keeps its own copies: the caller may change its key and value buffers afterwards', async (t) => {
  const h = new TreeHarness();
  const b = new BTrees(h.cache, () => h.trees.hooks);
  const tree: Tree = { root: 0, levels: 0 };
  for (let n = 0; n < 50; n++) b.put(tree, key(n), Buffer.alloc(40, n));
  h.commit();
  const k = key(7);
  const v = Buffer.alloc(40, 0xaa);
  b.put(tree, k, v);
  v.fill(0xbb);
  k.fill(0xff);
  t.same(b.get(tree, key(7)), Buffer.alloc(40, 0xaa), 'the value reads as it was put');
  t.equal(b.get(tree, Buffer.alloc(KEY_SIZE, 0xff)), undefined, 'and the key did not move');
  const keys: number[] = [];
  b.range(tree, Buffer.alloc(KEY_SIZE), Buffer.alloc(KEY_SIZE, 0xff), (kk) => {
    keys.push(num(kk));
  });
  t.same(keys, Array.from({ length: 50 }, (_, i) => i), 'every key in order');
});

t.test('a leaf changed many times in one transaction is encoded once, when its bytes are needed', async (t) => {
  const h = new TreeHarness();
  const b = new BTrees(h.cache, () => h.trees.hooks);
  const tree: Tree = { root: 0, levels: 0 };
  b.put(tree, key(0), Buffer.alloc(8));
  h.commit();
  // Count the pages stored as bytes: an encoded node reaches the cache through put.
  let made = 0;
  const put = h.cache.put.bind(h.cache);
  h.cache.put = (page, buf) => {
    made++;
    put(page, buf);
  };
  for (let n = 1; n <= 100; n++) b.put(tree, key(n), Buffer.alloc(8, n));
  t.equal(made, 0, 'a hundred puts into one leaf encoded nothing yet');
  t.same(b.get(tree, key(50)), Buffer.alloc(8, 50), 'and read back from the node kept');
  h.commit();
  t.equal(made, 1, 'the commit encoded the leaf once');
  // What the disk holds, read through a cache of its own: the encode wrote every change.
  const fromDisk = new BTrees(new PageCache(h.disk, 64 * 4096), () => h.trees.hooks);
  t.same(contents(fromDisk, tree), contents(b, tree), 'the disk holds all 101 entries');
  t.equal(contents(fromDisk, tree).length, 101);
});

t.test('pages waiting to be encoded are bounded: past 1024 the oldest is made into bytes', async (t) => {
  const h = new TreeHarness();
  const made: number[] = [];
  const page = (n: number) => () => {
    made.push(n);
    return Buffer.alloc(4096, n % 251);
  };
  for (let n = 2; n < 2 + 1030; n++) h.cache.putDeferred(n, page(n));
  t.same(made, [2, 3, 4, 5, 6, 7], 'the six oldest of 1030 were made');
  h.cache.forget(100);
  h.cache.flush();
  t.equal(made.length, 1029, 'the flush made the rest, but not the page forgotten');
  t.equal(new Set(made).size, made.length, 'each page once');
});
