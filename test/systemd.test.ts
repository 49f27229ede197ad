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

import t from 'tap';

import { native } from '../src/native.js';
import { HANDED_MOUNTS_MAX } from '../src/daemon/handed-mounts.js';
import { spawn } from 'node:child_process';

import { isMountPoint } from '../src/host/mounts.js';
import { Daemon, bin, cli, scratchPool, sh } from './helpers/daemon.js';

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
  t.ok(Number(settings.get('FileDescriptorStoreMax')) >= 4 + HANDED_MOUNTS_MAX, 'room for the connection, the journal, the record and every cowfs mount a stop hands over');
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

t.test('the fd store: a daemon started with the stored fds after a kill -9 takes the mount over', async (t) => {
  const { pool, mount, dir } = scratchPool(t, 'fdstore');
  t.equal(cli(pool, 'volume', 'create', 'v', '--size', '16M').status, 0, 'volume made');
  const sockPath = path.join(dir, 'notify.sock');
  const manager = native.unixDatagramBind(sockPath, 20_000);
  const stored = new Map<string, number>();
  const removed = new Set<string>();
  t.teardown(() => {
    for (const fd of stored.values()) fs.closeSync(fd);
    fs.closeSync(manager);
  });
  /** Plays the manager until `until` says so: keeps stored fds by name, drops removed ones. */
  const serveManager = (until: (msg: string) => boolean): void => {
    for (let i = 0; i < 50; i++) {
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
  process.env.NOTIFY_SOCKET = sockPath;
  let a: Daemon;
  try {
    a = await Daemon.start(pool, mount, ['--fd-store']);
  } finally {
    delete process.env.NOTIFY_SOCKET;
  }
  serveManager((m) => /^READY=1$/m.test(m));
  const names = ['cowvol-fuse', 'cowvol-journal', 'cowvol-info'];
  t.same([...stored.keys()].sort(), [...names].sort(), 'the connection, the journal and the record are in the store');
  const file = path.join(mount, 'block', 'v');
  const data = Buffer.alloc(64 * 1024, 0x5a);
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, data, 0, data.length, 1024 * 1024); // a first write, answered, not flushed
  fs.closeSync(fd);
  await a.stop('SIGKILL');
  t.ok(isMountPoint(mount), 'after kill -9 the mount stays: the store holds the connection');

  // Started as systemd starts it: the stored fds from 3 on, LISTEN_PID its own pid.
  const b = spawn('sh', ['-c', `LISTEN_PID=$$ exec "${process.execPath}" "${bin}" serve --fd-store --pool "${pool}" --mount "${mount}" --handover-grace 0`], {
    env: { ...process.env, NOTIFY_SOCKET: sockPath, LISTEN_FDS: '3', LISTEN_FDNAMES: names.join(':') },
    stdio: ['ignore', 'ignore', 'pipe', ...names.map((n) => stored.get(n) as number)],
  });
  let log = '';
  const exited = new Promise<void>((resolve) => b.once('exit', () => resolve()));
  await new Promise<void>((resolve) => {
    b.stderr?.on('data', (chunk: Buffer) => {
      log += chunk.toString();
      if (log.includes('"msg":"serving"')) resolve();
    });
    void exited.then(() => resolve());
  });
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
