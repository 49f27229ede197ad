/**
 * cowfs through the real daemon, CLI and kernel: a filesystem volume made
 * with `volume create --kind fs`, served with `cowvol mount`, used by real
 * processes (shell tools and Python's os calls), snapshotted while mounted
 * with no freeze and mounted read-only, grown online (statfs follows at
 * once), filled to ENOSPC, served again by a restarted daemon, and refused
 * clearly where the input is wrong. `cowvol check` (which checks each
 * filesystem's structure) is clean at the end of each.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import t from 'tap';

import { readMountTable } from '../src/host/mount-table.js';
import { Daemon, bin, cli, mountedVolume, scratchPool, sh, tidy } from './helpers/daemon.js';

function mounted(dir: string): string | null {
  return readMountTable().find((m) => m.mountPoint === dir)?.source ?? null;
}

function py(code: string): { status: number; stdout: string; stderr: string } {
  return sh('python3', ['-c', code]);
}

t.test('a filesystem volume served by the daemon: files, a snapshot without a freeze, online growth, check', async (t) => {
  const { dir, pool, mount } = scratchPool(t, 'cowfs-mount');
  const d = await Daemon.start(pool, mount);
  const live = path.join(dir, 'live');
  const snap = path.join(dir, 'snap');
  fs.mkdirSync(live);
  fs.mkdirSync(snap);
  t.teardown(() => {
    tidy(live);
    tidy(snap);
  });
  const made = cli(pool, 'volume', 'create', 'data', '--size', '256M', '--kind', 'fs');
  t.equal(made.status, 0, made.stderr);
  t.match(made.stdout, /created filesystem volume data/);
  t.match(cli(pool, 'volume', 'list').stdout, /data\s+fs\s+256 MiB/, 'volume list shows the kind');
  t.notOk(fs.readdirSync(path.join(mount, 'block')).includes('data'), 'a filesystem volume is no block file');
  const m = cli(pool, 'mount', 'data', live);
  t.equal(m.status, 0, m.stderr);
  t.match(mounted(live), /^cowfs:[0-9a-f]{8}:data$/, 'the kernel has a cowfs mount there, named for the pool and the volume');

  const work = py(`
import os
os.chdir(${JSON.stringify(live)})
for d in range(4):
    os.mkdir(f"d{d}")
    for f in range(50):
        with open(f"d{d}/f{f}", "wb") as out:
            out.write(bytes([d * 50 + f & 255]) * (1000 + 37 * f))
os.link("d0/f1", "hard")
os.symlink("d1/f2", "soft")
os.rename("d2/f3", "d3/moved")
os.unlink("d2/f4")
fd = os.open("sparse", os.O_RDWR | os.O_CREAT, 0o600)
os.pwrite(fd, b"end", 64 << 20)
print(os.lseek(fd, 0, os.SEEK_DATA), os.lseek(fd, 0, os.SEEK_HOLE))
os.fsync(fd)
os.close(fd)
os.setxattr("hard", "user.note", b"kept")
st = os.stat("hard")
print(st.st_nlink, os.readlink("soft"), os.getxattr("d0/f1", "user.note").decode())
`);
  t.equal(work.status, 0, work.stderr);
  t.same(work.stdout.trim().split('\n'), [`${64 << 20} 0`, '2 d1/f2 kept'], 'links, xattrs and SEEK_DATA/SEEK_HOLE answer as on ext4');

  // A snapshot of the mounted volume, no freeze: every write acknowledged before it is in it.
  const before = sh('tar', ['-C', live, '-cf', '-', '.']).stdout;
  t.equal(cli(pool, 'snapshot', 'create', 'data@one').status, 0);
  t.equal(cli(pool, 'mount', 'data@one', snap).status, 0);
  t.same(cli(pool, 'mounts', '--json').stdout.length > 0 && JSON.parse(cli(pool, 'mounts', '--json').stdout), [
    { source: 'data', dir: live, readOnly: false },
    { source: 'data@one', dir: snap, readOnly: true },
  ]);
  const diff = sh('diff', ['-r', '--no-dereference', live, snap]);
  t.equal(diff.status, 0, `the snapshot holds what the volume held: ${diff.stdout}`);
  fs.writeFileSync(path.join(live, 'd0', 'f0'), 'changed after the snapshot');
  t.equal(fs.readFileSync(path.join(snap, 'd0', 'f0')).length, 1000, 'a write after the snapshot does not reach it');
  const ro = sh('touch', [path.join(snap, 'new')]);
  t.not(ro.status, 0);
  t.match(ro.stderr, /Read-only file system/, 'a snapshot mount is read-only');
  t.ok(before.length > 0);

  const busy = cli(pool, 'snapshot', 'delete', 'data@one');
  t.equal(busy.status, 1);
  t.match(busy.stderr, /mounted at/, 'a mounted snapshot is not deleted');

  const df = (): string => sh('df', ['-B1', '--output=size', live]).stdout.trim().split('\n')[1] ?? '';
  t.equal(df(), String(256 << 20), 'statfs reports the volume size');
  t.equal(cli(pool, 'volume', 'grow', 'data', '--size', '512M').status, 0);
  t.equal(df(), String(512 << 20), 'and the new size at once after an online grow');

  // An unlinked file stays readable while open; its space comes back at the last close.
  const orphan = py(`
import os
p = ${JSON.stringify(path.join(live, 'gone'))}
with open(p, "wb") as f:
    f.write(b"x" * (4 << 20))
free = lambda: os.statvfs(${JSON.stringify(live)}).f_bfree
fd = os.open(p, os.O_RDONLY)
os.unlink(p)
held = free()
data = os.pread(fd, 10, 0)
os.close(fd)
print(data.decode(), os.path.exists(p), free() - held >= (4 << 20) // 4096)
`);
  t.equal(orphan.status, 0, orphan.stderr);
  t.equal(orphan.stdout.trim(), 'xxxxxxxxxx False True', 'read after unlink, freed at the last close');

  t.equal(cli(pool, 'unmount', snap).status, 0);
  t.equal(cli(pool, 'unmount', live).status, 0);
  t.equal(mounted(live), null, 'unmounted');
  t.equal(mounted(snap), null);
  const check = cli(pool, 'check');
  t.equal(check.status, 0, check.stdout);
  t.match(check.stdout, /^clean/);
  await d.stop();
});

t.test('the volume fills up with ENOSPC, and nothing breaks', async (t) => {
  const { pool, live, d } = await mountedVolume(t, 'cowfs-full', 'small', '2M');
  const dd = sh('dd', ['if=/dev/zero', `of=${path.join(live, 'big')}`, 'bs=64k', 'count=64', 'conv=fsync']);
  t.not(dd.status, 0);
  // Under the writeback cache the error comes with the flush (dd's fsync), not the write: docs/status.md.
  t.match(dd.stderr, /No space left on device/, 'a write past the volume size gets ENOSPC');
  fs.rmSync(path.join(live, 'big'));
  fs.writeFileSync(path.join(live, 'after'), 'room again');
  t.equal(fs.readFileSync(path.join(live, 'after'), 'utf8'), 'room again', 'deleting frees the room');
  t.equal(cli(pool, 'unmount', live).status, 0);
  t.equal(cli(pool, 'check').status, 0);
  await d.stop();
});

t.test('a daemon started again serves the mounts it recorded', async (t) => {
  const { dir, pool, mount } = scratchPool(t, 'cowfs-again');
  const live = path.join(dir, 'live');
  fs.mkdirSync(live);
  t.teardown(() => tidy(live));
  let d = await Daemon.start(pool, mount);
  t.equal(cli(pool, 'volume', 'create', 'v', '--size', '64M', '--kind', 'fs').status, 0);
  t.equal(cli(pool, 'mount', 'v', live).status, 0);
  fs.writeFileSync(path.join(live, 'kept'), 'across a restart');
  sh('sync', ['-f', path.join(live, 'kept')]);
  await d.stop();
  t.equal(mounted(live), null, 'a stopped daemon leaves no dead mount');
  d = await Daemon.start(pool, mount);
  t.match(mounted(live), /^cowfs:[0-9a-f]{8}:v$/, 'the next daemon mounted it again');
  t.equal(fs.readFileSync(path.join(live, 'kept'), 'utf8'), 'across a restart');
  t.equal(cli(pool, 'unmount', live).status, 0);
  await d.stop();
  d = await Daemon.start(pool, mount);
  t.equal(mounted(live), null, 'an unmount is remembered too');
  await d.stop();
});

t.test('open with O_TRUNC empties the file in the volume, not only in the kernel', async (t) => {
  const { pool, live, d } = await mountedVolume(t, 'cowfs-trunc', 'v', '64M');
  const file = path.join(live, 'f');
  fs.writeFileSync(file, Buffer.alloc(300000, 0x78));
  sh('sync', ['-f', file]);
  const before = fs.statSync(file, { bigint: true }).mtimeNs;
  // What `> file` and Python's open(file, 'w') do: O_TRUNC on an existing file, then a shorter write.
  const r = py(`import os\nfd = os.open(${JSON.stringify(file)}, os.O_WRONLY | os.O_TRUNC)\nos.write(fd, b'short')\nos.close(fd)`);
  t.equal(r.status, 0, r.stderr);
  t.equal(fs.statSync(file).size, 5, 'the kernel sees the new size');
  t.ok(fs.statSync(file, { bigint: true }).mtimeNs > before, 'the truncate moved mtime');
  // Unmounted and mounted again, nothing the kernel cached is left: the tree answers.
  t.equal(cli(pool, 'unmount', live).status, 0);
  t.equal(cli(pool, 'mount', 'v', live).status, 0);
  t.equal(fs.statSync(file).size, 5, 'the volume holds the new size');
  t.equal(fs.readFileSync(file, 'utf8'), 'short', 'and no byte of the old contents');
  t.equal(cli(pool, 'unmount', live).status, 0);
  t.equal(cli(pool, 'check').status, 0);
  await d.stop();
});

t.test('a file written back from the page cache keeps the times stat showed, across a remount', async (t) => {
  const { pool, live, d } = await mountedVolume(t, 'cowfs-times', 'v', '64M');
  // Two writes that come back to JavaScript from the page cache: through a shared mapping, and into a preallocated file.
  const code = [
    'import mmap, os, sys',
    `root = ${JSON.stringify(live)}`,
    "fd = os.open(root + '/mapped', os.O_CREAT | os.O_RDWR, 0o644)",
    'os.ftruncate(fd, 65536)',
    'm = mmap.mmap(fd, 65536)',
    "m[100:105] = b'hello'",
    'm.close()',
    'os.close(fd)',
    "fd = os.open(root + '/prealloc', os.O_CREAT | os.O_RDWR, 0o644)",
    'os.posix_fallocate(fd, 0, 200000)',
    "os.write(fd, b'x')",
    'os.close(fd)',
    'os.sync()',
  ].join('\n');
  const r = py(code);
  t.equal(r.status, 0, r.stderr);
  const shown = (name: string): bigint => fs.statSync(path.join(live, name), { bigint: true }).mtimeNs;
  const before = { mapped: shown('mapped'), prealloc: shown('prealloc') };
  t.equal(cli(pool, 'unmount', live).status, 0);
  t.equal(cli(pool, 'mount', 'v', live).status, 0);
  t.equal(shown('mapped'), before.mapped, 'the mapped file has the mtime stat showed before');
  t.equal(shown('prealloc'), before.prealloc, 'so has the preallocated one');
  t.equal(cli(pool, 'unmount', live).status, 0);
  await d.stop();
});

t.test('bad requests get one clear line and change nothing', async (t) => {
  const { dir, pool, mount } = scratchPool(t, 'cowfs-bad');
  const none = cli(pool, 'mount', 'x', dir);
  t.equal(none.status, 1);
  t.match(none.stderr, /no daemon serves this pool/, 'mounts need the daemon');
  const d = await Daemon.start(pool, mount);
  t.equal(cli(pool, 'volume', 'create', 'blk', '--size', '16M').status, 0);
  t.equal(cli(pool, 'volume', 'create', 'fsv', '--size', '16M', '--kind', 'fs').status, 0);
  const first = path.join(dir, 'first');
  fs.mkdirSync(first);
  fs.mkdirSync(path.join(dir, 'second'));
  t.teardown(() => tidy(first));
  t.equal(cli(pool, 'mount', 'fsv', first).status, 0);
  const cases: [string[], RegExp][] = [
    [['volume', 'create', 'k', '--size', '16M', '--kind', 'zfs'], /invalid volume kind 'zfs'/],
    [['mount', 'blk', dir], /'blk' is a block volume/],
    [['mount', 'nothing', dir], /no volume or snapshot named 'nothing'/],
    [['mount', 'fsv', path.join(dir, 'missing')], /does not exist/],
    [['mount', 'fsv', path.join(mount, 'block')], /which this daemon serves/],
    [['unmount', dir], /not a cowfs mount/],
    [['mount', 'fsv', path.join(dir, 'second')], /already mounted at .*bind-mount/],
    [['export', 'fsv', path.join(dir, 'img')], /is a filesystem volume: images are of block volumes/],
  ];
  for (const [args, message] of cases) {
    const r = cli(pool, ...args);
    t.equal(r.status, 1, `${args.join(' ')} fails`);
    t.match(r.stderr, message);
    t.equal(r.stderr.trim().split('\n').length, 1, 'in one line');
  }
  t.same(JSON.parse(cli(pool, 'mounts', '--json').stdout), [{ source: 'fsv', dir: first, readOnly: false }], 'nothing more got mounted');
  t.equal(cli(pool, 'unmount', first).status, 0);
  t.notOk(fs.existsSync(path.join(dir, 'img')), 'nothing got exported');
  await d.stop();
});

t.test('copy_file_range inside a volume shares whole chunks (a reflink) and a write separates them', async (t) => {
  const { pool, live, d } = await mountedVolume(t, 'cowfs-reflink', 'r', '256M');
  const used = (): number => (JSON.parse(cli(pool, 'pool', 'show', '--json').stdout) as { usedBytes: number }).usedBytes;
  const src = path.join(live, 'src');
  const dst = path.join(live, 'dst');
  fs.writeFileSync(src, Buffer.alloc(8 << 20, 0x5a));
  fs.appendFileSync(src, 'an unaligned tail');
  const before = used();
  const copied = py(`
import os
a = os.open(${JSON.stringify(src)}, os.O_RDONLY)
b = os.open(${JSON.stringify(dst)}, os.O_WRONLY | os.O_CREAT, 0o644)
n = 0
while True:
    k = os.copy_file_range(a, b, 1 << 30)
    if k == 0:
        break
    n += k
print(n)
`);
  t.equal(copied.status, 0, copied.stderr);
  t.equal(Number(copied.stdout), (8 << 20) + 17, 'every byte copied');
  t.ok(fs.readFileSync(dst).equals(fs.readFileSync(src)), 'the copy reads as the source');
  t.ok(used() - before <= 64 << 10, `the pool used ${used() - before} more bytes for an 8 MiB copy: only the tail's chunk`);
  fs.writeFileSync(dst, 'changed', { flag: 'r+' });
  t.equal(fs.readFileSync(src).subarray(0, 7).toString(), 'ZZZZZZZ', 'a write to the copy leaves the source alone');
  t.equal(fs.readFileSync(dst).subarray(0, 7).toString(), 'changed');
  t.equal(cli(pool, 'unmount', live).status, 0);
  const check = cli(pool, 'check');
  t.equal(check.status, 0, check.stdout);
  await d.stop();
});

t.test('processes creating, renaming and deleting in one directory while snapshots are taken and read', async (t) => {
  const { dir, pool, live, d } = await mountedVolume(t, 'cowfs-busy', 'busy', '256M');
  const snap = path.join(dir, 'snap');
  fs.mkdirSync(snap);
  t.teardown(() => tidy(snap));
  const shared = path.join(live, 'shared');
  fs.mkdirSync(shared);
  // Each writer makes f-P-I with 1000 bytes of one value, renames it to g-P-I, and removes every third;
  // halfway it says so on its stdout and waits for a line on its stdin, so the middle snapshot is taken mid-way.
  const writer = (p: number): { child: ChildProcess; halfway: Promise<void>; done: Promise<number | null> } => {
    const child = spawn('python3', ['-c', `
import os, sys
d = ${JSON.stringify(shared)}
for i in range(300):
    if i == 150:
        print("halfway", flush=True)
        sys.stdin.readline()
    f = f"{d}/f-${p}-{i}"
    with open(f, "wb") as out:
        out.write(bytes([(${p} * 31 + i) % 251 + 1]) * 1000)
    os.rename(f, f"{d}/g-${p}-{i}")
    if i % 3 == 0:
        os.unlink(f"{d}/g-${p}-{i}")
`], { stdio: ['pipe', 'pipe', 'pipe'] });
    const halfway = new Promise<void>((resolve) => child.stdout?.on('data', (b: Buffer) => (b.toString().includes('halfway') ? resolve() : undefined)));
    return { child, halfway, done: exited(child) };
  };
  // The reader may race a rename or unlink (ENOENT), never anything else.
  const reader = exited(spawn('python3', ['-c', `
import os, errno
d = ${JSON.stringify(shared)}
for _ in range(8):
    for name in os.listdir(d):
        try:
            with open(f"{d}/{name}", "rb") as f:
                data = f.read()
            assert len(data) in (0, 1000), (name, len(data))
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise
`]));
  const writers = [0, 1, 2, 3].map(writer);
  for (let i = 0; i < 5; i++) {
    if (i === 2) await Promise.all(writers.map((w) => w.halfway));
    t.equal(await cliAsync(pool, 'snapshot', 'create', `busy@s${i}`), 0, `snapshot ${i} taken under load`);
    if (i === 2) for (const w of writers) w.child.stdin?.end('go\n');
  }
  t.same(await Promise.all(writers.map((w) => w.done)), [0, 0, 0, 0], 'every writer finished without an error');
  t.equal(await reader, 0, 'the reader saw whole files or none');
  const names = fs.readdirSync(shared).sort();
  const want = [0, 1, 2, 3].flatMap((p) => Array.from({ length: 300 }, (_, i) => i).filter((i) => i % 3 !== 0).map((i) => `g-${p}-${i}`)).sort();
  t.same(names, want, 'exactly the files the writers left');
  // A snapshot taken mid-way holds whole files: every g- file has its 1000 bytes of its one value.
  t.equal(cli(pool, 'mount', 'busy@s2', snap).status, 0);
  let bad = 0;
  const inSnapshot = fs.readdirSync(path.join(snap, 'shared'));
  t.ok(inSnapshot.some((n) => n.startsWith('g-')), `the snapshot holds renamed files (${inSnapshot.length} names)`);
  t.notSame(inSnapshot.filter((n) => n.startsWith('g-')).sort(), want, 'and was taken while the writers ran');
  for (const name of inSnapshot) {
    const data = fs.readFileSync(path.join(snap, 'shared', name));
    const m = /^[fg]-(\d)-(\d+)$/.exec(name);
    const value = m ? ((Number(m[1]) * 31 + Number(m[2])) % 251) + 1 : -1;
    if (name.startsWith('g-') && (data.length !== 1000 || data.some((b) => b !== value))) bad++;
  }
  t.equal(bad, 0, 'no renamed file in the snapshot is torn');
  t.equal(cli(pool, 'unmount', snap).status, 0);
  t.equal(cli(pool, 'unmount', live).status, 0);
  const check = cli(pool, 'check');
  t.equal(check.status, 0, check.stdout);
  await d.stop();
});

function exited(child: ChildProcess): Promise<number | null> {
  let err = '';
  child.stderr?.on('data', (b: Buffer) => (err += b.toString()));
  return new Promise((resolve) =>
    child.once('exit', (code) => {
      if (code !== 0) process.stderr.write(err);
      resolve(code);
    }),
  );
}

/** The CLI without blocking this process: the writers run meanwhile. */
function cliAsync(pool: string, ...args: string[]): Promise<number | null> {
  return exited(spawn(process.execPath, [bin, ...args, '--pool', pool], { stdio: ['ignore', 'ignore', 'pipe'] }));
}

t.test('the FUSE threads are shared: ten mounts run on the threads one mount runs on', async (t) => {
  const { dir, pool, live, d } = await mountedVolume(t, 'cowfs-threads', 'v0', '64M');
  const pid = d.child.pid ?? 0;
  const threads = (): number => Number(/^Threads:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
  // A file written and read in the first mount: every kind of thread the daemon starts has started.
  t.equal(py(`open(${JSON.stringify(path.join(live, 'f'))}, "wb").write(b"x" * 65536)\nprint(len(open(${JSON.stringify(path.join(live, 'f'))}, "rb").read()))`).stdout.trim(), '65536');
  const one = threads();
  for (let i = 1; i < 10; i++) {
    const at = path.join(dir, `m${i}`);
    fs.mkdirSync(at);
    t.teardown(() => tidy(at));
    t.equal(cli(pool, 'volume', 'create', `v${i}`, '--size', '64M', '--kind', 'fs').status, 0);
    t.equal(cli(pool, 'mount', `v${i}`, at).status, 0, `mount ${i}`);
    t.equal(py(`open(${JSON.stringify(path.join(at, 'f'))}, "wb").write(b"y")`).status, 0, `mount ${i} serves`);
  }
  // Each mount had its own 3 threads before: 27 more here.
  t.ok(threads() <= one + 2, `threads with ten mounts (${threads()}) stay those of one (${one})`);
  await d.stop();
});

t.test('serve refuses a bad --fs-threads with one line', async (t) => {
  const { pool, mount } = scratchPool(t, 'cowfs-threads-flag');
  for (const bad of ['0', '65', 'four']) {
    const r = sh(process.execPath, [bin, 'serve', '--pool', pool, '--mount', mount, '--fs-threads', bad]);
    t.equal(r.status, 1, `--fs-threads ${bad}: exit 1`);
    t.match(r.stderr, new RegExp(`^cowvol: invalid --fs-threads '${bad}': a whole number from 1 to 64\\n$`), 'says what to fix');
  }
  t.equal(cli(pool, 'volume', 'list').status, 0, 'the pool was left alone');
});
