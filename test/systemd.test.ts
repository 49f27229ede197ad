/**
 * The systemd unit and the notify protocol (issue 10, part 2): the unit
 * passes `systemd-analyze verify` and keeps the settings a FUSE daemon with
 * a keeper needs; a real daemon started with $NOTIFY_SOCKET pointing at a
 * datagram socket that plays the manager sends READY=1 once it serves,
 * WATCHDOG=1 pings while its mount answers, and STOPPING=1 on SIGTERM; with
 * --fd-store it stores its connection there, and a daemon started after a
 * kill -9 with those fds in $LISTEN_FDS takes the mount over.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import t, { type Test } from 'tap';

import { native } from '../src/native.js';
import { HANDED_MOUNTS_MAX } from '../src/daemon/handed-mounts.js';
import { spawn } from 'node:child_process';

import { isMountPoint } from '../src/host/mounts.js';
import { Daemon, bin, cli, scratchPool, sh, tidy } from './helpers/daemon.js';
import { HOLDER, Talker } from './helpers/talker.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const unit = fs.readFileSync(path.join(root, 'systemd', 'cowvol.service'), 'utf8');

t.test('the unit verifies and keeps what the daemon needs', async (t) => {
  const dir = fs.mkdtempSync('/tmp/cowvol-unit-');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  // verify checks that ExecStart's program exists: point it at this checkout's.
  const file = path.join(dir, 'cowvol.service');
  fs.writeFileSync(file, unit.replaceAll('/usr/local/bin/cowvol', bin));
  const r = sh('systemd-analyze', ['verify', file]);
  t.equal(r.status, 0, `systemd-analyze verify: ${r.stdout}${r.stderr}`);
  t.notMatch(r.stdout + r.stderr, /cowvol\.service/, 'no warning about the unit');
  const settings = new Map(unit.split('\n').filter((l) => /^[A-Za-z]+=/.test(l)).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  t.equal(settings.get('Type'), 'notify', 'Type=notify');
  t.match(settings.get('ExecStart') ?? '', /serve --fd-store/, 'the fd store holds the connection between daemons');
  t.ok(Number(settings.get('FileDescriptorStoreMax')) >= 5 + HANDED_MOUNTS_MAX, 'room for the connection, the journal, the record, the open counts and every cowfs mount handed on');
  t.equal(settings.get('Restart'), 'on-failure', 'restarted after a crash');
  t.ok(Number(settings.get('WatchdogSec')) > 0, 'a watchdog');
  for (const ns of ['PrivateMounts', 'PrivateTmp', 'ProtectSystem', 'ProtectHome', 'PrivateDevices', 'ProtectKernelModules', 'ProtectKernelLogs']) {
    t.notOk(settings.has(ns), `no ${ns}: mounts must reach the host`);
  }
  t.match(settings.get('CapabilityBoundingSet') ?? '', /CAP_SYS_ADMIN/, 'CAP_SYS_ADMIN for mounts');
  t.match(settings.get('CapabilityBoundingSet') ?? '', /CAP_SYS_RESOURCE/, 'CAP_SYS_RESOURCE for PR_SET_IO_FLUSHER');
  t.match(unit, /DeviceAllow=\/dev\/fuse rw/, '/dev/fuse allowed');
  t.match(unit, /DeviceAllow=block-loop rw/, 'loop devices allowed');
  const defaults = fs.readFileSync(path.join(root, 'systemd', 'cowvol.default'), 'utf8');
  for (const v of ['COWVOL_POOL', 'COWVOL_MOUNT', 'COWVOL_OPTS']) t.match(defaults, new RegExp(`^${v}=`, 'm'), `the environment file sets ${v}`);
});

t.test('READY=1 once serving, WATCHDOG=1 while the mount answers, STOPPING=1 on SIGTERM', async (t) => {
  const { pool, mount, dir } = scratchPool(t, 'notify');
  t.equal(cli(pool, 'volume', 'create', 'v', '--size', '16M').status, 0, 'volume made');
  const sockPath = path.join(dir, 'notify.sock');
  const manager = native.unixDatagramBind(sockPath, 20_000);
  t.teardown(() => fs.closeSync(manager));
  const receive = (): string => {
    const got = native.unixReceive(manager);
    return got === null ? '' : got[0].toString();
  };
  process.env.NOTIFY_SOCKET = sockPath;
  process.env.WATCHDOG_USEC = '200000';
  let d: Daemon;
  try {
    d = await Daemon.start(pool, mount);
  } finally {
    delete process.env.NOTIFY_SOCKET;
    delete process.env.WATCHDOG_USEC;
  }
  const first = receive();
  t.match(first, /^READY=1$/m, `READY=1 first: ${first}`);
  t.match(first, /^STATUS=serving 1 volumes and snapshots at /m, 'with a STATUS line');
  t.match(first, new RegExp(`^MAINPID=${d.child.pid}$`, 'm'), 'and its pid');
  t.equal(receive(), 'WATCHDOG=1', 'then a watchdog ping');
  t.equal(receive(), 'WATCHDOG=1', 'and another');
  d.child.kill('SIGTERM');
  let last = receive();
  while (last === 'WATCHDOG=1') last = receive();
  t.match(last, /^STOPPING=1$/m, `STOPPING=1 on SIGTERM: ${last}`);
  t.equal((await d.stop('SIGTERM')).code, 0, 'exits 0');
});

/**
 * Plays systemd's side of the fd store on a bound datagram socket: keeps
 * stored fds by name and drops removed ones. `serve` reads messages until
 * `until` says so (or the socket's receive times out).
 */
function fakeManager(t: Test, manager: number): { stored: Map<string, number>; removed: Set<string>; serve: (until: (msg: string) => boolean) => void } {
  const stored = new Map<string, number>();
  const removed = new Set<string>();
  t.teardown(() => {
    for (const fd of stored.values()) fs.closeSync(fd);
    fs.closeSync(manager);
  });
  const serve = (until: (msg: string) => boolean): void => {
    for (let i = 0; i < 300; i++) {
      const got = native.unixReceive(manager);
      if (got === null) return;
      const [raw, fds] = got;
      const msg = raw.toString();
      const name = /^FDNAME=(.*)$/m.exec(msg)?.[1] ?? '';
      if (/^FDSTORE=1$/m.test(msg) && fds.length === 1) {
        if (stored.has(name)) fs.closeSync(stored.get(name) as number);
        stored.set(name, fds[0] as number);
      } else {
        for (const fd of fds) fs.closeSync(fd);
      }
      if (/^FDSTOREREMOVE=1$/m.test(msg)) {
        removed.add(name);
        if (stored.has(name)) fs.closeSync(stored.get(name) as number);
        stored.delete(name);
      }
      if (until(msg)) return;
    }
  };
  return { stored, removed, serve };
}

/** Starts `cowvol serve --fd-store` as systemd starts it: the stored fds `names` from 3 on, LISTEN_PID its own pid. Resolves once it serves (or exited). */
async function startFromStore(pool: string, mount: string, sockPath: string, names: string[], stored: Map<string, number>, manage?: () => void): Promise<{ log: string; exited: Promise<void>; kill: () => void }> {
  const b = spawn('sh', ['-c', `LISTEN_PID=$$ exec "${process.execPath}" "${bin}" serve --fd-store --pool "${pool}" --mount "${mount}" --handover-grace 0`], {
    env: { ...process.env, NOTIFY_SOCKET: sockPath, LISTEN_FDS: String(names.length), LISTEN_FDNAMES: names.join(':') },
    stdio: ['ignore', 'ignore', 'pipe', ...names.map((n) => stored.get(n) as number)],
  });
  let log = '';
  const exited = new Promise<void>((resolve) => b.once('exit', () => resolve()));
  // As systemd does, while it starts: a manager that did not read would stall it (a notify socket holds few messages).
  manage?.();
  await new Promise<void>((resolve) => {
    b.stderr?.on('data', (chunk: Buffer) => {
      log += chunk.toString();
      if (log.includes('"msg":"serving"')) resolve();
    });
    void exited.then(() => resolve());
  });
  return { log, exited, kill: () => void b.kill('SIGKILL') };
}

interface Managed {
  a: Daemon;
  sockPath: string;
  stored: Map<string, number>;
  removed: Set<string>;
  serveManager: (until: (msg: string) => boolean) => void;
}

/** `cowvol serve --fd-store` with a fake manager on DIR/notify.sock, once it said READY=1. */
async function underManager(t: Test, pool: string, mount: string, dir: string): Promise<Managed> {
  const sockPath = path.join(dir, 'notify.sock');
  const { stored, removed, serve } = fakeManager(t, native.unixDatagramBind(sockPath, 20_000));
  process.env.NOTIFY_SOCKET = sockPath;
  let a: Daemon;
  try {
    a = await Daemon.start(pool, mount, ['--fd-store']);
  } finally {
    delete process.env.NOTIFY_SOCKET;
  }
  serve((m) => /^READY=1$/m.test(m));
  return { a, sockPath, stored, removed, serveManager: serve };
}

t.test('the fd store: a daemon started with the stored fds after a kill -9 takes the mount over', async (t) => {
  const { pool, mount, dir } = scratchPool(t, 'fdstore');
  t.equal(cli(pool, 'volume', 'create', 'v', '--size', '16M').status, 0, 'volume made');
  const { a, sockPath, stored, removed, serveManager } = await underManager(t, pool, mount, dir);
  const names = ['cowvol-fuse', 'cowvol-journal', 'cowvol-info'];
  t.same([...stored.keys()].sort(), [...names].sort(), 'the connection, the journal and the record are in the store');
  const file = path.join(mount, 'block', 'v');
  const data = Buffer.alloc(64 * 1024, 0x5a);
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, data, 0, data.length, 1024 * 1024); // a first write, answered, not flushed
  fs.closeSync(fd);
  await a.stop('SIGKILL');
  t.ok(isMountPoint(mount), 'after kill -9 the mount stays: the store holds the connection');

  const { log, exited } = await startFromStore(pool, mount, sockPath, names, stored);
  t.match(log, /took the mount over/, `the new daemon took the connection over: ${log.slice(0, 400)}`);
  t.match(log, /"applied":[1-9]/, 'and replayed the first write the killed daemon answered');
  serveManager((m) => /^READY=1$/m.test(m));
  const back = Buffer.alloc(data.length);
  const rfd = fs.openSync(file, 'r');
  fs.readSync(rfd, back, 0, back.length, 1024 * 1024);
  fs.closeSync(rfd);
  t.ok(back.equals(data), 'the write answered before the kill reads back');
  removed.clear();
  const r = cli(pool, 'stop');
  t.equal(r.status, 0, `cowvol stop: ${r.stdout}${r.stderr}`);
  await exited;
  serveManager(() => names.every((n) => removed.has(n)));
  t.ok(names.every((n) => removed.has(n)), 'stopping for good takes the fds out of the store');
  t.notOk(isMountPoint(mount), 'and unmounts');
});

t.test('the fd store: cowfs mounts are stored as they are made, a SIGTERM stores them detached, and a kill -9 hands them on too', async (t) => {
  const { pool, mount, dir } = scratchPool(t, 'fdstore-cowfs');
  const live = path.join(dir, 'live');
  fs.mkdirSync(live);
  t.teardown(() => {
    cli(pool, 'stop');
    tidy(live);
  });
  t.equal(cli(pool, 'volume', 'create', 'home', '--size', '64M', '--kind', 'fs').status, 0, 'filesystem volume made');
  const { a, sockPath, stored, removed, serveManager } = await underManager(t, pool, mount, dir);
  t.equal(cli(pool, 'mount', 'home', live).status, 0, 'mounted');
  const serving = ['cowvol-fuse', 'cowvol-journal', 'cowvol-info', 'cowvol-mounts', 'cowvol-opens', 'cowvol-cowfs-0'];
  // Stored in order: the record, the open counts, then the connections; the last is the mount's.
  const lastStored = (m: string): boolean => /^FDSTORE=1$/m.test(m) && /^FDNAME=cowvol-cowfs-0$/m.test(m);
  serveManager(lastStored);
  t.same([...stored.keys()].sort(), [...serving].sort(), 'a serving daemon stores its cowfs mount, with the open counts, as it mounts it');
  const holder = new Talker(t, HOLDER, live);
  t.equal(await holder.line(), 'ready');
  t.equal(await holder.ask('write'), 'ok 1', 'a file written and fsynced, another unlinked while open');
  // Changes no commit holds yet when the stop comes: its last commit must still leave the journal a mark for it.
  t.equal(await holder.ask('dirty'), 'ok 2', 'and written again, not flushed');
  t.equal((await a.stop('SIGTERM')).code, 0, 'SIGTERM: exits 0');
  serveManager(lastStored);
  const detached = ['cowvol-fuse', 'cowvol-journal', 'cowvol-info', 'cowvol-mounts', 'cowvol-cowfs-0'];
  t.same([...stored.keys()].sort(), [...detached].sort(), 'the stop replaced them with the mount it detached and its record');
  t.ok(isMountPoint(live), 'the cowfs mount stays while no daemon runs');

  removed.clear();
  const b = await startFromStore(pool, mount, sockPath, detached, stored, () => serveManager(lastStored));
  t.match(b.log, /cowfs mount taken over/, `the next daemon took the cowfs mount over: ${b.log.slice(0, 400)}`);
  t.notMatch(b.log, /mounting afresh/, 'the journal the stop left was replayed, not refused');
  t.ok(removed.has('cowvol-mounts') && removed.has('cowvol-cowfs-0'), 'it took what it was passed out of the store');
  t.same([...stored.keys()].sort(), [...serving].sort(), 'and stored the mount it serves now in its place');
  t.equal(await holder.ask('dirty'), 'ok 3', 'the open files carry on: a write nobody flushed');
  fs.writeFileSync(path.join(live, 'made-before-the-kill'), 'answered, not flushed');

  b.kill();
  await b.exited;
  t.ok(isMountPoint(live), 'after a kill -9 the cowfs mount stays: the store holds its connection');
  const c = await startFromStore(pool, mount, sockPath, serving, stored, () => serveManager(lastStored));
  t.match(c.log, /cowfs mount taken over/, `the daemon after the kill took the cowfs mount over: ${c.log.slice(0, 400)}`);
  t.match(c.log, /"applied":[1-9]/, 'after replaying what the killed one journaled');
  t.equal(await holder.ask('write'), 'ok 4', 'the open files carry on across the kill: every write reads back whole');
  t.equal(fs.readFileSync(path.join(live, 'made-before-the-kill'), 'utf8'), 'answered, not flushed', 'a file made just before the kill is there');
  const ended = await holder.end();
  t.equal(ended.code, 0, `the holder saw no error: ${ended.said}`);
  const r = cli(pool, 'stop');
  t.equal(r.status, 0, `cowvol stop: ${r.stdout}${r.stderr}`);
  await c.exited;
  t.notOk(isMountPoint(live), 'stopping for good unmounts the cowfs mount');
  const check = cli(pool, 'check');
  t.equal(check.status, 0, `check clean: ${check.stdout}${check.stderr}`);
});
