/**
 * The copy-on-write radix tree on its own (no pool): values against a map
 * model across levels, range walks, shadow paging that never touches a
 * committed page, sharing that copies a shared page and hands its children
 * one more holder, growth in height, and release.
 */
import t from 'tap';

import { PageKind, SLOTS } from '../src/blockstore/page.js';
import { Prng } from '../src/blockstore/prng.js';
import { type Tree, capacity, levelsFor } from '../src/blockstore/radix-tree.js';
import { TreeHarness } from './helpers/trees.js';

t.test('get, set, next and forEach agree with a map, at every height', async (t) => {
  for (const levels of [1, 2, 3]) {
    const h = new TreeHarness();
    const tree: Tree = { root: 0, levels };
    const model = new Map<number, number>();
    const rng = new Prng(levels);
    const span = Math.min(capacity(levels), 5_000_000);
    for (let i = 0; i < 3000; i++) {
      const index = rng.int(span);
      const value = rng.chance(0.2) ? 0 : 1 + rng.int(1 << 30);
      const old = h.trees.set(tree, PageKind.DATA_SPACE, index, value);
      if (old !== (model.get(index) ?? 0)) t.fail(`levels ${levels}: set(${index}) returned ${old}, the model has ${model.get(index) ?? 0}`);
      if (value === 0) model.delete(index);
      else model.set(index, value);
      if (i % 500 === 0) h.commit();
    }
    let wrong = 0;
    for (const [k, v] of model) if (h.trees.get(tree, k) !== v) wrong++;
    t.equal(wrong, 0, `levels ${levels}: every value reads back`);
    const keys = [...model.keys()].sort((a, b) => a - b);
    const from = Math.floor(span / 3);
    const to = Math.floor((2 * span) / 3);
    const seen: number[] = [];
    h.trees.forEach(tree, from, to, (k, v) => {
      if (model.get(k) === v) seen.push(k);
    });
    t.same(seen, keys.filter((k) => k >= from && k < to), `levels ${levels}: forEach visits exactly the range, in order`);
    t.equal(h.trees.next(tree, from, to), keys.find((k) => k >= from && k < to) ?? -1, `levels ${levels}: next finds the first`);
    t.equal(h.trees.get(tree, capacity(levels)), 0, 'past the capacity reads absent');
  }
});

t.test('shadow paging: a committed page is never written; the committed tree still reads its values', async (t) => {
  const h = new TreeHarness();
  const tree: Tree = { root: 0, levels: 2 };
  for (let i = 0; i < 50; i++) h.trees.set(tree, PageKind.DATA_SPACE, i * 997, i + 1);
  h.commit();
  const committed: Tree = { ...tree };
  const image = Buffer.from(h.disk.image());
  h.trees.set(tree, PageKind.DATA_SPACE, 997, 999);
  h.trees.set(tree, PageKind.DATA_SPACE, 5 * SLOTS + 3, 7);
  h.cache.flush();
  t.not(tree.root, committed.root, 'the root was copied, not changed');
  const after = h.disk.image();
  let touched = 0;
  for (const p of h.committedPages.keys()) if (!after.subarray(p * 4096, (p + 1) * 4096).equals(image.subarray(p * 4096, (p + 1) * 4096))) touched++;
  t.equal(touched, 0, 'no committed page changed on disk');
  t.equal(h.trees.get(committed, 997), 2, 'the committed tree still reads the old value');
  t.equal(h.trees.get(tree, 997), 999, 'the live tree reads the new one');
  t.equal(h.trees.get(committed, 5 * SLOTS + 3), 0);
});

t.test('a shared map page is copied on write; the other holder keeps its values, children gain a holder', async (t) => {
  const h = new TreeHarness();
  const a: Tree = { root: 0, levels: 1 };
  for (let i = 0; i < 10; i++) h.trees.set(a, PageKind.MAP, i, 100 + i);
  h.commit();
  // A fork: the second tree takes a reference on the same root.
  const b: Tree = { ...a };
  h.trees.hooks.incPage(a.root);
  h.trees.set(b, PageKind.MAP, 3, 555);
  t.not(b.root, a.root, 'the writer got its own copy');
  t.equal(h.trees.get(a, 3), 103, 'the other holder is untouched');
  t.equal(h.trees.get(b, 3), 555);
  t.equal(h.trees.get(b, 4), 104, 'the copy kept the rest');
  t.equal(h.pages.get(a.root), 1, 'the shared page lost one holder');
  t.equal(h.chunks.get(104), 1, 'each child of the copied leaf got one more holder');
});

t.test('ensureLevels grows the tree without moving values; release frees every page', async (t) => {
  const h = new TreeHarness();
  const tree: Tree = { root: 0, levels: 1 };
  h.trees.set(tree, PageKind.MAP, 10, 1);
  h.trees.set(tree, PageKind.MAP, SLOTS * 3 + 1, 2);
  t.equal(tree.levels, levelsFor(SLOTS * 3 + 2), 'setting past the capacity grew the tree');
  h.trees.ensureLevels(tree, PageKind.MAP, 3);
  t.equal(tree.levels, 3);
  t.equal(h.trees.get(tree, 10), 1);
  t.equal(h.trees.get(tree, SLOTS * 3 + 1), 2);
  t.ok(h.livePages() > 0);
  h.trees.release(tree);
  t.equal(tree.root, 0);
  t.equal(h.livePages(), 0, 'every page released');
  t.equal(h.chunks.get(1), -1, 'each leaf value was released once');
  t.equal(h.chunks.get(2), -1);
});
