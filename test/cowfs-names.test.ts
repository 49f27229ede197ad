/**
 * Lookups of names that are not there, answered by the addon from the
 * names of the directories made in the mount (native/src/name_filter.c).
 * The cases check that such lookups reach no JavaScript, and above all
 * that no way of making a name leaves it out: after the kernel drops its
 * dentries, every name made (create, mknod, mkdir, symlink, link, rename
 * from another directory) is found again, also after the filter forgot
 * everything because it filled up, and in a directory that was there
 * before the mount, whose names JavaScript listed for the addon.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

import t from 'tap';

import { serveInProcess } from './helpers/cowfs.js';

const run = promisify(execFile);

/** The kernel forgets every dentry nobody holds, so the next stat of a name asks the mount again. */
function dropDentries(): void {
  fs.writeFileSync('/proc/sys/vm/drop_caches', '2');
}

async function exists(file: string): Promise<boolean> {
  try {
    await fs.promises.lstat(file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** Makes a name in `dir` by each way a name is made; `other` is a directory to rename from. */
async function makeEveryWay(dir: string, other: string): Promise<string[]> {
  await fs.promises.writeFile(path.join(dir, 'created'), 'x');
  await fs.promises.mkdir(path.join(dir, 'made-dir'));
  await fs.promises.symlink('created', path.join(dir, 'symlink'));
  await fs.promises.link(path.join(dir, 'created'), path.join(dir, 'hard-link'));
  await fs.promises.writeFile(path.join(other, 'moving'), 'y');
  await fs.promises.rename(path.join(other, 'moving'), path.join(dir, 'renamed'));
  // Node has no mknod: a child makes a fifo (asynchronously, since this process serves the mount).
  await run('mkfifo', [path.join(dir, 'fifo')]);
  return ['created', 'made-dir', 'symlink', 'hard-link', 'renamed', 'fifo'];
}

t.test('a missing name in a directory made in the mount costs no trip to JavaScript, and every name made is found', async (t) => {
  const s = await serveInProcess(t, 'names');
  const dir = path.join(s.dir, 'd');
  const other = path.join(s.dir, 'other');
  await fs.promises.mkdir(dir);
  await fs.promises.mkdir(other);

  const before = s.mount.stats();
  let found = 0;
  for (let i = 0; i < 50; i++) found += (await exists(path.join(dir, `missing-${i}`))) ? 1 : 0;
  t.equal(found, 0, '50 missing names are not there');
  const after = s.mount.stats();
  t.equal(after.absentNames - before.absentNames, 50, 'the addon answered the 50 lookups');
  t.equal(after.slowRequests, before.slowRequests, 'and JavaScript saw none of them');

  const made = await makeEveryWay(dir, other);
  dropDentries();
  for (const name of made) t.ok(await exists(path.join(dir, name)), `${name} is found after the kernel forgot it`);
  t.notOk(await exists(path.join(other, 'moving')), 'the renamed file left its old directory');
});

t.test('a name too long for a directory is refused as ext4 refuses it, not answered "not there"', async (t) => {
  const s = await serveInProcess(t, 'names-long');
  const dir = path.join(s.dir, 'd');
  await fs.promises.mkdir(dir);
  await t.rejects(fs.promises.lstat(path.join(dir, 'n'.repeat(256))), { code: 'ENAMETOOLONG' }, '256 bytes');
  t.notOk(await exists(path.join(dir, 'n'.repeat(255))), '255 bytes is a name, just not there');
});

t.test('when the filter is full it forgets everything, and names made before are still found', async (t) => {
  const s = await serveInProcess(t, 'names-full');
  const first = path.join(s.dir, 'first');
  await fs.promises.mkdir(first);
  await fs.promises.writeFile(path.join(first, 'kept'), 'x');
  // The filter follows at most 1536 directories (DIRS_MAX in name_filter.c); the next mkdir starts it afresh.
  const many = path.join(s.dir, 'many');
  await fs.promises.mkdir(many);
  for (let i = 0; i < 1540; i++) await fs.promises.mkdir(path.join(many, `d${i}`));

  const before = s.mount.stats();
  t.notOk(await exists(path.join(first, 'missing')), 'a missing name in a directory made before is not there');
  const after = s.mount.stats();
  t.equal(after.absentNames, before.absentNames, 'and was asked of JavaScript: the filter forgot the directory');
  dropDentries();
  t.ok(await exists(path.join(first, 'kept')), 'the name made before is found');
  t.notOk(await exists(path.join(many, 'd1539', 'missing')), 'a directory made after is followed again');
  t.equal(s.mount.stats().absentNames, after.absentNames + 1, 'natively');
});

t.test('a directory from before the mount is followed from its first miss, if it is small', async (t) => {
  const s = await serveInProcess(t, 'names-remount');
  const small = path.join(s.dir, 'small');
  const big = path.join(s.dir, 'big');
  const other = path.join(s.dir, 'other');
  await fs.promises.mkdir(small);
  await fs.promises.mkdir(big);
  await fs.promises.mkdir(other);
  for (let i = 0; i < 40; i++) await fs.promises.writeFile(path.join(small, `f${i}`), 'x');
  // More names than the mount lists for the filter (FOLLOW_NAMES_MAX in cowfs-mount.ts).
  for (let i = 0; i < 257; i++) await fs.promises.writeFile(path.join(big, `f${i}`), 'x');
  await s.remount();

  const misses = async (dir: string, tag: string): Promise<number> => {
    const before = s.mount.stats().absentNames;
    for (let i = 0; i < 3; i++) t.notOk(await exists(path.join(dir, `${tag}-${i}`)), `${tag}-${i} is not there`);
    return s.mount.stats().absentNames - before;
  };
  t.equal(await misses(small, 'miss'), 2, 'the first miss in the small directory went to JavaScript, the next two were native');
  t.equal(await misses(big, 'miss'), 0, 'a directory of 257 names is not followed: every miss went to JavaScript');
  for (let i = 0; i < 40; i++) if (!(await exists(path.join(small, `f${i}`)))) t.fail(`f${i} is missing`);
  t.pass('every name the small directory held is found');
  const made = await makeEveryWay(small, other);
  dropDentries();
  for (const name of made) t.ok(await exists(path.join(small, name)), `${name}, made after it was followed, is found`);
});
