/**
 * Restarting the daemon under processes that use a cowfs mount (issue 11,
 * with issue 10's handover): SIGTERM hands each cowfs connection to the
 * keeper beside the block files' one, and the next `cowvol serve` takes it
 * over, so a process holding files open (an unlinked one among them), a
 * process creating, renaming and deleting files meanwhile, and a bind of
 * the mount all carry on without an error. After a kill -9 the mount is
 * made afresh instead, and the orphan the kill left is freed.
 */
import fs from 'node:fs';
import path from 'node:path';

import t, { type Test } from 'tap';

import { mountsFromFds } from '../src/daemon/handed-mounts.js';
import { isMountPoint } from '../src/host/mounts.js';
import { native } from '../src/native.js';
import { Daemon, cli, scratchPool, sh, tidy } from './helpers/daemon.js';
import { HOLDER, Talker } from './helpers/talker.js';

const KEEP = ['--handover-grace', '60'];
const RESTARTS = 5;

/** Creates, writes, renames, reads back and deletes files in its own directory until stdin closes; prints its rounds, or the error. */
const CHURN = `
import os, sys, threading
d = os.path.join(sys.argv[1], "churn")
os.makedirs(d, exist_ok=True)
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
i = 0
try:
    print("ready", flush=True)
    while not stop.is_set() and i < 1000000:
        p = os.path.join(d, "f%d" % (i % 50))
        with open(p + ".tmp", "wb") as f:
            f.write(b"%d" % i * 100)
        os.rename(p + ".tmp", p)
        with open(p, "rb") as f:
            if f.read() != b"%d" % i * 100:
                raise OSError("read back wrong at round %d" % i)
        if i % 3 == 0:
            os.unlink(p)
        os.listdir(d)
        i += 1
    print("rounds", i, flush=True)
except OSError as e:
    print("error", e, flush=True)
    sys.exit(1)
`;

/** Inodes the filesystem counts as used, and the names under `dir` (itself included): equal unless an orphan is left. */
function inodes(dir: string): { used: number; named: number } {
  const df = sh('df', ['--output=itotal,iavail', dir]).stdout.trim().split('\n')[1]?.trim().split(/\s+/).map(Number) ?? [0, 0];
  const named = sh('find', [dir, '-xdev']).stdout.trim().split('\n').length;
  return { used: (df[0] ?? 0) - (df[1] ?? 0), named };
}

async function fsVolume(t: Test, prefix: string): Promise<{ dir: string; pool: string; live: string; d: Daemon }> {
  const { dir, pool, mount } = scratchPool(t, prefix);
  const d = await Daemon.start(pool, mount, KEEP);
  const live = path.join(dir, 'live');
  fs.mkdirSync(live);
  t.teardown(() => {
    cli(pool, 'stop');
    tidy(live);
    tidy(mount);
  });
  t.equal(cli(pool, 'volume', 'create', 'home', '--size', '256M', '--kind', 'fs').status, 0, 'filesystem volume made');
  t.equal(cli(pool, 'mount', 'home', live).status, 0, 'mounted');
  return { dir, pool, live, d };
}

t.test(`cowfs mounts are taken over through ${RESTARTS} SIGTERM restarts: open files, an unlinked one, a bind and a busy directory carry on`, async (t) => {
  const { dir, pool, live, d: first } = await fsVolume(t, 'cowfs-restart');
  const bound = path.join(dir, 'bound');
  fs.mkdirSync(bound);
  t.teardown(() => tidy(bound));
  t.equal(sh('mount', ['--bind', live, bound]).status, 0, 'a bind of the mount, as a CSI publish makes');
  const holder = new Talker(t, HOLDER, live);
  const churn = new Talker(t, CHURN, live);
  t.equal(await holder.line(), 'ready');
  t.equal(await churn.line(), 'ready');
  let d = first;
  for (let i = 1; i <= RESTARTS; i++) {
    t.match(await holder.ask('write'), /^ok /, `restart ${i}: a write and fsync before it`);
    const r = await d.stop('SIGTERM');
    t.equal(r.code, 0, `restart ${i}: the daemon exits 0`);
    t.match(d.log, /"cowfs":1,"msg":"handed the mount over"/, `restart ${i}: the cowfs mount was handed over`);
    t.ok(isMountPoint(live), `restart ${i}: the cowfs mount stays while no daemon runs`);
    d = await Daemon.start(pool, d.mount, KEEP);
    t.match(d.log, /cowfs mount taken over/, `restart ${i}: the new daemon took the cowfs mount over`);
    t.match(await holder.ask('write'), new RegExp(`^ok ${2 * i}$`), `restart ${i}: the open files take a write and read back whole after it`);
  }
  const churned = await churn.end();
  t.equal(churned.code, 0, `the busy directory saw no error: ${churned.said}`);
  t.match(churned.said, /^rounds [1-9]/, 'and it made progress');
  t.same(fs.readFileSync(path.join(bound, 'log')), fs.readFileSync(path.join(live, 'log')), 'the bind shows the same file');
  t.same(JSON.parse(cli(pool, 'mounts', '--json').stdout), [{ source: 'home', dir: live, readOnly: false }], 'cowvol mounts lists the mount once');
  const held = inodes(live);
  t.equal(held.used, held.named + 1, 'the unlinked file is still held while open');
  const ended = await holder.end();
  t.equal(ended.code, 0, `the holder saw no error: ${ended.said}`);
  const after = inodes(live);
  t.equal(after.used, after.named, 'its last close, sent to a later daemon, freed it');
  t.equal(sh('umount', [bound]).status, 0, 'the bind unmounts');
  const r = cli(pool, 'stop');
  t.equal(r.status, 0, `cowvol stop: ${r.stderr}`);
  t.notOk(isMountPoint(live), 'stopping for good unmounts the cowfs mount');
  const check = cli(pool, 'check');
  t.equal(check.status, 0, `check clean: ${check.stdout}${check.stderr}`);
});

t.test('after a kill -9 the cowfs mount is made afresh and the orphan the kill left is freed', async (t) => {
  const { pool, live, d } = await fsVolume(t, 'cowfs-kill');
  const holder = new Talker(t, HOLDER, live);
  t.equal(await holder.line(), 'ready');
  t.match(await holder.ask('write'), /^ok 1$/, 'a write to the open, unlinked file');
  // The unlink reaches a commit (a directory fsync), so the orphan is on disk when the daemon dies.
  const dirFd = fs.openSync(live, 'r');
  fs.fsyncSync(dirFd);
  fs.closeSync(dirFd);
  const held = inodes(live);
  t.equal(held.used, held.named + 1, 'the unlinked file is held while open');
  await d.stop('SIGKILL');
  const next = await Daemon.start(pool, d.mount, KEEP);
  t.match(next.log, /"msg":"cowfs mounted"/, 'the next daemon mounts the filesystem afresh');
  t.notMatch(next.log, /cowfs mount taken over/, 'and does not take over a connection a killed daemon served');
  // A write, not a read: a read may come from the page cache, a write goes to the (dead) connection.
  t.match(await holder.ask('write'), /^error .*Transport endpoint is not connected/, 'the process holding files in the old mount sees ENOTCONN');
  t.not(await holder.exited, 0, 'and ends with it');
  const after = inodes(live);
  t.equal(after.used, after.named, 'the orphan the kill left is freed when the mount is made afresh');
  t.match(fs.readFileSync(path.join(live, 'log'), 'latin1'), /^record 000000 /, 'the fsynced write is there');
  const r = cli(pool, 'stop');
  t.equal(r.status, 0, `cowvol stop: ${r.stderr}`);
  const check = cli(pool, 'check');
  t.equal(check.status, 0, `check clean: ${check.stdout}${check.stderr}`);
});

t.test('a damaged record of handed-over mounts closes every fd it came with', async (t) => {
  // Stand-ins for the connections: any fds show whether they were closed.
  const pipes = [0, 1].map(() => fs.openSync('/dev/null', 'r'));
  const whys: string[] = [];
  const record = native.memfdWith(Buffer.from('[{"source":"home"}]'));
  t.same(mountsFromFds([record, ...pipes], (why) => whys.push(why)), [], 'nothing is taken over');
  t.equal(whys.length, 1, `and it says why: ${whys[0]}`);
  for (const fd of [record, ...pipes]) t.throws(() => fs.fstatSync(fd), { code: 'EBADF' }, `fd ${fd} was closed`);
  t.same(mountsFromFds([]), [], 'no fds: no mounts');
});

t.test('cowvol stop with no daemon serving leaves no cowfs mount behind, and the next daemon mounts it again', async (t) => {
  const { pool, live, d } = await fsVolume(t, 'cowfs-stop');
  fs.writeFileSync(path.join(live, 'kept'), 'across a stop');
  t.equal((await d.stop('SIGTERM')).code, 0, 'SIGTERM: handed over to the keeper');
  t.ok(isMountPoint(live), 'the keeper holds the cowfs mount');
  const r = cli(pool, 'stop');
  t.equal(r.status, 0, `cowvol stop: ${r.stderr}`);
  t.match(r.stdout, /the keeper unmounted what it held/);
  t.notOk(isMountPoint(live), 'the cowfs mount is gone with the keeper');
  const next = await Daemon.start(pool, d.mount, KEEP);
  t.match(next.log, /"msg":"cowfs mounted"/, 'the next daemon mounts it again from the record');
  t.equal(fs.readFileSync(path.join(live, 'kept'), 'utf8'), 'across a stop', 'with what was written before');
});

t.test('cowvol unmount refuses while files are open, and cowvol stop does not wait on them', async (t) => {
  const { pool, live } = await fsVolume(t, 'cowfs-stop-open');
  const holder = new Talker(t, HOLDER, live);
  t.equal(await holder.line(), 'ready');
  t.equal(await holder.ask('write'), 'ok 1', 'files open and written');
  const busy = cli(pool, 'unmount', live);
  t.equal(busy.status, 1, 'cowvol unmount refuses while files are open');
  t.match(busy.stderr, /has 2 files open: close them first/, `in one line: ${busy.stderr}`);
  t.equal(await holder.ask('write'), 'ok 2', 'and changes nothing: the files stay usable');
  const r = cli(pool, 'stop');
  t.equal(r.status, 0, `cowvol stop returns: ${r.stdout}${r.stderr}`);
  t.notOk(isMountPoint(live), 'the mount is gone');
  t.match(await holder.ask('write'), /^error /, 'the process holding files in it gets an error from then on');
  const check = cli(pool, 'check');
  t.equal(check.status, 0, `check clean: ${check.stdout}${check.stderr}`);
});
