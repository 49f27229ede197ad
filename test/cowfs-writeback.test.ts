/**
 * The kernel's writeback cache under a cowfs mount, served by the daemon:
 * writes a process was told are done may still be in the page cache, so a
 * snapshot, a clone and a group snapshot must flush the mount first
 * (src/daemon/fs-mounts.ts); and the mount gets a disk's dirty-page limits
 * instead of FUSE's strict ones (src/host/dirty-limits.ts).
 */
import fs from 'node:fs';
import path from 'node:path';

import t, { type Test } from 'tap';

import { dirtyLimits, relaxDirtyLimits } from '../src/host/dirty-limits.js';
import { mountAt, readMountTable } from '../src/host/mount-table.js';
import { Daemon, cli, scratchPool, sh, tidy } from './helpers/daemon.js';
import { Talker } from './helpers/talker.js';

const MiB = 1 << 20;

/** Writes `n` MiB of a pattern into FILE without fsync and keeps it open (its close would write the pages back). */
const WRITER = `
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
for line in sys.stdin:
    n = int(line)
    for i in range(n):
        os.pwrite(fd, bytes([65 + i % 26]) * ${MiB}, i * ${MiB})
    print("written", flush=True)
`;

function pattern(n: number): Buffer {
  return Buffer.concat(Array.from({ length: n }, (_, i) => Buffer.alloc(MiB, 65 + (i % 26))));
}

/** A daemon on a fresh pool serving filesystem volume v (`size`) at DIR/live; the test ends with its unmount, a clean check and a stop. */
async function served(t: Test, prefix: string, size: string): Promise<{ pool: string; live: string; end(): Promise<void> }> {
  const { dir, pool, mount } = scratchPool(t, prefix);
  const d = await Daemon.start(pool, mount);
  const live = path.join(dir, 'live');
  fs.mkdirSync(live);
  t.teardown(() => tidy(live));
  t.equal(cli(pool, 'volume', 'create', 'v', '--size', size, '--kind', 'fs').status, 0);
  t.equal(cli(pool, 'mount', 'v', live).status, 0);
  const end = async (): Promise<void> => {
    t.equal(cli(pool, 'unmount', live).status, 0);
    t.equal(cli(pool, 'check').status, 0, 'check clean');
    await d.stop();
  };
  return { pool, live, end };
}

function exclusiveBytes(pool: string, volume: string): number {
  const r = cli(pool, 'volume', 'show', volume, '--json');
  return (JSON.parse(r.stdout) as { exclusiveBytes: number }).exclusiveBytes;
}

t.test('a snapshot, a clone and a group snapshot hold writes still in the page cache', async (t) => {
  const { pool, live, end } = await served(t, 'cowfs-writeback', '64M');
  const at = (name: string): string => {
    const p = path.join(path.dirname(live), name);
    fs.mkdirSync(p);
    t.teardown(() => tidy(p));
    return p;
  };
  const writer = new Talker(t, WRITER, path.join(live, 'f'));
  t.equal(await writer.ask('3'), 'written');
  // The precondition: the pool has not seen the data yet (the kernel writes back after 30 s, or when flushed).
  t.ok(exclusiveBytes(pool, 'v') < MiB, 'the 3 MiB were still in the page cache');

  t.equal(cli(pool, 'snapshot', 'create', 'v@s').status, 0);
  t.equal(cli(pool, 'clone', 'v', 'c').status, 0);
  t.equal(await writer.ask('4'), 'written');
  t.equal(cli(pool, 'group', 'create', 'g', 'v').status, 0);
  const views: [string, number][] = [['v@s', 3], ['c', 3], ['v@g', 4]];
  for (const [source, n] of views) {
    const where = at(source.replace('@', '-'));
    t.equal(cli(pool, 'mount', source, where).status, 0, `${source} mounted`);
    t.ok(fs.readFileSync(path.join(where, 'f')).equals(pattern(n)), `${source} holds the ${n} MiB written before it`);
    t.equal(cli(pool, 'unmount', where).status, 0);
  }
  const { code } = await writer.end();
  t.equal(code, 0);
  await end();
});

t.test('the ctime the kernel sends after a rename over a file, or an unlink, finds the freed file: a syncfs stays clean', async (t) => {
  const { live, end } = await served(t, 'cowfs-gone', '16M');
  for (let i = 0; i < 3; i++) {
    fs.writeFileSync(path.join(live, `a${i}`), 'new');
    fs.writeFileSync(path.join(live, `b${i}`), 'old');
    fs.renameSync(path.join(live, `a${i}`), path.join(live, `b${i}`));
    fs.writeFileSync(path.join(live, `c${i}`), 'gone');
    fs.unlinkSync(path.join(live, `c${i}`));
  }
  // A setattr answered ENOENT would be a writeback error of the whole filesystem, which syncfs reports.
  const sync = sh('sync', ['-f', live]);
  t.equal(sync.status, 0, `syncfs after the renames and unlinks: ${sync.stderr}`);
  t.equal(fs.readFileSync(path.join(live, 'b2'), 'utf8'), 'new');
  await end();
});

t.test("a cowfs mount gets a disk's dirty-page limits, and a refusal says where", async (t) => {
  const { live, end } = await served(t, 'cowfs-dirty', '16M');
  const entry = mountAt(readMountTable(), live);
  t.ok(entry, 'mounted');
  t.same(dirtyLimits(entry?.devNo ?? ''), [100, 0], 'max_ratio 100 and no strict limit (FUSE gives 1 and strict)');
  // The branch a read-only /sys takes: the mount keeps the kernel's limits, and the reason names the file.
  t.match(relaxDirtyLimits('0:999999'), /\/sys\/class\/bdi\/0:999999/, 'a bdi that cannot be written is reported, not thrown');
  await end();
});
