/**
 * The space map on its own (no pool): allocation, counts and the rule that a
 * number is reused only when both the open transaction and the last commit
 * count it free, checked against a model over seeded random sequences.
 */
import t from 'tap';

import { PageKind } from '../src/blockstore/page.js';
import { Prng } from '../src/blockstore/prng.js';
import { SpaceMap } from '../src/blockstore/space-map.js';
import { CowvolError } from '../src/errors.js';
import { TreeHarness } from './helpers/trees.js';
import { runSeeds } from './helpers/seeds.js';

function space(limit = Infinity): { h: TreeHarness; s: SpaceMap } {
  const h = new TreeHarness();
  const s = new SpaceMap(h.trees, PageKind.DATA_SPACE, { tree: { root: 0, levels: 1 }, highWater: 1, used: 0 }, 1, limit);
  return { h, s };
}

/** A commit as the pool makes it: pages become the committed ones, then the space map learns it. */
function commit(h: TreeHarness, s: SpaceMap): void {
  h.commit();
  s.committedNow();
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return err instanceof CowvolError ? err.code : String(err);
  }
  return 'none';
}

function alloc(s: SpaceMap): number {
  const n = s.reserve();
  s.confirm(n);
  return n;
}

t.test('allocation hands out numbers from the base, counts them, and stops at the limit', async (t) => {
  const { s } = space(5);
  t.same([alloc(s), alloc(s), alloc(s), alloc(s)], [1, 2, 3, 4]);
  t.equal(s.used, 4);
  t.equal(s.count(3), 1);
  t.equal(s.available(), 0);
  t.equal(codeOf(() => s.reserve()), 'ENOSPC', 'full: ENOSPC');
});

t.test('a number freed while the last commit still counts it is reused only after the next commit', async (t) => {
  const { h, s } = space(4);
  const [a, b, c] = [alloc(s), alloc(s), alloc(s)];
  commit(h, s);
  t.equal(s.dec(b), 0);
  t.equal(s.pendingFree, 1, 'freed, pending the commit');
  t.equal(s.available(), 0, 'not available yet');
  t.equal(codeOf(() => s.reserve()), 'ENOSPC', 'the committed state still uses it');
  commit(h, s);
  t.equal(s.available(), 1);
  t.equal(alloc(s), b, 'after the commit it is reused');
  t.same([s.count(a), s.count(c)], [1, 1]);
});

t.test('a number allocated and freed in one transaction is free again at once; unreserve undoes growth', async (t) => {
  const { s } = space();
  const a = alloc(s);
  t.equal(s.dec(a), 0);
  t.equal(alloc(s), a, 'reused without a commit');
  const r = s.reserve();
  const high = s.highWater;
  s.unreserve(r);
  t.equal(s.highWater, high - 1, 'the growth step was given back');
});

t.test('random alloc, inc, dec and commit against a model: no number is ever handed out while either state counts it', async (t) => {
  await runSeeds(t, {
    first: 1,
    count: 40,
    file: 'dist/test/space-map.test.js',
    run(seed) {
      const rng = new Prng(seed);
      const { h, s } = space(200);
      const now = new Map<number, number>();
      let then = new Map<number, number>();
      for (let step = 0; step < 600; step++) {
        const live = [...now.keys()];
        const op = rng.int(10);
        if (op < 4 && s.available() > 0) {
          const n = alloc(s);
          if ((now.get(n) ?? 0) !== 0 || (then.get(n) ?? 0) !== 0) return `step ${step}: handed out ${n}, still counted`;
          now.set(n, 1);
        } else if (op < 6 && live.length > 0) {
          const n = live[rng.int(live.length)] as number;
          s.inc(n);
          now.set(n, (now.get(n) ?? 0) + 1);
        } else if (op < 9 && live.length > 0) {
          const n = live[rng.int(live.length)] as number;
          const left = s.dec(n);
          const want = (now.get(n) ?? 0) - 1;
          if (left !== want) return `step ${step}: dec(${n}) left ${left}, model ${want}`;
          if (want === 0) now.delete(n);
          else now.set(n, want);
        } else {
          commit(h, s);
          then = new Map(now);
        }
        if (s.used !== now.size) return `step ${step}: used ${s.used}, model ${now.size}`;
      }
      for (const [n, c] of now) if (s.count(n) !== c) return `count of ${n} is ${s.count(n)}, model ${c}`;
      return null;
    },
  });
});
