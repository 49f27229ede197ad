/**
 * Restarting the daemon under running I/O (issue 10): SIGTERM hands the live
 * FUSE connection to the keeper, kill -9 leaves it there with the dead
 * daemon's map-change journal, and the next `cowvol serve` takes it over
 * (replaying the journal after a kill), so fio with verification keeps
 * running through ten restarts of each kind, on ext4 over a loop device and
 * on a block file directly. `cowvol stop` and a grace with no successor
 * leave nothing behind.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import t, { type Test } from 'tap';

import { isMountPoint } from '../src/host/mounts.js';
import { Daemon, cli, scratchPool, sh, tidy } from './helpers/daemon.js';

const KEEP = ['--handover-grace', '60'];
const RESTARTS = 10;

interface Run {
  child: ChildProcess;
  out: string;
  done: Promise<number>;
}

function fioBackground(file: string, args: string[], cwd = os.tmpdir()): Run {
  const child = spawn(
    'fio',
    ['--name=restart', `--filename=${file}`, '--ioengine=libaio', '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--verify_state_save=0', ...args],
    { cwd, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const run: Run = { child, out: '', done: Promise.resolve(0) };
  child.stdout?.on('data', (b: Buffer) => (run.out += b.toString()));
  child.stderr?.on('data', (b: Buffer) => (run.out += b.toString()));
  run.done = new Promise((resolve) => child.once('exit', (code) => resolve(code ?? -1)));
  return run;
}

/** Bytes the volume maps, as the daemon says (it folds the first writes it served). */
function allocated(d: Daemon): number {
  const r = cli(d.pool, 'volume', 'show', 'v', '--json');
  return r.status === 0 ? (JSON.parse(r.stdout) as { allocatedBytes: number }).allocatedBytes : 0;
}

/** The stats a daemon logged when it handed over (or stopped): what it served in its life. */
function served(log: string): number {
  const line = log.split('\n').find((l) => l.includes('handed the mount over') || l.includes('stopped cleanly'));
  if (!line) return 0;
  const s = (JSON.parse(line) as { stats: { fastWrites: number; fastReads: number; slowRequests: number } }).stats;
  return s.fastWrites + s.fastReads + s.slowRequests;
}

/**
 * Restarts the daemon with `signal` while fio runs, round after round of
 * fio, until RESTARTS restarts happened with fio running. Returns the last
 * daemon and how many restarts found work to carry over: requests the
 * stopped daemon served (SIGTERM), or journal records replayed (SIGKILL).
 */
async function restartUnder(t: Test, first: Daemon, signal: 'SIGTERM' | 'SIGKILL', startFio: (round: number) => Run): Promise<{ d: Daemon; busy: number }> {
  let d = first;
  let restarts = 0;
  let busy = 0;
  for (let round = 0; restarts < RESTARTS && round < 5 * RESTARTS; round++) {
    const f = startFio(round);
    let running = true;
    void f.done.then(() => (running = false));
    while (running && restarts < RESTARTS) {
      // Let this daemon map new chunks first: a kill then leaves them to the journal alone.
      const before = allocated(d);
      for (let i = 0; i < 200 && running && allocated(d) <= before; i++) await new Promise((r) => setTimeout(r, 10));
      const r = await d.stop(signal);
      if (signal === 'SIGTERM' && r.code !== 0) t.fail(`SIGTERM ${restarts + 1}: daemon exited ${r.code}: ${d.log}`);
      if (served(d.log) > 0) busy++;
      t.ok(isMountPoint(d.mount), `${signal} ${restarts + 1}: the mount stays while no daemon runs`);
      d = await Daemon.start(d.pool, d.mount, KEEP);
      t.match(d.log, /took the mount over/, `${signal} ${restarts + 1}: the new daemon took the connection over`);
      const replayed = /"applied":(\d+)/.exec(d.log);
      if (replayed !== null && Number(replayed[1]) > 0) busy++;
      restarts++;
    }
    const code = await f.done;
    t.equal(code, 0, `fio round ${round + 1} verifies through the restarts`);
    t.match(f.out, /err= 0/, `fio round ${round + 1}: no I/O error`);
  }
  t.equal(restarts, RESTARTS, `${RESTARTS} restarts with fio running`);
  return { d, busy };
}

/** Running, not a zombie: the keeper's parent (the first daemon) is gone, and this machine's PID 1 may not reap. */
function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return false;
  }
}

/** `cowvol stop`: waits for the daemon and keeper; nothing stays mounted. */
function stopForGood(t: Test, d: Daemon): void {
  const keeper = (JSON.parse(cli(d.pool, 'pool', 'show', '--json').stdout) as { keeperPid: number | null }).keeperPid;
  t.ok(keeper !== null && keeper > 0, 'pool show names the keeper');
  const r = cli(d.pool, 'stop');
  t.equal(r.status, 0, `cowvol stop: ${r.stdout}${r.stderr}`);
  t.notOk(isMountPoint(d.mount), 'stopped: nothing mounted');
  t.notOk(alive(keeper as number), 'stopped: the keeper is gone');
  const check = cli(d.pool, 'check');
  t.equal(check.status, 0, `check clean: ${check.stdout}${check.stderr}`);
}

for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
  t.test(`ext4 over a loop device: fio --verify through ten ${signal} restarts`, async (t) => {
    const { pool, mount, dir } = scratchPool(t, `restart-ext4-${signal}`);
    t.equal(cli(pool, 'volume', 'create', 'v', '--size', '512M').status, 0, 'volume made');
    const d0 = await Daemon.start(pool, mount, KEEP);
    const file = path.join(mount, 'block', 'v');
    const loop = sh('losetup', ['--find', '--show', '--direct-io=on', file]).stdout.trim();
    const fsDir = path.join(dir, 'fs');
    t.teardown(() => {
      sh('umount', [fsDir]);
      sh('losetup', ['-d', loop]);
      cli(pool, 'stop');
      tidy(mount);
    });
    t.match(loop, /^\/dev\/loop\d+$/, 'loop device attached');
    t.equal(sh('mkfs.ext4', ['-q', loop]).status, 0, 'mkfs.ext4');
    fs.mkdirSync(fsDir);
    t.equal(sh('mount', [loop, fsDir]).status, 0, 'mounted');
    // A new file each round (eight at most): ext4 allocates, so the volume sees first writes too.
    const fio = (round: number): Run =>
      fioBackground(path.join(fsDir, `data-${round % 8}`), ['--rw=randwrite', '--bs=4k', '--size=32M', '--iodepth=8', '--direct=1', '--create_fsync=0'], dir);
    const { d, busy } = await restartUnder(t, d0, signal, fio);
    t.ok(busy >= (signal === 'SIGTERM' ? RESTARTS / 2 : 1), `${busy} of the restarts carried work over`);
    t.equal(sh('umount', [fsDir]).status, 0, 'ext4 unmounts');
    const fsck = sh('e2fsck', ['-fn', loop]);
    t.equal(fsck.status, 0, `e2fsck clean: ${fsck.stdout}${fsck.stderr}`);
    t.equal(sh('losetup', ['-d', loop]).status, 0, 'loop device detached');
    stopForGood(t, d);
  });

  t.test(`O_DIRECT writes to a block file: fio --verify through ten ${signal} restarts`, async (t) => {
    const { pool, mount, dir } = scratchPool(t, `restart-direct-${signal}`);
    t.equal(cli(pool, 'volume', 'create', 'v', '--size', '320M').status, 0, 'volume made');
    const d0 = await Daemon.start(pool, mount, KEEP);
    t.teardown(() => {
      cli(pool, 'stop');
      tidy(mount);
    });
    const file = path.join(mount, 'block', 'v');
    // Another region each round: first writes, whose mappings only the journal holds at a kill.
    const fio = (round: number): Run => fioBackground(file, ['--rw=randwrite', '--bs=4k', '--size=64M', `--offset=${(round % 4) * 64}M`, '--iodepth=16', '--direct=1'], dir);
    const under = await restartUnder(t, d0, signal, fio);
    let { d, busy } = under;
    if (signal === 'SIGKILL') {
      // On a loaded machine every kill above may have fallen right after a commit: this one follows an
      // acknowledged first write with no fsync (past fio's regions), which only the journal holds.
      const fd = fs.openSync(file, 'r+');
      fs.writeSync(fd, Buffer.alloc(4096, 9), 0, 4096, 300 * 1024 * 1024);
      fs.closeSync(fd);
      await d.stop('SIGKILL');
      d = await Daemon.start(pool, mount, KEEP);
      if (Number(/"applied":(\d+)/.exec(d.log)?.[1] ?? 0) > 0) busy++;
      const back = Buffer.alloc(4096);
      const rd = fs.openSync(file, 'r');
      fs.readSync(rd, back, 0, 4096, 300 * 1024 * 1024);
      fs.closeSync(rd);
      t.ok(back.equals(Buffer.alloc(4096, 9)), 'the write acknowledged just before the kill is there');
    }
    t.ok(busy >= (signal === 'SIGTERM' ? RESTARTS / 2 : 1), `${busy} of the restarts carried work over`);
    stopForGood(t, d);
  });
}

/** Resolves when `name` is gone from `dir`: the keeper unlinks its socket as it exits. */
function gone(dir: string, name: string): Promise<void> {
  return new Promise((resolve) => {
    const w = fs.watch(dir, () => {
      if (!fs.existsSync(path.join(dir, name))) {
        w.close();
        resolve();
      }
    });
    if (!fs.existsSync(path.join(dir, name))) {
      w.close();
      resolve();
    }
  });
}

t.test('with no successor the keeper unmounts after its grace; cowvol stop then finds nothing', async (t) => {
  const { dir, pool, mount } = scratchPool(t, 'restart-grace');
  t.equal(cli(pool, 'volume', 'create', 'v', '--size', '64M').status, 0, 'volume made');
  t.equal(cli(pool, 'volume', 'create', 'home', '--size', '64M', '--kind', 'fs').status, 0, 'filesystem volume made');
  const home = path.join(dir, 'home');
  fs.mkdirSync(home);
  t.teardown(() => tidy(home));
  const d = await Daemon.start(pool, mount, ['--handover-grace', '1']);
  t.equal(cli(pool, 'mount', 'home', home).status, 0, 'cowfs mounted');
  fs.writeFileSync(path.join(home, 'kept'), 'before the stop');
  fs.writeFileSync(path.join(mount, 'block', 'v'), Buffer.alloc(4096, 7), { flag: 'r+' });
  const left = gone(pool, 'cowvol.keeper');
  t.equal((await d.stop('SIGTERM')).code, 0, 'SIGTERM: exits 0');
  await left;
  t.notOk(isMountPoint(mount), 'the keeper unmounted once its grace passed');
  t.notOk(isMountPoint(home), 'and the cowfs mount it held, rather than leaving it dead');
  const r = cli(pool, 'stop');
  t.equal(r.status, 0, 'cowvol stop with nothing running succeeds');
  t.match(r.stdout, /nothing serves/, `says so: ${r.stdout}`);
  const again = await Daemon.start(pool, mount, ['--handover-grace', '1']);
  t.notMatch(again.log, /took the mount over/, 'the next daemon mounts afresh');
  t.same(fs.readFileSync(path.join(mount, 'block', 'v')).subarray(0, 4096), Buffer.alloc(4096, 7), 'the write before the stop is there');
  t.equal(fs.readFileSync(path.join(home, 'kept'), 'utf8'), 'before the stop', 'the next daemon mounts the cowfs volume again, with its file');
  t.equal(cli(pool, 'stop').status, 0, 'stopped');
});
