/**
 * cowvol.service under a real systemd (issue 10, part 2): a Debian 12 tree
 * made by debootstrap, booted with systemd-nspawn (systemd 252, Debian's),
 * runs the unit as shipped with this checkout's daemon, and a scenario inside
 * (test/nspawn/) writes to a block file while the service is killed with -9
 * (systemd restarts it, Restart=on-failure) and restarted with `systemctl
 * restart`: the writer sees no error, every block reads back, the journal
 * says both daemons took the mount over from the fd store, and `cowvol stop`
 * leaves the unit inactive and nothing mounted. A second writer, on a file
 * in a cowfs mount, runs through the `systemctl restart` the same way, and
 * through a second kill -9.
 *
 * Caveats: debootstrap fetches Debian's packages (about 50 s here), so this
 * needs the network to Debian's mirror, as `.ci/run`'s apt does. The host is
 * not run by systemd, so nspawn runs with --register=no --keep-unit, and
 * /run/systemd/nspawn must be a tmpfs (nspawn refuses to clean up anything
 * else); the test mounts one if it is not.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import t from 'tap';

import { readMountTable } from '../src/host/mount-table.js';
import { sh } from './helpers/daemon.js';
import { tmpDir } from './helpers/pools.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const fixtures = path.join(root, 'test', 'nspawn');
const MIRROR = 'http://deb.debian.org/debian';
const NSPAWN_RUN = '/run/systemd/nspawn';

/** A booting Debian 12 tree: systemd as init, fuse3's library for the addon. */
function debootstrap(dir: string): void {
  const r = spawnSync('debootstrap', ['--variant=minbase', '--include=systemd,systemd-sysv,dbus,fuse3', 'bookworm', dir, MIRROR], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`debootstrap failed: ${r.stderr.split('\n').slice(-3).join(' ')}`);
}

/** The unit and its defaults as shipped, a `cowvol` on PATH, and the scenario as a unit started at boot. */
function install(tree: string): void {
  const etc = path.join(tree, 'etc');
  fs.copyFileSync(path.join(root, 'systemd', 'cowvol.service'), path.join(etc, 'systemd', 'system', 'cowvol.service'));
  const defaults = fs.readFileSync(path.join(root, 'systemd', 'cowvol.default'), 'utf8').replace(/^COWVOL_OPTS=.*$/m, 'COWVOL_OPTS=--log-level info --metrics-address none');
  fs.writeFileSync(path.join(etc, 'default', 'cowvol'), defaults);
  fs.writeFileSync(path.join(tree, 'usr', 'local', 'bin', 'cowvol'), '#!/bin/sh\nexec /usr/bin/node /opt/cowvol/bin/cowvol.js "$@"\n', { mode: 0o755 });
  fs.copyFileSync(path.join(fixtures, 'scenario.service'), path.join(etc, 'systemd', 'system', 'scenario.service'));
  const wants = path.join(etc, 'systemd', 'system', 'multi-user.target.wants');
  fs.mkdirSync(wants, { recursive: true });
  fs.symlinkSync('/etc/systemd/system/scenario.service', path.join(wants, 'scenario.service'));
  for (const d of ['opt/cowvol', 'opt/test', 'results']) fs.mkdirSync(path.join(tree, d), { recursive: true });
  // Bind-mount targets must exist: node's binary goes where the wrapper calls it.
  fs.writeFileSync(path.join(tree, 'usr', 'bin', 'node'), '');
}

/** KEY=VALUE words of each line the scenario said; the status line is one value. */
function steps(file: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n') : []) {
    if (line.startsWith('status=')) out.set('status', line.slice('status='.length));
    else for (const word of line.split(' ').filter((w) => w.includes('='))) out.set(word.slice(0, word.indexOf('=')), word.slice(word.indexOf('=') + 1));
  }
  return out;
}

t.test('under systemd 252 in a container: kill -9 and systemctl restart are invisible to a writer', async (t) => {
  const dir = tmpDir('nspawn');
  const tree = path.join(dir, 'debian');
  let mountedRun = false;
  t.teardown(() => {
    if (mountedRun) sh('umount', [NSPAWN_RUN]);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const started = Date.now();
  debootstrap(tree);
  const built = Date.now();
  install(tree);
  if (!readMountTable().some((m) => m.mountPoint === NSPAWN_RUN && m.fsType === 'tmpfs')) {
    fs.mkdirSync(NSPAWN_RUN, { recursive: true });
    t.equal(sh('mount', ['-t', 'tmpfs', 'tmpfs', NSPAWN_RUN]).status, 0, 'a tmpfs for nspawn\'s own files');
    mountedRun = true;
  }
  const boot = spawnSync(
    'systemd-nspawn',
    ['-D', tree, '-b', '--register=no', '--keep-unit', '--console=pipe', '-q', '--bind=/dev/fuse', `--bind-ro=${process.execPath}:/usr/bin/node`, `--bind-ro=${root}:/opt/cowvol`, `--bind-ro=${fixtures}:/opt/test`],
    { encoding: 'utf8', timeout: 600_000 },
  );
  const ran = Date.now();
  t.comment(`debootstrap ${((built - started) / 1000).toFixed(1)} s, boot + scenario + poweroff ${((ran - built) / 1000).toFixed(1)} s`);
  t.equal(boot.status, 0, `the container booted and powered off: ${boot.stderr.slice(-500)}`);
  const results = path.join(tree, 'results');
  const s = steps(path.join(results, 'steps'));
  const log = (): string => (fs.existsSync(path.join(results, 'scenario.log')) ? fs.readFileSync(path.join(results, 'scenario.log'), 'utf8').slice(-2000) : 'no scenario log');
  if (s.get('stop') !== '0') t.comment(`the scenario's log ends: ${log()}`);
  const journalFile = path.join(results, 'journal.txt');
  if (s.get('after_restart') !== '0' || s.get('cowfs_after_restart') !== '0' || s.get('cowfs_after_kill9') !== '0') {
    t.comment(`the service's journal ends: ${fs.existsSync(journalFile) ? fs.readFileSync(journalFile, 'utf8').slice(-4000) : 'no journal'}`);
  }
  t.equal(s.get('start'), '0', 'systemctl start waited for READY=1 and succeeded');
  t.equal(s.get('active'), 'inactive', 'cowvol stop ended the unit for good');
  t.match(s.get('status') ?? '', /^serving 1 volumes/, 'the STATUS= line');
  t.equal(s.get('writing'), '0', 'the writer was writing');
  t.equal(s.get('kill9'), '0', 'after kill -9 systemd started a new daemon');
  t.equal(s.get('restarts'), '1', 'through Restart=on-failure');
  t.equal(s.get('after_kill9'), '0', 'and the writer went on');
  t.equal(s.get('restart'), '0', 'systemctl restart started a new daemon');
  t.equal(s.get('after_restart'), '0', 'and the writer went on');
  t.equal(s.get('writer'), '0', 'the writer exited cleanly');
  t.equal(s.get('cowfs'), '0', 'a cowfs volume was made and mounted');
  t.equal(s.get('cowfs_writing'), '0', 'its writer was writing');
  t.equal(s.get('cowfs_after_restart'), '0', 'and went on after systemctl restart');
  t.equal(s.get('kill9_cowfs'), '0', 'a second kill -9, with the cowfs mount up, got a new daemon');
  t.equal(s.get('cowfs_after_kill9'), '0', 'and the cowfs writer went on after it');
  t.equal(s.get('after_second_kill9'), '0', 'and so did the block writer');
  t.equal(s.get('cowfs_writer'), '0', 'and exited cleanly');
  t.equal(s.get('stop'), '0', 'cowvol stop succeeded');
  t.equal(s.get('mounts'), '0', 'and left no mount');
  const writer = JSON.parse(fs.readFileSync(path.join(results, 'writer.json'), 'utf8')) as { writes: number; errors: string[]; bad: number };
  t.same(writer.errors, [], 'no write or fsync failed across both restarts');
  t.equal(writer.bad, 0, `every block reads back what was written last (${writer.writes} writes)`);
  const cowfs = JSON.parse(fs.readFileSync(path.join(results, 'cowfs.json'), 'utf8')) as { writes: number; errors: string[]; bad: number };
  t.same(cowfs.errors, [], 'no write or fsync to the cowfs file failed across the restart and the kill');
  t.equal(cowfs.bad, 0, `every block of the cowfs file reads back what was written last (${cowfs.writes} writes)`);
  const journal = fs.readFileSync(journalFile, 'utf8');
  t.equal(journal.match(/"msg":"took the mount over from the previous daemon"/g)?.length, 3, 'every successor took the connection from the fd store');
  t.match(journal, /"cowfs":1,"msg":"handed the mount over"/, 'the daemon systemctl restart stopped handed it over, the cowfs mount with it');
  t.equal(journal.match(/"msg":"cowfs mount taken over"/g)?.length, 2, 'and both later successors took the cowfs mount over from the fd store');
  t.notMatch(journal, /mounting afresh|detaching a mount left/, 'nothing was mounted afresh');
});
