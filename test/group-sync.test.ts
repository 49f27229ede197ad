/**
 * GroupSync on its own: callers that arrive while a sync runs share the next
 * one, never the running one (it may have begun before their writes), and
 * at most one sync runs and one waits.
 */
import t from 'tap';

import { GroupSync } from '../src/blockstore/group-sync.js';

t.test('callers during a running sync share one next sync; none rides on the running one', async (t) => {
  const started: (() => void)[] = [];
  const g = new GroupSync(() => new Promise<void>((resolve) => started.push(resolve)));
  const order: string[] = [];
  const first = g.sync().then(() => order.push('first'));
  t.equal(started.length, 1, 'the first caller starts a sync');
  const late = [1, 2, 3].map((i) => g.sync().then(() => order.push(`late${i}`)));
  t.equal(started.length, 1, 'later callers do not start one while it runs');
  started[0]?.();
  await first;
  await new Promise((r) => setImmediate(r));
  t.same(order, ['first'], 'the late callers are not released by the sync that was running when they came');
  t.equal(started.length, 2, 'one next sync serves all three');
  started[1]?.();
  await Promise.all(late);
  t.same(order, ['first', 'late1', 'late2', 'late3']);
  t.same([g.requests, g.syncs], [4, 2]);
});

t.test('a failed sync fails its callers, and the next caller starts afresh', async (t) => {
  let fail = true;
  const g = new GroupSync(async () => {
    if (fail) throw Object.assign(new Error('EIO: sync failed'), { code: 'EIO' });
  });
  await t.rejects(g.sync(), { code: 'EIO' });
  fail = false;
  await t.resolves(g.sync());
  t.equal(g.syncs, 2);
});
