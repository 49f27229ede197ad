/**
 * Restarting the daemon under processes that use a cowfs mount (issue 11,
 * with issue 10's handover): SIGTERM hands each cowfs connection to the
 * keeper beside the block files' one, and the next `cowvol serve` takes it
 * over, so a process holding files open (an unlinked one among them), a
 * process creating, renaming and deleting files meanwhile, and a bind of
 * the mount all carry on without an error. A kill -9 hands them on too:
 * the keeper holds every cowfs connection from its mount, and the next
 * daemon replays the journal (tree changes, first writes, ends) before it
 * takes them over, answering the requests the kernel resends.
 */
import fs from 'node:fs';
import path from 'node:path';

import t, { type Test } from 'tap';

import { mountsFromFds } from '../src/daemon/handed-mounts.js';
import { isMountPoint } from '../src/host/mounts.js';
import { native } from '../src/native.js';
import { createHash } from 'node:crypto';

import { Daemon, cli, metricsAddress, scratchPool, sh, tidy } from './helpers/daemon.js';
import { scrape } from './helpers/scrape.js';
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

/** Inodes the filesystem counts as used, and those named under `dir` (itself included): equal unless an orphan is left. */
function inodes(dir: string): { used: number; named: number } {
  const df = sh('df', ['--output=itotal,iavail', dir]).stdout.trim().split('\n')[1]?.trim().split(/\s+/).map(Number) ?? [0, 0];
  // Inodes, not names: a hard link names one twice.
  const named = new Set(sh('find', [dir, '-xdev', '-printf', '%i\n']).stdout.trim().split('\n')).size;
  return { used: (df[0] ?? 0) - (df[1] ?? 0), named };
}

async function fsVolume(t: Test, prefix: string, extra: string[] = []): Promise<{ dir: string; pool: string; live: string; d: Daemon }> {
  const { dir, pool, mount } = scratchPool(t, prefix);
  const d = await Daemon.start(pool, mount, [...KEEP, ...extra]);
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
  t.equal(held.used, held.named + 1, `the unlinked file is still held while open: ${JSON.stringify(held)}`);
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

/** No background commit within a test: what the daemon answered is in its memory and its journal only. */
const NO_COMMITS = ['--commit-interval', '3600'];

/** Namespace changes, file data and an xattr under `dir`, none of them flushed. */
function changeTree(dir: string): void {
  fs.mkdirSync(path.join(dir, 'sub', 'deeper'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'empty'));
  const big = Buffer.alloc(300 * 1024);
  for (let i = 0; i < big.length; i += 4096) big.fill(i / 4096, i, i + 4096);
  fs.writeFileSync(path.join(dir, 'big'), big);
  fs.writeFileSync(path.join(dir, 'b'), 'to be renamed');
  fs.renameSync(path.join(dir, 'b'), path.join(dir, 'sub', 'c'));
  fs.symlinkSync('sub/c', path.join(dir, 'link'));
  fs.linkSync(path.join(dir, 'sub', 'c'), path.join(dir, 'hard'));
  fs.writeFileSync(path.join(dir, 'gone'), 'unlinked');
  fs.unlinkSync(path.join(dir, 'gone'));
  fs.rmdirSync(path.join(dir, 'empty'));
  fs.truncateSync(path.join(dir, 'big'), 200 * 1024 + 17);
  fs.appendFileSync(path.join(dir, 'sub', 'deeper', 'log'), 'x'.repeat(70000));
  fs.chmodSync(path.join(dir, 'sub', 'c'), 0o600);
  sh('python3', ['-c', 'import os, sys; os.setxattr(sys.argv[1], "user.k", b"v" * 100)', path.join(dir, 'big')]);
}

/** Every entry under `dir` with what a reader sees of it, in order. */
function treeOf(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const name of fs.readdirSync(path.join(dir, rel)).sort()) {
      const p = path.join(dir, rel, name);
      const st = fs.lstatSync(p);
      const what = st.isSymbolicLink() ? `-> ${fs.readlinkSync(p)}` : st.isDirectory() ? 'dir' : createHash('sha256').update(fs.readFileSync(p)).digest('hex');
      const xattr = st.isFile() ? sh('python3', ['-c', 'import os, sys; print(len(os.listxattr(sys.argv[1])))', p]).stdout.trim() : '';
      out.push(`${path.join(rel, name)} ${(st.mode & 0o7777).toString(8)} nlink=${st.nlink} size=${st.isDirectory() ? '-' : st.size} ${what} x${xattr}`);
      if (st.isDirectory()) walk(path.join(rel, name));
    }
  };
  walk('');
  return out;
}

t.test('after a kill -9 the cowfs mount is taken over: open files, an unlinked one, a busy directory and changes no commit held carry on', async (t) => {
  const { dir, pool, live, d } = await fsVolume(t, 'cowfs-kill', NO_COMMITS);
  const holder = new Talker(t, HOLDER, live);
  const churn = new Talker(t, CHURN, live);
  t.equal(await holder.line(), 'ready');
  t.equal(await churn.line(), 'ready');
  t.match(await holder.ask('dirty'), /^ok 1$/, 'a write to the open files that nothing flushed');
  fs.mkdirSync(path.join(live, 'kept'));
  changeTree(path.join(live, 'kept'));
  const before = treeOf(path.join(live, 'kept'));
  await d.stop('SIGKILL');
  const next = await Daemon.start(pool, d.mount, [...KEEP, ...NO_COMMITS]);
  t.match(next.log, /"applied":[1-9]\d*,"records":[1-9]\d*,"msg":"replayed the previous daemon's journal"/, 'the next daemon replays what the killed one journaled');
  t.match(next.log, /cowfs mount taken over/, 'and takes the cowfs mount over');
  t.notMatch(next.log, /"msg":"cowfs mounted"/, 'rather than mounting it afresh');
  t.match(await holder.ask('write'), /^ok 2$/, 'the process holding files carries on: its unflushed write and a new one read back whole');
  // The next daemon knows the file is open (the counts the killed one left): an unlink keeps it for the holder.
  fs.unlinkSync(path.join(live, 'log'));
  t.match(await holder.ask('write'), /^ok 3$/, 'a file the holder had open before the kill, unlinked after it, stays whole for the holder');
  const churned = await churn.end();
  t.equal(churned.code, 0, `the busy directory saw no error across the kill: ${churned.said}`);
  t.match(churned.said, /^rounds [1-9]/, 'and it made progress');
  const held = inodes(live);
  t.equal(held.used, held.named + 2, `both unlinked files are still held while open: ${JSON.stringify(held)}`);
  const ended = await holder.end();
  t.equal(ended.code, 0, `the holder saw no error: ${ended.said}`);
  const after = inodes(live);
  t.equal(after.used, after.named, `its last close, sent to the next daemon, freed them: ${JSON.stringify(after)}`);
  const r = cli(pool, 'stop');
  t.equal(r.status, 0, `cowvol stop: ${r.stderr}`);
  const check = cli(pool, 'check');
  t.equal(check.status, 0, `check clean: ${check.stdout}${check.stderr}`);
  // A fresh mount (no page or dentry cache of the old connection): what is on the disk.
  const third = await Daemon.start(pool, d.mount, KEEP);
  t.match(third.log, /"msg":"cowfs mounted"/, 'after a stop the mount is made afresh');
  t.same(treeOf(path.join(live, 'kept')), before, 'every change the killed daemon answered is there, as it answered it');
  t.teardown(() => tidy(dir));
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

t.test('a request the killed daemon did but did not answer is answered, not done again, when the kernel resends it', async (t) => {
  const { pool, live, d: first } = await fsVolume(t, 'cowfs-resent', NO_COMMITS);
  const dir = path.join(live, 'resent');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'seed'), 'x');
  // Each daemon kills itself after doing its request and before answering it (COWVOL_TEST_DIE_BEFORE_ANSWER).
  const steps: [string, () => Promise<unknown>][] = [
    ['MKDIR', () => fs.promises.mkdir(path.join(dir, 'd'))],
    ['CREATE', async () => (await fs.promises.open(path.join(dir, 'f'), 'wx')).close()],
    ['SYMLINK', () => fs.promises.symlink('f', path.join(dir, 'l'))],
    ['LINK', () => fs.promises.link(path.join(dir, 'f'), path.join(dir, 'h'))],
    ['RENAME', () => fs.promises.rename(path.join(dir, 'h'), path.join(dir, 'h2'))],
    ['UNLINK', () => fs.promises.unlink(path.join(dir, 'h2'))],
    ['RMDIR', () => fs.promises.rmdir(path.join(dir, 'd'))],
  ];
  let d = first;
  for (const [op, run] of steps) {
    // Handed over cleanly to a daemon that will die over the next request.
    t.equal((await d.stop('SIGTERM')).code, 0, `${op}: the daemon before hands over`);
    process.env.COWVOL_TEST_DIE_BEFORE_ANSWER = op;
    try {
      d = await Daemon.start(pool, first.mount, [...KEEP, ...NO_COMMITS]);
    } finally {
      delete process.env.COWVOL_TEST_DIE_BEFORE_ANSWER;
    }
    const done = run().then(
      () => 'done',
      (err: NodeJS.ErrnoException) => `${err.code ?? ''} ${err.message}`,
    );
    // SIGCONT changes nothing: this waits for the daemon to kill itself over the request.
    const died = await d.stop('SIGCONT');
    t.equal(died.signal, 'SIGKILL', `${op}: the daemon died serving it, before the answer`);
    const next = await Daemon.start(pool, first.mount, [...KEEP, ...NO_COMMITS]);
    t.match(next.log, /cowfs mount taken over/, `${op}: the next daemon took the mount over`);
    t.equal(await done, 'done', `${op}: the kernel's resend of it was answered as done`);
    d = next;
  }
  t.same(fs.readdirSync(dir).sort(), ['f', 'l', 'seed'], 'every change is there once');
  t.equal(fs.statSync(path.join(dir, 'f')).nlink, 1, 'the link came and went once');
  const r = cli(pool, 'stop');
  t.equal(r.status, 0, `cowvol stop: ${r.stderr}`);
  const check = cli(pool, 'check');
  t.equal(check.status, 0, `check clean: ${check.stdout}${check.stderr}`);
});

t.test('a write the addon served by copying a chunk a snapshot shares is in the file after a kill -9, and not in the snapshot', async (t) => {
  const { dir, pool, live, d } = await fsVolume(t, 'cowfs-kill-break', [...NO_COMMITS, '--metrics-address', '127.0.0.1:0']);
  const CHUNK = 64 * 1024;
  const file = path.join(live, 'f');
  fs.writeFileSync(file, Buffer.alloc(4 * CHUNK, 1));
  t.equal(cli(pool, 'snapshot', 'create', 'home@s').status, 0, 'snapshot taken: the file\'s chunks are shared');
  // O_DIRECT, so nothing waits in the kernel's cache; held open through the kill, so no close folds the break first.
  const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_DIRECT);
  fs.readSync(fd, Buffer.alloc(CHUNK), 0, CHUNK, CHUNK);
  fs.writeSync(fd, Buffer.alloc(4096, 2), 0, 4096, CHUNK + 8192);
  const m = await scrape(metricsAddress(pool) ?? '');
  t.equal(m.value('cowvol_cowfs_native_cow_breaks_total', { volume: 'home' }), 1, 'the addon copied the shared chunk for the write');
  await d.stop('SIGKILL');
  const next = await Daemon.start(pool, d.mount, [...KEEP, ...NO_COMMITS]);
  t.match(next.log, /cowfs mount taken over/, 'the next daemon took the mount over');
  const expect = Buffer.alloc(4 * CHUNK, 1).fill(2, CHUNK + 8192, CHUNK + 12288);
  const back = Buffer.alloc(4 * CHUNK);
  fs.readSync(fd, back, 0, 4 * CHUNK, 0);
  fs.closeSync(fd);
  t.same(back, expect, 'the write reads back through the mount');
  const r = cli(pool, 'stop');
  t.equal(r.status, 0, `cowvol stop: ${r.stderr}`);
  const check = cli(pool, 'check');
  t.equal(check.status, 0, `check clean: ${check.stdout}${check.stderr}`);
  // Fresh mounts of both: what the disk holds.
  await Daemon.start(pool, d.mount, KEEP);
  const snap = path.join(dir, 'snap');
  fs.mkdirSync(snap);
  t.teardown(() => tidy(snap));
  t.equal(cli(pool, 'mount', 'home@s', snap).status, 0, 'the snapshot mounted');
  t.same(fs.readFileSync(file), expect, 'the file holds the write');
  t.same(fs.readFileSync(path.join(snap, 'f')), Buffer.alloc(4 * CHUNK, 1), 'the snapshot holds the chunk as it was');
});
