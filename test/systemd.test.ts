/**
 * The systemd unit and the notify protocol (issue 10, part 2): the unit
 * passes `systemd-analyze verify` and keeps the settings a FUSE daemon with
 * a keeper needs; a real daemon started with $NOTIFY_SOCKET pointing at a
 * datagram socket that plays the manager sends READY=1 once it serves,
 * WATCHDOG=1 pings while its mount answers, and STOPPING=1 on SIGTERM.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import t from 'tap';

import { native } from '../src/native.js';
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
  t.equal(settings.get('KillMode'), 'process', 'KillMode=process: a restart leaves the keeper alive');
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
