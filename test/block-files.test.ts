/**
 * Block volumes served as files by a real `cowvol serve` process, through
 * the kernel: fio with verification, loop devices with ext4 and fstrim,
 * file semantics, pool full, kill -9 and SIGTERM.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import t, { type Test } from 'tap';

import { isMountPoint } from '../src/host/mounts.js';
import { Daemon, bin, cli, scratchPool, sh } from './helpers/daemon.js';

interface Setup {
  pool: string;
  mount: string;
}

function setup(t: Test, name: string, init: string[] = [], volumes: [string, string][] = [['v', '256M']]): Setup {
  const { pool, mount } = scratchPool(t, name, init);
  for (const [v, size] of volumes) if (cli(pool, 'volume', 'create', v, '--size', size).status !== 0) throw new Error(`create ${v}`);
  return { pool, mount };
}

function fio(file: string, args: string[]): { status: number; out: string } {
  const r = sh('fio', ['--name=check', `--filename=${file}`, '--ioengine=libaio', '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--verify_state_save=0', ...args]);
  return { status: r.status, out: r.stdout + r.stderr };
}

function fastPathStats(log: string): { fastReads: number; fastWrites: number } {
  const line = log.split('\n').find((l) => l.includes('stopped cleanly'));
  const stats = line ? (JSON.parse(line) as { stats: { fastReads: number; fastWrites: number } }).stats : null;
  return stats ?? { fastReads: 0, fastWrites: 0 };
}

async function stopClean(t: Test, d: Daemon): Promise<void> {
  const r = await d.stop('SIGTERM');
  t.equal(r.code, 0, 'SIGTERM: daemon exits 0');
  t.notOk(isMountPoint(d.mount), 'SIGTERM: unmounted');
  const check = cli(d.pool, 'check');
  t.equal(check.status, 0, `pool check clean: ${check.stdout}${check.stderr}`);
}

t.test('fio --verify on a block file: direct and buffered, random and sequential', async (t) => {
  const s = setup(t, 'fio');
  const d = await Daemon.start(s.pool, s.mount);
  const file = d.file('v');
  t.equal(fs.statSync(file).size, 256 << 20, 'the file has the volume size');
  for (const direct of ['1', '0']) {
    for (const [rw, bs] of [['randwrite', '4k'], ['write', '1M'], ['randrw', '16k']]) {
      const r = fio(file, [`--rw=${rw}`, `--bs=${bs}`, '--size=48M', `--direct=${direct}`, '--iodepth=8']);
      t.equal(r.status, 0, `fio ${rw} bs=${bs} direct=${direct} verifies`);
      t.match(r.out, /err= 0/, `fio ${rw} bs=${bs} direct=${direct}: no errors`);
    }
  }
  // PR_SET_IO_FLUSHER shows as PF_MEMALLOC_NOIO (0x80000) in the task flags of the FUSE threads.
  const flushers = fs.readdirSync(`/proc/${d.child.pid}/task`).filter((tid) => {
    const stat = fs.readFileSync(`/proc/${d.child.pid}/task/${tid}/stat`, 'utf8');
    const flags = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[6]);
    return (flags & 0x80000) !== 0;
  });
  const capEff = /CapEff:\s+([0-9a-f]+)/.exec(fs.readFileSync(`/proc/${d.child.pid}/status`, 'utf8'))?.[1] ?? '0';
  const capSysResource = (BigInt(`0x${capEff}`) >> 24n) & 1n;
  if (capSysResource === 1n) {
    t.ok(flushers.length >= 2, `FUSE threads are IO flushers (${flushers.length} threads)`);
  } else {
    t.equal(flushers.length, 0, 'without CAP_SYS_RESOURCE no thread is an IO flusher');
    t.match(d.log, /could not mark the serving threads PR_SET_IO_FLUSHER/, 'and the daemon says so');
  }
  await stopClean(t, d);
  const stats = fastPathStats(d.log);
  t.ok(stats.fastWrites > 0 && stats.fastReads > 0, `mapped chunks were served natively (${JSON.stringify(stats)})`);
});

t.test('loop device with ext4: mkfs, mount, fio, and fstrim frees pool chunks', async (t) => {
  const s = setup(t, 'loop');
  const d = await Daemon.start(s.pool, s.mount);
  const loop = sh('losetup', ['--direct-io=on', '-f', '--show', d.file('v')]).stdout.trim();
  t.match(loop, /^\/dev\/loop\d+$/, 'losetup --direct-io=on attaches the file');
  const fsDir = path.join(path.dirname(s.mount), 'ext4');
  fs.mkdirSync(fsDir);
  t.teardown(() => {
    sh('umount', [fsDir]);
    sh('losetup', ['-d', loop]);
  });
  t.equal(sh('mkfs.ext4', ['-q', loop]).status, 0, 'mkfs.ext4');
  t.equal(sh('mount', [loop, fsDir]).status, 0, 'mount');
  const r = fio(path.join(fsDir, 'data'), ['--rw=randwrite', '--bs=4k', '--size=32M', '--direct=1', '--iodepth=16']);
  t.equal(r.status, 0, 'fio --verify on ext4 over the loop device');
  fs.writeFileSync(path.join(fsDir, 'big'), Buffer.alloc(64 << 20, 7));
  sh('sync', []);
  const used = (): number => {
    const st = fs.statfsSync(s.mount);
    return (st.blocks - st.bfree) * st.bsize;
  };
  const before = used();
  fs.rmSync(path.join(fsDir, 'big'));
  fs.rmSync(path.join(fsDir, 'data'));
  sh('sync', []); // fstrim only sees blocks whose freeing ext4 has committed
  const trim = sh('fstrim', ['-v', fsDir]);
  t.equal(trim.status, 0, `fstrim works through the loop device: ${trim.stdout}${trim.stderr}`);
  const after = used();
  t.ok(after < before - (64 << 20), `pool usage drops after rm + fstrim: ${before} -> ${after}`);
  t.equal(sh('umount', [fsDir]).status, 0);
  t.equal(sh('losetup', ['-d', loop]).status, 0);
  await stopClean(t, d);
});

t.test('file semantics: past the end, truncate, seek data and holes, punch, snapshots read-only', async (t) => {
  const s = setup(t, 'sem', ['--chunk-size', '64K'], [['v', '16M']]);
  const d0 = await Daemon.start(s.pool, s.mount);
  const fd0 = fs.openSync(d0.file('v'), 'r+');
  fs.writeSync(fd0, Buffer.alloc(65536, 1), 0, 65536, 4 << 20);
  fs.fsyncSync(fd0);
  fs.closeSync(fd0);
  await d0.stop();
  t.equal(cli(s.pool, 'snapshot', 'create', 'v@s').status, 0);
  const d = await Daemon.start(s.pool, s.mount);
  const script = `
import os, errno, json
out = {}
f = ${JSON.stringify(d.file('v'))}
fd = os.open(f, os.O_RDWR)
out['data'] = os.lseek(fd, 0, os.SEEK_DATA)
out['hole'] = os.lseek(fd, 4 << 20, os.SEEK_HOLE)
def err(fn):
    try:
        fn(); return 0
    except OSError as e:
        return errno.errorcode[e.errno]
out['past_end'] = err(lambda: os.pwrite(fd, b'x' * 8192, (16 << 20) - 4096))
out['truncate'] = err(lambda: os.ftruncate(fd, 1 << 20))
out['same_size'] = err(lambda: os.ftruncate(fd, 16 << 20))
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
def falloc(mode, off, length):
    if libc.fallocate(fd, mode, off, length) != 0:
        raise OSError(ctypes.get_errno(), 'fallocate')
out['punch'] = err(lambda: falloc(0, 0, 4096))
out['punch_rc'] = err(lambda: falloc(3, 4 << 20, 65536))
out['after_punch'] = os.pread(fd, 16, 4 << 20).hex()
out['data_after_punch'] = err(lambda: os.lseek(fd, 0, os.SEEK_DATA))
os.pwrite(fd, b'\x02' * 8192, 8 << 20)
out['zero_rc'] = err(lambda: falloc(0x10, (8 << 20) + 1024, 2048))
out['after_zero'] = os.pread(fd, 4096, 8 << 20).hex()
out['zero_hole_rc'] = err(lambda: falloc(0x10, 12 << 20, 2 * 65536))
out['zero_hole_data'] = os.lseek(fd, (9 << 20), os.SEEK_DATA)
out['zero_hole_end'] = os.lseek(fd, 12 << 20, os.SEEK_HOLE)
out['zero_hole_reads'] = os.pread(fd, 2 * 65536, 12 << 20) == bytes(2 * 65536)
os.close(fd)
snap = ${JSON.stringify(d.file('v@s'))}
out['snap_write'] = err(lambda: os.open(snap, os.O_RDWR))
sfd = os.open(snap, os.O_RDONLY)
out['snap_data'] = os.pread(sfd, 4, 4 << 20).hex()
os.close(sfd)
print(json.dumps(out))
`;
  const r = sh('python3', ['-c', script]);
  t.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as Record<string, string | number>;
  t.equal(out.data, 4 << 20, 'SEEK_DATA finds the written chunk');
  t.equal(out.hole, (4 << 20) + 65536, 'SEEK_HOLE finds the end of it');
  t.equal(out.past_end, 'EFBIG', 'a write past the end fails');
  t.equal(out.truncate, 'EPERM', 'truncate to another size is refused');
  t.equal(out.same_size, 0, 'truncate to the same size is fine');
  t.match(String(out.punch), /^(EOPNOTSUPP|ENOTSUP)$/, 'plain preallocation is not offered (errno 95 has both names)');
  t.equal(out.punch_rc, 0, 'PUNCH_HOLE|KEEP_SIZE works');
  t.equal(out.after_punch, '00'.repeat(16), 'a punched range reads zeros');
  t.equal(out.data_after_punch, 'ENXIO', 'and holds no data any more');
  t.equal(out.zero_rc, 0, 'ZERO_RANGE works');
  t.equal(out.after_zero, `${'02'.repeat(1024)}${'00'.repeat(2048)}${'02'.repeat(1024)}`, 'exactly the zeroed range reads zeros');
  t.equal(out.zero_hole_rc, 0, 'ZERO_RANGE over unmapped chunks works');
  t.equal(out.zero_hole_data, 12 << 20, 'and maps them: SEEK_DATA finds them (ZERO_RANGE keeps space, unlike a punch)');
  t.equal(out.zero_hole_end, (12 << 20) + 2 * 65536, 'both of them');
  t.equal(out.zero_hole_reads, true, 'they read zeros');
  t.equal(out.snap_write, 'EROFS', 'snapshots open read-only');
  t.equal(out.snap_data, '01010101', 'the snapshot kept the data');
  await stopClean(t, d);
  t.equal(JSON.parse(cli(s.pool, 'volume', 'show', 'v', '--json').stdout).allocatedBytes, 3 * 65536, 'the punch freed its chunk; the zero-ranged ones stay allocated');
});

t.test('pool full: the writer gets ENOSPC and the pool stays consistent', async (t) => {
  const s = setup(t, 'full', ['--capacity', '4M'], [['v', '64M']]);
  const d = await Daemon.start(s.pool, s.mount);
  const r = sh('dd', ['if=/dev/zero', `of=${d.file('v')}`, 'bs=1M', 'count=8', 'oflag=direct', 'conv=notrunc']);
  t.not(r.status, 0, 'dd fails');
  t.match(r.stderr, /No space left on device/, 'with ENOSPC');
  await stopClean(t, d);
});

t.test('two volumes written at once', async (t) => {
  const s = setup(t, 'two', [], [['a', '128M'], ['b', '128M']]);
  const d = await Daemon.start(s.pool, s.mount);
  const run = (file: string): Promise<number> =>
    new Promise((resolve) => {
      const p = spawn('fio', ['--name=c', `--filename=${file}`, '--rw=randwrite', '--bs=4k', '--size=32M', '--direct=1', '--ioengine=libaio', '--iodepth=16', '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--verify_state_save=0'], { stdio: 'ignore', cwd: os.tmpdir() });
      p.on('exit', (code) => resolve(code ?? -1));
    });
  const codes = await Promise.all([run(d.file('a')), run(d.file('b'))]);
  t.same(codes, [0, 0], 'both fio runs verify');
  await stopClean(t, d);
});

t.test('kill -9 during fsync-ed writes: restart cleans the mount, nothing flushed is lost', async (t) => {
  const s = setup(t, 'kill9', [], [['v', '64M']]);
  const d = await Daemon.start(s.pool, s.mount);
  const writer = `
import os, sys
fd = os.open(${JSON.stringify(d.file('v'))}, os.O_RDWR)
n = 0
try:
    while True:
        n += 1
        os.pwrite(fd, n.to_bytes(4, 'little') * 1024, ((n * 7) % 4096) * 4096)
        if n % 8 == 0:
            os.fsync(fd)
            print(n, flush=True)
except OSError:
    pass
`;
  const w = spawn('python3', ['-c', writer], { stdio: ['ignore', 'pipe', 'ignore'] });
  let flushed = 0;
  // The kill comes once enough writes are fsync-ed: counted, not timed.
  const enough = new Promise<void>((resolve) => {
    w.stdout.on('data', (b: Buffer) => {
      const lines = b.toString().trim().split('\n');
      flushed = Math.max(flushed, Number(lines[lines.length - 1]));
      if (flushed >= 400) resolve();
    });
  });
  await enough;
  const killed = await d.stop('SIGKILL');
  t.equal(killed.signal, 'SIGKILL');
  await new Promise((r) => w.once('exit', r));
  t.ok(flushed > 0, `${flushed} writes were fsync-ed before the kill`);
  t.ok(isMountPoint(s.mount), 'the dead daemon left its mount behind');
  const d2 = await Daemon.start(s.pool, s.mount);
  t.match(d2.log, /detaching a mount left by an earlier daemon/);
  const data = fs.readFileSync(d2.file('v'));
  const want = new Map<number, number>();
  for (let n = 1; n <= flushed; n++) want.set((n * 7) % 4096, n);
  let bad = 0;
  for (const [block, n] of want) {
    const got = data.readUInt32LE(block * 4096);
    if (got < n || (got - n) % 4096 !== 0) bad++;
  }
  t.equal(bad, 0, 'every fsync-ed block holds its write or a later one');
  await stopClean(t, d2);
});

t.test('concurrent fsyncs of in-place writes on four volumes are data syncs the addon makes, and every one holds', async (t) => {
  const s = setup(t, 'group', [], [0, 1, 2, 3].map((w) => [`v${w}`, '4M']));
  const d = await Daemon.start(s.pool, s.mount);
  // Four writers, each on its own volume: the first pass allocates (a commit), then every write is in place.
  const writer = `
import mmap, os, sys
w = int(sys.argv[2])
fd = os.open(sys.argv[1], os.O_RDWR | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
def put(n, block):
    buf.seek(0); buf.write((w * 100000 + n).to_bytes(4, 'little') * 1024)
    os.pwritev(fd, [buf], block * 4096)
for b in range(256): put(0, b)
os.fsync(fd)
print('laid', flush=True)
sys.stdin.readline()
for n in range(1, 301):
    put(n, n % 256)
    os.fsync(fd)
print('done', flush=True)
`;
  const writers = [0, 1, 2, 3].map((w) => spawn('python3', ['-c', writer, d.file(`v${w}`), String(w)], { stdio: ['pipe', 'pipe', 'ignore'] }));
  const exits = writers.map((p) => new Promise<number | null>((resolve) => p.once('exit', (code) => resolve(code))));
  // Every writer has allocated before any starts the fsync loop: from then on no flush meets a metadata change.
  await Promise.all(writers.map((p) => new Promise<void>((resolve) => p.stdout.on('data', (b: Buffer) => (b.toString().includes('laid') ? resolve() : undefined)))));
  for (const p of writers) p.stdin.end('go\n');
  const codes = await Promise.all(exits);
  t.same(codes, [0, 0, 0, 0], 'every writer fsync-ed 300 in-place writes');
  const r = await d.stop('SIGTERM');
  t.equal(r.code, 0);
  const line = d.log.split('\n').find((l) => l.includes('stopped cleanly'));
  const stats = (JSON.parse(line ?? '{}') as { stats?: { flushes: number; fastFlushes: number; flushCommits: number } }).stats;
  // The four layout fsyncs may each commit; none of the 1200 in-place ones has a metadata change.
  t.ok(stats !== undefined && stats.flushCommits <= 4, `in-place writes needed no commit (${stats?.flushCommits} commits)`);
  t.ok(
    stats !== undefined && stats.fastFlushes >= 1000 && stats.fastFlushes + stats.flushes >= 1204,
    `the addon made the data-only ones itself, without JavaScript (${stats?.fastFlushes} of ${(stats?.fastFlushes ?? 0) + (stats?.flushes ?? 0)})`,
  );
  const d2 = await Daemon.start(s.pool, s.mount);
  let bad = 0;
  for (let w = 0; w < 4; w++) {
    const data = fs.readFileSync(d2.file(`v${w}`));
    for (let b = 0; b < 256; b++) {
      // Block b last got n = the largest n <= 300 with n % 256 == b (or 0 from the first pass).
      const last = b === 0 ? 256 : b + 256 <= 300 ? b + 256 : b;
      if (data.readUInt32LE(b * 4096) !== w * 100000 + last) bad++;
    }
  }
  t.equal(bad, 0, 'every block holds its last fsync-ed write');
  await stopClean(t, d2);
});

t.test('SIGTERM while I/O is in flight: drains, commits, unmounts, exits 0', async (t) => {
  const s = setup(t, 'term', [], [['v', '128M']]);
  const d = await Daemon.start(s.pool, s.mount);
  const f = spawn('fio', ['--name=t', `--filename=${d.file('v')}`, '--rw=randwrite', '--bs=4k', '--size=128M', '--direct=1', '--ioengine=libaio', '--iodepth=32', '--time_based', '--runtime=30'], { stdio: 'ignore', cwd: os.tmpdir() });
  const fioExit = new Promise<number | null>((resolve) => f.once('exit', (c) => resolve(c)));
  // SIGTERM once fio's writes have reached the pool (allocated bytes show in st_blocks).
  while (f.exitCode === null && fs.statSync(d.file('v')).blocks === 0) await new Promise((r) => setImmediate(r));
  t.equal(f.exitCode, null, 'fio is still writing when SIGTERM arrives');
  await stopClean(t, d);
  t.not(await fioExit, null, 'fio ended on its own once the mount went away');
});

t.test('the CLI goes through the daemon: changes show at once, grow reaches the loop device', async (t) => {
  const s = setup(t, 'admin', [], [['v', '64M']]);
  const d = await Daemon.start(s.pool, s.mount);
  t.ok(fs.existsSync(path.join(s.pool, 'cowvol.sock')), 'admin socket in the pool directory');
  t.equal((fs.statSync(path.join(s.pool, 'cowvol.sock')).mode & 0o777).toString(8), '600', 'socket is root-only');
  t.equal(cli(s.pool, 'volume', 'create', 'w', '--size', '32M').status, 0, 'create while serving');
  t.equal(fs.statSync(d.file('w')).size, 32 << 20, 'the new volume is a file at once');
  const loop = sh('losetup', ['--direct-io=on', '-f', '--show', d.file('w')]).stdout.trim();
  t.teardown(() => sh('losetup', ['-d', loop]));
  t.equal(sh('blockdev', ['--getsize64', loop]).stdout.trim(), String(32 << 20));
  t.equal(cli(s.pool, 'volume', 'grow', 'w', '--size', '96M').status, 0, 'grow while serving');
  t.equal(fs.statSync(d.file('w')).size, 96 << 20, 'the file grew at once');
  t.equal(sh('losetup', ['-c', loop]).status, 0, 'losetup -c');
  t.equal(sh('blockdev', ['--getsize64', loop]).stdout.trim(), String(96 << 20), 'the loop device sees the new size');
  t.equal(sh('losetup', ['-d', loop]).status, 0);
  const dup = cli(s.pool, 'volume', 'create', 'w', '--size', '1M');
  t.equal(dup.status, 1, 'errors come back from the daemon');
  t.equal(dup.stderr, "cowvol: 'w' already exists\n", 'with the same one line');
  t.match(cli(s.pool, 'pool', 'init').stderr, /a pool already exists/);
  t.equal(cli(s.pool, 'snapshot', 'create', 'w@s').status, 0);
  t.ok(fs.existsSync(d.file('w@s')), 'the snapshot is a file at once');
  t.equal(cli(s.pool, 'volume', 'delete', 'w').status, 0);
  t.notOk(fs.existsSync(d.file('w')), 'a deleted volume is gone at once');
  t.same(JSON.parse(cli(s.pool, 'volume', 'list', '--json').stdout).map((v: { name: string }) => v.name), ['v']);
  await stopClean(t, d);
  t.notOk(fs.existsSync(path.join(s.pool, 'cowvol.sock')), 'the socket goes with the daemon');
});

t.test('a snapshot taken during writes holds what was acknowledged before it, and nothing written after', async (t) => {
  const s = setup(t, 'snapw', ['--chunk-size', '16K'], [['v', '16M']]);
  const d = await Daemon.start(s.pool, s.mount);
  const blocks = 4096;
  // Block n goes to (n * 7) % blocks and holds n; each acknowledged write is printed.
  const writer = `
import os, sys
fd = os.open(${JSON.stringify(d.file('v'))}, os.O_RDWR | os.O_DIRECT)
import mmap
buf = mmap.mmap(-1, 4096)
n = 0
try:
    while True:
        n += 1
        buf.seek(0); buf.write(n.to_bytes(4, 'little') * 1024)
        os.pwritev(fd, [buf], ((n * 7) % ${blocks}) * 4096)
        print(n, flush=True)
except (OSError, BrokenPipeError):
    pass
`;
  const w = spawn('python3', ['-c', writer], { stdio: ['ignore', 'pipe', 'ignore'] });
  let acked = 0;
  let tail = '';
  // Waiters on the acknowledged count: the test moves on when the writer has written, never after a sleep.
  const waiters: { n: number; resolve: () => void }[] = [];
  const ackedAtLeast = (n: number): Promise<void> => (acked >= n ? Promise.resolve() : new Promise((resolve) => waiters.push({ n, resolve })));
  w.stdout.on('data', (b: Buffer) => {
    tail += b.toString();
    const lines = tail.split('\n');
    tail = lines.pop() ?? '';
    if (lines.length > 0) acked = Number(lines[lines.length - 1]);
    for (const x of waiters.splice(0)) {
      if (acked >= x.n) x.resolve();
      else waiters.push(x);
    }
  });
  await ackedAtLeast(200);
  const before = acked;
  const snap = await new Promise<number>((resolve) => {
    const p = spawn(process.execPath, [bin, 'snapshot', 'create', 'v@mid', '--pool', s.pool], { stdio: 'ignore' });
    p.on('exit', (code) => resolve(code ?? -1));
  });
  const after = acked;
  t.equal(snap, 0, 'snapshot created while writes go on');
  await ackedAtLeast(after + 200);
  const first = fs.readFileSync(d.file('v@mid'));
  await ackedAtLeast(acked + 200);
  w.kill('SIGKILL');
  await new Promise((r) => w.once('exit', r));
  t.ok(before >= 200 && acked > after, `writes went on before (${before}) and after (${after}..${acked}) the snapshot`);
  const lastBefore = new Map<number, number>();
  for (let n = 1; n <= before; n++) lastBefore.set((n * 7) % blocks, n);
  let bad = 0;
  for (let b = 0; b < blocks; b++) {
    const got = first.readUInt32LE(b * 4096);
    const floor = lastBefore.get(b) ?? 0;
    // At most one write can be in flight past what was printed.
    if (got < floor || got > after + 1 || (got !== 0 && (got * 7) % blocks !== b)) bad++;
  }
  t.equal(bad, 0, 'every block holds its last write acknowledged before the snapshot, or one that raced with it');
  t.ok(fs.readFileSync(d.file('v@mid')).equals(first), 'writes after the snapshot never show in its file');
  await stopClean(t, d);
});

t.test('serve refuses to start with one line: pool held, mount point not a directory', async (t) => {
  const s = setup(t, 'refuse', [], [['v', '16M']]);
  const d = await Daemon.start(s.pool, s.mount);
  const second = sh(process.execPath, [bin, 'serve', '--pool', s.pool, '--mount', `${s.mount}-2`]);
  t.equal(second.status, 1, 'a second daemon on the same pool exits 1');
  t.equal(second.stderr, `cowvol: pool ${s.pool} is in use by process ${d.child.pid}\n`, 'naming the holder');
  await stopClean(t, d);
  const file = path.join(path.dirname(s.mount), 'a-file');
  fs.writeFileSync(file, '');
  const r = sh(process.execPath, [bin, 'serve', '--pool', s.pool, '--mount', file]);
  t.equal(r.status, 1);
  t.equal(r.stderr, `cowvol: mount point ${file} is not a directory\n`);
  t.equal(cli(s.pool, 'volume', 'list').status, 0, 'the pool was given back');
  const bad = sh(process.execPath, [bin, 'serve', '--pool', s.pool, '--log-level', 'loud']);
  t.match(bad.stderr, /^cowvol: invalid log level 'loud'/);
});

/** Writes 4 KiB blocks with O_DIRECT at a 64 KiB stride (each into a chunk of its own), then fsyncs. */
const strideWriter = `
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
for n in range(int(sys.argv[2])):
    buf.seek(0); buf.write((n + 1).to_bytes(4, 'little') * 1024)
    os.pwritev(fd, [buf], n * 65536)
os.fsync(fd)
`;

function strideHolds(data: Buffer, count: number): number {
  let bad = 0;
  for (let n = 0; n < count; n++) if (data.readUInt32LE(n * 65536) !== n + 1 || data.readUInt32LE(n * 65536 + 4092) !== n + 1) bad++;
  return bad;
}

t.test('first writes into holes are served by the addon from reserved chunks, folded into the map, and durable at fsync', async (t) => {
  const s = setup(t, 'first', [], [['v', '128M']]);
  const d = await Daemon.start(s.pool, s.mount);
  const count = 1500;
  t.equal(sh('python3', ['-c', strideWriter, d.file('v'), String(count)]).status, 0, `${count} first writes, then fsync`);
  // The fsync made them durable: a kill now must lose none.
  await d.stop('SIGKILL');
  const d2 = await Daemon.start(s.pool, s.mount);
  t.equal(strideHolds(fs.readFileSync(d2.file('v')), count), 0, 'after SIGKILL, every block written before the fsync is there');
  const info = JSON.parse(cli(s.pool, 'volume', 'list', '--json').stdout) as { name: string; allocatedBytes: number }[];
  t.equal(info.find((v) => v.name === 'v')?.allocatedBytes, count * 65536, 'each first write took exactly one chunk');
  // Again into the next chunks, stopped cleanly without an fsync of its own: the stop folds and commits them.
  t.equal(sh('python3', ['-c', strideWriter.replace('os.fsync(fd)', ''), d2.file('v'), String(count + 200)]).status, 0);
  const r = await d2.stop('SIGTERM');
  t.equal(r.code, 0);
  const stats = (JSON.parse(d2.log.split('\n').find((l) => l.includes('stopped cleanly')) ?? '{}') as { stats?: { firstWrites: number; slowRequests: number } }).stats;
  t.ok(stats !== undefined && stats.firstWrites >= 150, `the addon served the new first writes (${stats?.firstWrites} of 200)`);
  const d3 = await Daemon.start(s.pool, s.mount);
  t.equal(strideHolds(fs.readFileSync(d3.file('v')), count + 200), 0, 'after a clean stop, every block is there');
  await stopClean(t, d3);
});

t.test('through a loop device, write-zeroes keeps the range mapped and discard unmaps it', async (t) => {
  const s = setup(t, 'zeroes');
  const d = await Daemon.start(s.pool, s.mount);
  const loop = sh('losetup', ['--direct-io=on', '-f', '--show', d.file('v')]).stdout.trim();
  t.teardown(() => sh('losetup', ['-d', loop]));
  const mapped = `
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
at, total = 0, 0
for _ in range(100000):
    try:
        start = os.lseek(fd, at, os.SEEK_DATA)
    except OSError:
        break
    at = os.lseek(fd, start, os.SEEK_HOLE)
    total += at - start
print(total)
`;
  const bytes = (): number => Number(sh('python3', ['-c', mapped, d.file('v')]).stdout.trim());
  t.equal(sh('dd', ['if=/dev/urandom', `of=${loop}`, 'bs=1M', 'count=4', 'oflag=direct', 'status=none']).status, 0, 'write 4 MiB');
  // blkdiscard -z is BLKZEROOUT: the loop device sends it as FALLOC_FL_ZERO_RANGE (REQ_NOUNMAP).
  t.equal(sh('blkdiscard', ['-z', '-o', String(2 << 20), '-l', String(8 << 20), loop]).status, 0, 'blkdiscard -z over written and unwritten space');
  t.equal(bytes(), 10 << 20, 'the zeroed range stays mapped, the 6 MiB never written included');
  const head = sh('python3', ['-c', `import sys; f = open(sys.argv[1], 'rb'); f.seek(2 << 20); sys.stdout.write(str(f.read(8 << 20) == bytes(8 << 20)))`, loop]).stdout;
  t.equal(head, 'True', 'and reads zeros');
  t.equal(sh('blkdiscard', ['-o', '0', '-l', String(6 << 20), loop]).status, 0, 'blkdiscard');
  t.equal(bytes(), 4 << 20, 'a discard unmaps');
  t.equal(sh('losetup', ['-d', loop]).status, 0);
  await stopClean(t, d);
});
