/**
 * The native data path of a cowfs mount (src/fuse/file-chunks.ts,
 * native/src/fs_ops.c): once JavaScript has served a whole chunk of a file,
 * the addon reads and writes it in place itself. Each case checks that it
 * does (the mount's counters) and that what it serves stays right: the
 * times a stat shows, a snapshot taken after native writes, a reflink, a
 * truncate followed by a write past the new end, a table too small for
 * the file, the kernel's capability question before each write, getattrs
 * after writes (native ones, and ones JavaScript served), and fdatasyncs made natively only while nothing the file
 * needs waits for a commit, whatever other files do.
 *
 * In one process: the test serves the mount on its event loop, so every
 * access to the mount is asynchronous (fs.promises, child processes).
 */
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';

import t, { type Test } from 'tap';

import { checkPool } from '../src/blockstore/check.js';
import { PoolDir } from '../src/blockstore/pool-dir.js';
import type { Pool } from '../src/blockstore/pool.js';
import { Filesystem } from '../src/cowfs/filesystem.js';
import { allReleased, serveInProcess, slowRequestsReach } from './helpers/cowfs.js';
import { tmpDir } from './helpers/pools.js';
import { Talker } from './helpers/talker.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const CHUNK = 64 * KiB;
const run = promisify(execFile);

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7 + (i >> 12)) & 0xff;
  return b;
}

/** pwrite through a descriptor of its own: its close writes the kernel's dirty pages back, so the write reaches the mount. */
async function pwrite(file: string, at: number, data: Buffer): Promise<void> {
  const fh = await fs.promises.open(file, 'r+');
  try {
    await fh.write(data, 0, data.length, at);
  } finally {
    await fh.close();
  }
}

/** O_DIRECT, so the read reaches the mount instead of the kernel's page cache (which an open keeps). */
async function pread(file: string, at: number, n: number): Promise<Buffer> {
  const fh = await fs.promises.open(file, fs.constants.O_RDONLY | fs.constants.O_DIRECT);
  try {
    const b = Buffer.alloc(n);
    const { bytesRead } = await fh.read(b, 0, n, at);
    return b.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** A process that opens `file` (Python flags), runs `writes` on `fd`, fdatasyncs, says "synced", and closes when asked ("closed"). */
function syncedWriter(t: Test, file: string, flags: string, writes: string): Talker {
  return new Talker(t, `
import os, sys
fd = os.open(sys.argv[1], ${flags})
${writes}
os.fdatasync(fd)
print("synced", flush=True)
sys.stdin.readline()
os.close(fd)
print("closed", flush=True)
`, file);
}

/** What a kill -9 now would leave: the mount's pool files as they are, copied and opened; close() removes the copy. */
function copyOfPool(mountDir: string): { pool: Pool; close(): void } {
  const copy = tmpDir('data-path-copy');
  const pool = path.join(path.dirname(mountDir), 'pool');
  for (const name of ['cowvol.meta', 'cowvol.data']) fs.copyFileSync(path.join(pool, name), path.join(copy, name));
  const opened = PoolDir.open(copy);
  return {
    pool: opened.pool,
    close() {
      opened.close();
      fs.rmSync(copy, { recursive: true, force: true });
    },
  };
}

t.test('whole chunks are read and written natively, and a stat shows the new mtime', async (t) => {
  const s = await serveInProcess(t, 'data-path');
  const file = path.join(s.dir, 'f');
  const a = pattern(MiB, 1);
  await fs.promises.writeFile(file, a);
  const before = s.mount.stats();
  t.same(await pread(file, 0, MiB), a, 'the file reads back');
  const afterRead = s.mount.stats();
  t.ok(afterRead.fastReads > before.fastReads, 'reads of chunks JavaScript wrote were served natively');

  const m0 = (await fs.promises.stat(file, { bigint: true })).mtimeNs;
  const b = pattern(4 * KiB, 2);
  await pwrite(file, CHUNK + 100, b);
  t.ok(s.mount.stats().fastWrites > afterRead.fastWrites, 'an overwrite inside the file was served natively');
  const st = await fs.promises.stat(file, { bigint: true });
  t.ok(st.mtimeNs > m0, 'the mtime moved with a native write');
  t.ok(st.ctimeNs >= st.mtimeNs, 'so did the ctime');
  t.equal(st.size, BigInt(MiB), 'the size did not change');
  const expect = Buffer.from(a);
  b.copy(expect, CHUNK + 100);
  t.same(await fs.promises.readFile(file), expect, 'the mount reads the native write');
  const ino = Number(st.ino);
  t.same(s.mount.fs.read(ino, 0, MiB), expect, 'the pool holds it too');
});

t.test('a snapshot after native writes holds them, with their mtime; later writes do not reach it', async (t) => {
  const s = await serveInProcess(t, 'data-path');
  const file = path.join(s.dir, 'f');
  await fs.promises.writeFile(file, pattern(4 * CHUNK, 3));
  await pread(file, 0, 4 * CHUNK);
  const b = pattern(CHUNK, 4);
  const fast = s.mount.stats().fastWrites;
  await pwrite(file, CHUNK, b);
  t.ok(s.mount.stats().fastWrites > fast, 'the write before the snapshot was native');
  s.volumes.createSnapshot('v@s');
  const st = await fs.promises.stat(file, { bigint: true });

  await pwrite(file, CHUNK, pattern(CHUNK, 5));
  t.same(await pread(file, CHUNK, CHUNK), pattern(CHUNK, 5), 'the volume has the write after the snapshot');
  const snap = new Filesystem(s.handle.pool, s.handle.pool.stat('v@s').id);
  const ino = Number(st.ino);
  t.same(snap.read(ino, CHUNK, CHUNK), b, 'the snapshot has the native write made before it, and not the one after');
  const inode = snap.getattr(ino);
  t.equal(BigInt(inode.mtime.sec) * 1_000_000_000n + BigInt(inode.mtime.nsec), st.mtimeNs, 'the snapshot has the mtime the stat showed');
});

t.test('after a reflink, a write to the source reaches neither the copy nor the shared chunk', async (t) => {
  const s = await serveInProcess(t, 'data-path');
  const a = path.join(s.dir, 'a');
  const b = path.join(s.dir, 'b');
  await fs.promises.writeFile(a, pattern(4 * CHUNK, 6));
  await pread(a, 0, 4 * CHUNK);
  await run('python3', ['-c', `
import os
a = os.open(${JSON.stringify(a)}, os.O_RDONLY)
b = os.open(${JSON.stringify(b)}, os.O_WRONLY | os.O_CREAT, 0o644)
assert os.copy_file_range(a, b, ${4 * CHUNK}) == ${4 * CHUNK}
`]);
  await pwrite(a, 0, pattern(CHUNK, 7));
  t.same(await pread(a, 0, CHUNK), pattern(CHUNK, 7), 'the source has the write');
  t.same(await pread(b, 0, 4 * CHUNK), pattern(4 * CHUNK, 6), 'the copy keeps what was copied');
});

t.test('a write into a chunk a snapshot shares is copied by the addon; an fdatasync commits the copy, and the snapshot keeps the old bytes', async (t) => {
  const s = await serveInProcess(t, 'data-path', { stampMs: 3_600_000 });
  const file = path.join(s.dir, 'f');
  const a = pattern(4 * CHUNK, 11);
  await fs.promises.writeFile(file, a);
  const ino = (await fs.promises.stat(file)).ino;
  s.volumes.createSnapshot('v@s');
  t.same(await pread(file, 0, 4 * CHUNK), a, 'the file reads back after the snapshot (JavaScript enters its chunks, shared now)');
  const before = s.mount.stats();
  // Two writes into one shared chunk, whole pages so the kernel reads nothing first.
  const child = syncedWriter(t, file, 'os.O_WRONLY', `os.pwrite(fd, b"b" * 8192, ${CHUNK + 4096})\nos.pwrite(fd, b"c" * 4096, ${CHUNK + 32768})`);
  t.equal(await child.line(), 'synced');
  const after = s.mount.stats();
  t.equal(after.cowBreaks - before.cowBreaks, 1, 'the addon broke the shared chunk once: the second write found its copy writable');
  t.ok(after.fastWrites > before.fastWrites, 'and served the writes itself');
  const expect = Buffer.from(a);
  expect.fill('b', CHUNK + 4096, CHUNK + 12288);
  expect.fill('c', CHUNK + 32768, CHUNK + 36864);
  const again = copyOfPool(s.dir);
  t.equal(await child.ask(''), 'closed');
  try {
    t.same(new Filesystem(again.pool, again.pool.stat('v').id).read(ino, 0, 4 * CHUNK), expect, 'the fdatasync committed the copy with the writes');
    t.same(new Filesystem(again.pool, again.pool.stat('v@s').id).read(ino, 0, 4 * CHUNK), a, 'and the snapshot kept the chunk it shared');
    t.same(checkPool(again.pool).problems, [], 'the copy checks clean: the old chunk is held by the snapshot alone');
  } finally {
    again.close();
  }
  t.same(await fs.promises.readFile(file), expect, 'the mount reads the writes');
});

t.test('after a snapshot the chunks the table held are entered again: a write into one is copied by the addon, with nothing read first', async (t) => {
  const s = await serveInProcess(t, 'data-path', { stampMs: 3_600_000 });
  const file = path.join(s.dir, 'f');
  const a = pattern(4 * CHUNK, 13);
  await fs.promises.writeFile(file, a);
  t.same(await pread(file, 0, 4 * CHUNK), a, 'read once: the table holds the chunks');
  s.volumes.createSnapshot('v@s');
  // The fork took them back; they are entered again on the next turn of the event loop.
  await new Promise((resolve) => setImmediate(resolve));
  const before = s.mount.stats();
  const fh = await fs.promises.open(file, fs.constants.O_RDWR | fs.constants.O_DIRECT);
  try {
    await fh.write(Buffer.alloc(4 * KiB, 'd'), 0, 4 * KiB, 2 * CHUNK);
  } finally {
    await fh.close();
  }
  const after = s.mount.stats();
  t.equal(after.cowBreaks - before.cowBreaks, 1, 'the addon broke the shared chunk');
  t.equal(after.fastWrites - before.fastWrites, 1, 'and served the write');
  const expect = Buffer.from(a).fill('d', 2 * CHUNK, 2 * CHUNK + 4 * KiB);
  t.same(await pread(file, 0, 4 * CHUNK), expect, 'the file reads the write');
  const ino = (await fs.promises.stat(file)).ino;
  t.same(new Filesystem(s.handle.pool, s.handle.pool.stat('v@s').id).read(ino, 0, 4 * CHUNK), a, 'the snapshot does not');
});

t.test('appends into a shared chunk holding the end: the addon copies it, and every append after the copy still moves the size', async (t) => {
  const s = await serveInProcess(t, 'data-path', { stampMs: 3_600_000 });
  const file = path.join(s.dir, 'f');
  const a = pattern(CHUNK + 1000, 15);
  await fs.promises.writeFile(file, a);
  s.volumes.createSnapshot('v@s');
  // A fresh table: JavaScript serves the next write, then enters the chunk holding the end, which the snapshot shares.
  await s.remount();
  await pwrite(file, 0, Buffer.alloc(4 * KiB, 'p'));
  const before = s.mount.stats();
  // Two appends, each written back by its own fsync.
  await run('python3', ['-c', `
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
os.pwrite(fd, b"x" * 100, ${CHUNK + 1000})
os.fsync(fd)
os.pwrite(fd, b"y" * 100, ${CHUNK + 1100})
os.fsync(fd)
os.close(fd)
`, file]);
  const after = s.mount.stats();
  t.equal(after.cowBreaks - before.cowBreaks, 1, 'the first append copied the shared chunk');
  t.equal(after.fastWrites - before.fastWrites, 2, 'both appends were the addon\'s');
  // A new mount knows only what the tree says.
  await s.remount();
  const expect = Buffer.concat([a, Buffer.alloc(100, 'x'), Buffer.alloc(100, 'y')]).fill('p', 0, 4 * KiB);
  t.equal((await fs.promises.stat(file)).size, CHUNK + 1200, 'the size reaches the end of the second append');
  t.same(await fs.promises.readFile(file), expect, 'and the file reads both');
});

t.test('a write past a truncated end goes to JavaScript, which moves the size', async (t) => {
  const s = await serveInProcess(t, 'data-path');
  const file = path.join(s.dir, 'f');
  await fs.promises.writeFile(file, pattern(4 * CHUNK, 8));
  await pread(file, 0, 4 * CHUNK);
  await fs.promises.truncate(file, CHUNK + 100);
  await pwrite(file, CHUNK + 200, Buffer.from('tail'));
  const st = await fs.promises.stat(file);
  t.equal(st.size, CHUNK + 204, 'the size covers the write');
  const back = await fs.promises.readFile(file);
  t.same(back.subarray(0, CHUNK + 100), pattern(4 * CHUNK, 8).subarray(0, CHUNK + 100), 'the kept bytes');
  t.same(back.subarray(CHUNK + 100, CHUNK + 200), Buffer.alloc(100), 'zeros between the old end and the write');
  t.equal(back.subarray(CHUNK + 200).toString(), 'tail');
});

t.test('a table smaller than the file serves it right, evicting as it goes', async (t) => {
  const s = await serveInProcess(t, 'data-path', { tableSlots: 16 });
  const file = path.join(s.dir, 'f');
  const data = pattern(64 * CHUNK, 9);
  await fs.promises.writeFile(file, data);
  for (let round = 0; round < 2; round++) t.same(await fs.promises.readFile(file), data, `read ${round}`);
  for (let c = 0; c < 64; c += 3) await pwrite(file, c * CHUNK, pattern(512, c));
  const expect = Buffer.from(data);
  for (let c = 0; c < 64; c += 3) pattern(512, c).copy(expect, c * CHUNK);
  t.same(await fs.promises.readFile(file), expect, 'every write landed in its own chunk');
  await pread(file, 60 * CHUNK, 2 * CHUNK);
  const fast = s.mount.stats().fastReads;
  t.same(await pread(file, 60 * CHUNK, 2 * CHUNK), expect.subarray(60 * CHUNK, 62 * CHUNK), 'a range read again');
  t.ok(s.mount.stats().fastReads > fast, 'was read natively the second time');
});

t.test('a file as large as the table fits in it whole: a second pass reads every chunk natively', async (t) => {
  // 64 entries are 8 buckets of 8 ways; spread at random, 64 chunks overflow some buckets and those reads go to JavaScript.
  const s = await serveInProcess(t, 'data-path', { tableSlots: 64 });
  const file = path.join(s.dir, 'f');
  const data = pattern(64 * CHUNK, 12);
  await fs.promises.writeFile(file, data);
  // A fresh table: JavaScript serves each chunk's first read and hands the chunk over.
  await s.remount();
  for (let c = 0; c < 64; c++) await pread(file, c * CHUNK, CHUNK);
  const fh = await fs.promises.open(file, fs.constants.O_RDONLY | fs.constants.O_DIRECT);
  const before = s.mount.stats();
  // The last chunk holds the file's end, whose reads JavaScript clips: all but it.
  for (let c = 0; c < 63; c++) {
    const b = Buffer.alloc(CHUNK);
    await fh.read(b, 0, CHUNK, c * CHUNK);
    if (!b.equals(data.subarray(c * CHUNK, (c + 1) * CHUNK))) t.fail(`chunk ${c} read back wrong`);
  }
  const after = s.mount.stats();
  await fh.close();
  t.equal(after.slowRequests - before.slowRequests, 0, 'no read went to JavaScript');
  t.equal(after.fastReads - before.fastReads, 63, 'the addon served all 63');
});

t.test('a write asks nothing of JavaScript for file capabilities, and still drops one that was set', async (t) => {
  const s = await serveInProcess(t, 'data-path');
  const file = path.join(s.dir, 'f');
  await fs.promises.writeFile(file, pattern(2 * CHUNK, 10));
  await fs.promises.chmod(file, 0o666);
  await pread(file, 0, 2 * CHUNK);
  const fh = await fs.promises.open(file, 'r+');
  await fh.write(pattern(4 * KiB, 11), 0, 4 * KiB, 0);
  await allReleased(s.mount, 1);
  const slow = s.mount.stats().slowRequests;
  for (let i = 1; i <= 8; i++) await fh.write(pattern(4 * KiB, 11 + i), 0, 4 * KiB, i * 4 * KiB);
  t.equal(s.mount.stats().slowRequests, slow, 'eight overwrites made no request of JavaScript (no getxattr of security.capability)');
  await fh.close();
  // A file capability (v2: revision 2, cap_net_raw permitted), then a write by an unprivileged user: the kernel removes it, as on ext4.
  const out = await run('python3', ['-c', `
import os, struct, sys
f = sys.argv[1]
os.setxattr(f, "security.capability", struct.pack("<IIIII", 0x02000000, 1 << 13, 0, 0, 0))
print(len(os.getxattr(f, "security.capability")))
pid = os.fork()
if pid == 0:
    os.setgid(65534)
    os.setuid(65534)
    with open(f, "r+b") as w:
        w.write(b"x")
    os._exit(0)
assert os.waitpid(pid, 0)[1] == 0
try:
    os.getxattr(f, "security.capability")
    print("kept")
except OSError as e:
    print(e.errno == 61 and "dropped" or e)
`, file]);
  t.same(out.stdout.trim().split('\n'), ['20', 'dropped'], 'the capability was set, and a write by another user dropped it');
});

t.test('fdatasyncs after native overwrites are made by the addon; a change sends the next to a commit; fsyncs commit', async (t) => {
  // No stamping on a timer here, so the counts below are the test's own requests' alone.
  const s = await serveInProcess(t, 'data-path', { stampMs: 3_600_000 });
  const file = path.join(s.dir, 'f');
  await fs.promises.writeFile(file, pattern(2 * CHUNK, 12));
  await pread(file, 0, 2 * CHUNK);
  const sync = async (call: string): Promise<void> => {
    await run('python3', ['-c', `
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
for at in [8192, 16384, 24576]:
    os.pwrite(fd, b"z" * 4096, at)
    os.${call}(fd)
os.close(fd)
`, file]);
  };
  const counts = (): number[] => {
    const f = s.handle.pool.flushStats();
    return [s.mount.stats().fastFlushes, f.commits, f.dataSyncs];
  };
  await sync('fsync');
  const [fast0, commits0, data0] = counts();
  const fast = s.mount.stats().fastWrites;
  await sync('fdatasync');
  t.ok(s.mount.stats().fastWrites > fast, 'the overwrites were native');
  t.same(counts(), [(fast0 ?? 0) + 3, commits0, data0], 'three fdatasyncs in a row: three made by the addon, no commit');
  // fsyncs stamp what the fdatasyncs left noted; then a truncate changes the size, in JavaScript,
  // with no time to stamp: the fdatasync after it must commit it all the same.
  await sync('fsync');
  const [fastBefore, commitsBefore] = counts();
  const writesBefore = s.mount.stats().fastWrites;
  await run('python3', ['-c', `
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
os.ftruncate(fd, ${12 * CHUNK + 4096})
os.pread(fd, 4096, 16384)  # the truncate dropped the file's table entries: this read brings them back
for at in [16384, 24576, 32768]:
    os.pwrite(fd, b"y" * 4096, at)
    os.fdatasync(fd)
os.close(fd)
`, file]);
  const [fast1, commits1] = counts();
  t.equal(commits1, (commitsBefore ?? 0) + 1, 'after a size change, an fdatasync committed');
  t.equal(fast1, (fastBefore ?? 0) + 2, 'and the ones after it were the addon\'s again');
  t.equal(s.mount.stats().fastWrites - writesBefore, 3, 'the overwrites after the truncate were native');
  await sync('fsync');
  // The kernel keeps the times at its clock tick: writes within one tick leave the mtime, and their fsync nothing to commit.
  const committed = (counts()[1] ?? 0) - (commits1 ?? 0);
  t.ok(committed >= 1 && committed <= 3, `the fsyncs committed the new mtime (${committed} of 3 had a new one)`);
  const st = await fs.promises.stat(file, { bigint: true });
  const inode = s.mount.fs.getattr(Number(st.ino));
  t.equal(BigInt(inode.mtime.sec) * 1_000_000_000n + BigInt(inode.mtime.nsec), st.mtimeNs, 'the pool holds the mtime the kernel shows');
  t.equal(st.size, BigInt(12 * CHUNK + 4096), 'the size the truncate made');
});

t.test('buffered writes and the stats between them stay in the kernel; the close writes them back natively, with the kernel\'s times', async (t) => {
  const s = await serveInProcess(t, 'data-path', { stampMs: 3_600_000 });
  const file = path.join(s.dir, 'f');
  await fs.promises.writeFile(file, pattern(2 * CHUNK, 13));
  await pread(file, 0, 2 * CHUNK);
  // The child waits on its stdin between phases, so the counters are read with nothing in flight.
  const child = spawn('python3', ['-c', `
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
os.pwrite(fd, b"a" * 4096, 0)
times = [os.fstat(fd).st_mtime_ns]
print("ready", flush=True)
sys.stdin.readline()
for i in range(5):
    os.pwrite(fd, b"b" * 4096, 4096 * (i + 1))
    times.append(os.fstat(fd).st_mtime_ns)
print(" ".join(str(x) for x in times), flush=True)
sys.stdin.readline()
os.close(fd)
print("closed", flush=True)
`, file]);
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  t.equal((await lines.next()).value, 'ready');
  const before = s.mount.stats();
  child.stdin.write('\n');
  const times = String((await lines.next()).value).split(' ').map(BigInt);
  const after = s.mount.stats();
  t.same(after, before, 'five writes and five stats: none reached the mount');
  t.ok(times.every((x, i) => i === 0 || x >= (times[i - 1] as bigint)), 'the stats showed the kernel\'s mtime, never going back');
  child.stdin.end('\n');
  t.equal((await lines.next()).value, 'closed');
  await new Promise((resolve) => child.once('exit', resolve));
  t.ok(s.mount.stats().fastWrites > after.fastWrites, 'the close wrote the pages back natively');
  const released = await slowRequestsReach(s.mount, after.slowRequests + 1);
  t.equal(released - after.slowRequests, 1, 'and answered the kernel\'s times natively: only the release reached JavaScript');
  // Anything JavaScript serves puts the times the addon answered into the tree first.
  await fs.promises.readdir(s.dir);
  const st = await fs.promises.stat(file, { bigint: true });
  const ino = Number(st.ino);
  const inode = s.mount.fs.getattr(ino);
  t.equal(BigInt(inode.mtime.sec) * 1_000_000_000n + BigInt(inode.mtime.nsec), times[times.length - 1], 'the pool keeps the mtime the stats showed, once anything reached JavaScript');
  const expect = pattern(2 * CHUNK, 13);
  expect.fill('a', 0, 4096);
  expect.fill('b', 4096, 6 * 4096);
  t.same(s.mount.fs.read(ino, 0, 2 * CHUNK), expect, 'and the pages');
  t.equal(s.mount.fs.getattr(ino).ctime.sec, Number(st.ctimeNs / 1_000_000_000n), 'and the ctime');
});

t.test('a growing file\'s writes and stats stay in the kernel until a flush, which brings the size', async (t) => {
  const s = await serveInProcess(t, 'data-path', { stampMs: 3_600_000 });
  const file = path.join(s.dir, 'grows');
  // Each 'grow' extends the file by a page at its end, then fstats it; 'sync' fdatasyncs it.
  const grower = new Talker(t, `
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
size = 0
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() == "sync":
        os.fdatasync(fd)
        print("synced", flush=True)
        continue
    os.pwrite(fd, b"g" * 4096, size)
    size += 4096
    print(size, os.fstat(fd).st_size, flush=True)
`, file);
  t.equal(await grower.line(), 'ready');
  // The first write also answers the kernel's capability question.
  t.equal(await grower.ask('grow'), '4096 4096');
  const before = s.mount.stats();
  for (let i = 2; i <= 6; i++) t.equal(await grower.ask('grow'), `${i * 4096} ${i * 4096}`, `the stat after growing to ${i} pages showed it`);
  t.same(s.mount.stats(), before, 'nothing reached the mount: the kernel holds the pages and the size');
  t.equal(await grower.ask('sync'), 'synced');
  t.equal(s.mount.fs.getattr(Number((await fs.promises.stat(file)).ino)).size, 6 * 4096, 'an fdatasync brought the size to the pool');
  const { code } = await grower.end();
  t.equal(code, 0);
  t.equal((await fs.promises.stat(file)).size, 6 * 4096, 'the size the mount shows');
});

t.test('an fdatasync waits for a commit only for changes to its own file\'s size or chunks', async (t) => {
  const s = await serveInProcess(t, 'data-path', { stampMs: 3_600_000 });
  const wal = path.join(s.dir, 'wal');
  const other = path.join(s.dir, 'other');
  await fs.promises.writeFile(wal, pattern(2 * CHUNK, 21));
  await pread(wal, 0, 2 * CHUNK);
  // Like a database's log: overwrites in place, each followed by an fdatasync.
  const log = new Talker(t, `
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
print("ready", flush=True)
for line in sys.stdin:
    os.pwrite(fd, b"w" * 4096, 8192)
    os.fdatasync(fd)
    print("synced", flush=True)
`, wal);
  t.equal(await log.line(), 'ready');
  const counts = (): { fast: number; commits: number } => ({ fast: s.mount.stats().fastFlushes, commits: s.handle.pool.flushStats().commits });
  // The first one commits what the setup left (the file's creation).
  t.equal(await log.ask('w'), 'synced');
  let before = counts();
  t.equal(await log.ask('w'), 'synced');
  t.same(counts(), { fast: before.fast + 1, commits: before.commits }, 'a data sync of a file nothing changed is the addon\'s');

  await fs.promises.writeFile(other, pattern(3 * 4096, 22));
  before = counts();
  t.equal(await log.ask('w'), 'synced');
  t.same(counts(), { fast: before.fast + 1, commits: before.commits }, 'so it stays while another file is made and grows, uncommitted');

  const fh = await fs.promises.open(other, 'r+');
  await fh.write(pattern(4096, 23), 0, 4096, 3 * 4096);
  before = counts();
  await fh.datasync();
  await fh.close();
  t.same(counts(), { fast: before.fast, commits: before.commits + 1 }, 'the grown file\'s own fdatasync commits (its new size)');

  before = counts();
  t.equal(await log.ask('w'), 'synced');
  t.same(counts(), { fast: before.fast + 1, commits: before.commits }, 'and the log\'s stays the addon\'s');

  await fs.promises.rename(other, path.join(s.dir, 'renamed'));
  before = counts();
  t.equal(await log.ask('w'), 'synced');
  t.same(counts(), { fast: before.fast + 1, commits: before.commits }, 'a rename changes names, not the log: still the addon\'s');

  // copy_file_range into the log from another file changes the log's chunks, in JavaScript.
  await run('python3', ['-c', `
import os, sys
src = os.open(sys.argv[1], os.O_RDONLY)
dst = os.open(sys.argv[2], os.O_WRONLY)
os.copy_file_range(src, dst, 4096, 0, 4 * 4096)
`, path.join(s.dir, 'renamed'), wal]);
  before = counts();
  t.equal(await log.ask('w'), 'synced');
  t.same(counts(), { fast: before.fast, commits: before.commits + 1 }, 'a copy into the log sends its next data sync to a commit');
  before = counts();
  t.equal(await log.ask('w'), 'synced');
  t.same(counts(), { fast: before.fast + 1, commits: before.commits }, 'and once committed, the addon makes them again');
  t.equal((await log.end()).code, 0);
  const expect = pattern(2 * CHUNK, 21);
  pattern(3 * 4096, 22).copy(expect, 4 * 4096, 0, 4096);
  expect.fill('w', 8192, 8192 + 4096);
  t.same(await pread(wal, 0, 2 * CHUNK), expect, 'the log reads back');
});

t.test('names, missing names and attributes stay cached in the kernel: every change comes through the mount', async (t) => {
  const s = await serveInProcess(t, 'data-path', { stampMs: 3_600_000 });
  const names = Array.from({ length: 20 }, (_, i) => path.join(s.dir, `f${i}`));
  for (const [i, f] of names.entries()) await fs.promises.writeFile(f, pattern(100 + i, i));
  for (const f of names) await fs.promises.stat(f);
  // Longer than a timeout of one second (the C passthrough's, and ours before): this test is about time passing.
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const before = s.mount.stats().slowRequests;
  const sizes = await Promise.all(names.map(async (f) => (await fs.promises.stat(f)).size));
  t.same(sizes, names.map((_, i) => 100 + i), 'every stat showed the file\'s size');
  t.equal(s.mount.stats().slowRequests, before, 'and none of them, nor their lookups, reached the daemon');
  // A name that is not there is remembered too, until a request through the mount makes it.
  const missing = path.join(s.dir, 'missing');
  await t.rejects(fs.promises.stat(missing), { code: 'ENOENT' });
  const afterMiss = s.mount.stats().slowRequests;
  for (let i = 0; i < 5; i++) await t.rejects(fs.promises.stat(missing), { code: 'ENOENT' });
  t.equal(s.mount.stats().slowRequests, afterMiss, 'a name looked up and not found is not asked for again');
  await fs.promises.writeFile(missing, 'here');
  t.equal(await fs.promises.readFile(missing, 'utf8'), 'here', 'and once made, it is there');
  await fs.promises.rename(missing, path.join(s.dir, 'moved'));
  await t.rejects(fs.promises.stat(missing), { code: 'ENOENT' }, 'a rename takes the old name away');
  t.equal((await fs.promises.stat(path.join(s.dir, 'moved'))).size, 4, 'and the new one has the file');
  await fs.promises.chmod(names[0] as string, 0o600);
  await fs.promises.unlink(names[1] as string);
  t.equal((await fs.promises.stat(names[0] as string)).mode & 0o777, 0o600, 'a change through the mount shows at once');
  await t.rejects(fs.promises.stat(names[1] as string), { code: 'ENOENT' }, 'so does an unlink');
});

t.test('a create or unlink answers with its directory\'s attributes: the kernel\'s next look at the directory stays native', async (t) => {
  const s = await serveInProcess(t, 'data-path', { stampMs: 3_600_000 });
  const dir = path.join(s.dir, 'd');
  await fs.promises.mkdir(dir);
  // Each command does one change and then stats the directory (the kernel dropped what it held of it).
  const walker = new Talker(t, `
import os, sys
d = sys.argv[1]
held = None
print("ready", flush=True)
for line in sys.stdin:
    cmd, name = line.split()
    p = os.path.join(d, name)
    if cmd == "create":
        os.close(os.open(p, os.O_WRONLY | os.O_CREAT, 0o644))
    elif cmd == "mkdir":
        os.mkdir(p)
    elif cmd == "hold":
        held = os.open(p, os.O_RDWR)
        os.write(held, b"h" * 100)
        print(os.fstat(held).st_nlink, flush=True)
        continue
    elif cmd == "unlink":
        os.unlink(p)
    elif cmd == "rmdir":
        os.rmdir(p)
    elif cmd == "held":
        print(os.fstat(held).st_nlink, os.fstat(held).st_size, flush=True)
        continue
    st = os.stat(d)
    print(st.st_nlink, st.st_mtime_ns, flush=True)
`, dir);
  t.equal(await walker.line(), 'ready');
  // `expect` is how many requests the step should hand to JavaScript: the count is read once that many came (a
  // create's release comes after its close returned), so one more than expected still shows.
  const step = async (cmd: string, expect = 1): Promise<{ nlink: number; mtime: bigint; slow: number }> => {
    const before = s.mount.stats().slowRequests;
    const [nlink, mtime] = (await walker.ask(cmd)).split(' ');
    return { nlink: Number(nlink), mtime: BigInt(mtime ?? '0'), slow: (await slowRequestsReach(s.mount, before + expect)) - before };
  };
  let last = await step('create a', 2);
  for (const name of ['b', 'c', 'e']) {
    const now = await step(`create ${name}`, 2);
    // The lookup before it is the addon's too: the directory was made in the mount (name_filter.c).
    t.equal(now.slow, 2, `create ${name}: its create and release reached JavaScript, the directory's stat did not`);
    t.ok(now.mtime > last.mtime, 'and the stat showed the directory\'s new mtime');
    last = now;
  }
  const made = await step('mkdir sub');
  t.equal(made.nlink, 3, 'a mkdir shows in the directory\'s link count at once');
  const removed = await step('rmdir sub');
  t.equal(removed.nlink, 2, 'so does an rmdir');
  t.equal(removed.slow, 1, 'and only the rmdir itself reached JavaScript');
  const unlinked = await step('unlink b');
  // The kernel keeps a regular file's ctime under the writeback cache and sends the unlinked file's new one right
  // after: the unlink's answer carried the file's attributes, so the addon answers that one.
  t.equal(unlinked.slow, 1, 'an unlink: only the unlink reached JavaScript');
  t.ok(unlinked.mtime > removed.mtime, 'and the directory\'s mtime moved');
  t.equal(await walker.ask('hold c'), '1', 'an open file has one link');
  await step('unlink c');
  t.equal(await walker.ask('held c'), '0 100', 'after its unlink, its fstat shows no link (nothing stale was kept for it)');
  t.equal((await walker.end()).code, 0);
});

t.test('the attribute cache holds thousands of files on two mounts: stats after the closes stay native', async (t) => {
  const mounts = [await serveInProcess(t, 'data-path', { stampMs: 3_600_000 }), await serveInProcess(t, 'data-path', { stampMs: 3_600_000 })];
  const count = 3000;
  // Each close writes the file back and, under the writeback cache, makes the kernel ask for st_blocks at the next stat.
  await run('python3', ['-c', `
import os, sys
for d in sys.argv[1:3]:
    for i in range(int(sys.argv[3])):
        with open(os.path.join(d, "f%d" % i), "wb") as f:
            f.write(b"x" * 100)
`, mounts[0]!.dir, mounts[1]!.dir, String(count)]);
  for (const m of mounts) await allReleased(m.mount);
  const before = mounts.map((m) => m.mount.stats().slowRequests);
  const { stdout } = await run('python3', ['-c', `
import os, sys
for d in sys.argv[1:3]:
    sts = [os.stat(os.path.join(d, "f%d" % i)) for i in range(int(sys.argv[3]))]
    print(sum(s.st_size for s in sts), sum(s.st_blocks for s in sts))
`, mounts[0]!.dir, mounts[1]!.dir, String(count)]);
  t.same(stdout.trim().split('\n'), Array(2).fill(`${count * 100} ${(count * CHUNK) / 512}`), 'every stat showed the size and the chunk each file took');
  t.same(mounts.map((m, i) => m.mount.stats().slowRequests - (before[i] as number)), [0, 0], `none of the ${2 * count} getattrs reached JavaScript`);
});

/** Makes each file and writes `sizes[i]` bytes of letter i into it through the page cache: its close writes them back. */
async function createFiles(files: string[], sizes: number[]): Promise<void> {
  await run('python3', ['-c', `
import os, sys
sizes = [${sizes.join(', ')}]
for i, name in enumerate(sys.argv[1:]):
    fd = os.open(name, os.O_WRONLY | os.O_CREAT, 0o644)
    if sizes[i] > 0:
        os.write(fd, bytes([65 + i % 26]) * sizes[i])
    os.close(fd)
`, ...files]);
}

t.test('a new file\'s first write is the addon\'s, from the mount\'s reserve: the close asks nothing of JavaScript', async (t) => {
  const s = await serveInProcess(t, 'data-path', { stampMs: 3_600_000 });
  const files = Array.from({ length: 20 }, (_, i) => path.join(s.dir, `n${i}`));
  const sizes = files.map((_, i) => (i === 0 ? 100 : 4096));
  const before = s.mount.stats();
  await createFiles(files, sizes);
  await allReleased(s.mount);
  const after = s.mount.stats();
  t.equal(after.firstWrites - before.firstWrites, 20, 'each file\'s first write took a reserved chunk natively');
  const slow = after.slowRequests - before.slowRequests;
  t.ok(slow <= 3 * 20 + 2, `JavaScript saw a lookup, a create and a release per file, and a look at the directory (${slow} requests)`);
  for (const [i, file] of files.entries()) {
    const st = await fs.promises.stat(file);
    if (st.size !== sizes[i] || st.blocks !== CHUNK / 512) t.fail(`${file}: size ${st.size}, ${st.blocks} blocks`);
  }
  t.equal(s.mount.stats().slowRequests, after.slowRequests, 'their stats, size and blocks right, were answered natively');
  t.same(await pread(files[0] as string, 0, 4096), Buffer.alloc(100, 'A'), 'a read past the end of the chunk the addon took stops at the file\'s end');
  t.same(await pread(files[5] as string, 0, 4096), Buffer.alloc(4096, 'F'), 'the bytes read back');
  const ino = (await fs.promises.stat(files[7] as string)).ino;
  t.same(s.mount.fs.read(ino, 0, 8192), Buffer.alloc(4096, 'H'), 'the pool holds them, once anything reached JavaScript');
  s.volumes.createSnapshot('v@s');
  const snap = new Filesystem(s.handle.pool, s.handle.pool.stat('v@s').id);
  t.same(snap.read(ino, 0, 8192), Buffer.alloc(4096, 'H'), 'and a snapshot has them');
});

t.test('an fdatasync after a native first write commits the chunk and the size: a copy of the pool then has them', async (t) => {
  const s = await serveInProcess(t, 'data-path', { stampMs: 3_600_000 });
  const file = path.join(s.dir, 'f');
  const child = syncedWriter(t, file, 'os.O_WRONLY | os.O_CREAT, 0o644', 'os.write(fd, b"q" * 8192)');
  t.equal(await child.line(), 'synced');
  t.equal(s.mount.stats().firstWrites, 1, 'the write back before the fdatasync was native');
  t.equal(s.mount.stats().fastFlushes, 0, 'the fdatasync needed a commit');
  const again = copyOfPool(s.dir);
  t.equal(await child.ask(''), 'closed');
  try {
    const copied = new Filesystem(again.pool, again.pool.stat('v').id);
    const inode = copied.lookup(1, Buffer.from('f'));
    t.equal(inode.size, 8192, 'the size');
    t.same(copied.read(inode.ino, 0, 8192), Buffer.alloc(8192, 'q'), 'the bytes');
  } finally {
    again.close();
  }
});

t.test('the room holes hold goes back when the volume needs it, and a write that fits is not refused', async (t) => {
  // 64 chunks of room; each new file's hole holds one.
  const s = await serveInProcess(t, 'data-path', { stampMs: 3_600_000, size: 64 * CHUNK });
  const empty = Array.from({ length: 40 }, (_, i) => path.join(s.dir, `e${i}`));
  await createFiles(empty, empty.map(() => 0));
  const big = pattern(48 * CHUNK, 20);
  await fs.promises.writeFile(path.join(s.dir, 'big'), big);
  t.same(await fs.promises.readFile(path.join(s.dir, 'big')), big, 'a file of 48 chunks fit beside 40 empty files');
  await createFiles(empty.slice(0, 5), [4096, 4096, 4096, 4096, 4096]);
  for (const file of empty.slice(0, 5)) t.equal((await fs.promises.stat(file)).size, 4096, `${path.basename(file)} took a write after its hole went`);
  await t.rejects(fs.promises.writeFile(path.join(s.dir, 'more'), pattern(12 * CHUNK, 21)), { code: 'ENOSPC' }, 'beyond the room, ENOSPC');
});

t.test('a write JavaScript serves into a new file withdraws its hole first; a truncate after a native first write holds', async (t) => {
  const s = await serveInProcess(t, 'data-path', { stampMs: 3_600_000 });
  const file = path.join(s.dir, 'd');
  // A copy of 4 KiB into a new file is JavaScript's (a partial chunk: no entry replaces the hole); the write after it lands there.
  const src = path.join(s.dir, 'src');
  await createFiles([src, file], [4096, 0]);
  await run('python3', ['-c', `
import os, sys
a = os.open(sys.argv[1], os.O_RDONLY)
b = os.open(sys.argv[2], os.O_RDWR)
assert os.copy_file_range(a, b, 4096) == 4096
os.pwrite(b, b"b" * 100, 0)
os.close(b)
`, src, file]);
  const both = Buffer.concat([Buffer.alloc(100, 'b'), Buffer.alloc(3996, 'A')]);
  t.same(await pread(file, 0, 8192), both, 'the copy and the write after it read back');
  t.same(s.mount.fs.read((await fs.promises.stat(file)).ino, 0, 8192), both, 'the pool holds both');

  const other = path.join(s.dir, 't');
  await createFiles([other], [4096]);
  await fs.promises.truncate(other, 0);
  let st = await fs.promises.stat(other);
  t.same([st.size, st.blocks], [0, 0], 'truncated to nothing after a native first write');
  await pwrite(other, CHUNK + 10, Buffer.from('abc'));
  st = await fs.promises.stat(other);
  t.equal(st.size, CHUNK + 13, 'a write past the end after it');
  const back = await fs.promises.readFile(other);
  t.same(back.subarray(0, CHUNK + 10), Buffer.alloc(CHUNK + 10), 'zeros where the first write was');
  t.equal(back.subarray(CHUNK + 10).toString(), 'abc');
});

t.test('appends go on natively: into the chunk holding the end, and into holes past it', async (t) => {
  const s = await serveInProcess(t, 'data-path', { stampMs: 3_600_000 });
  const file = path.join(s.dir, 'log');
  const pages = 3 * (CHUNK / 4096) + 1;
  const before = s.mount.stats();
  // O_DIRECT, so each append is one request to the mount.
  await run('python3', ['-c', `
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
buf = mmap.mmap(-1, 4096)
for i in range(${pages}):
    buf.seek(0)
    buf.write(bytes([65 + i % 26]) * 4096)
    os.pwrite(fd, buf, 4096 * i)
os.close(fd)
`, file]);
  const after = s.mount.stats();
  const expect = Buffer.concat(Array.from({ length: pages }, (_, i) => Buffer.alloc(4096, 65 + (i % 26))));
  t.equal(after.firstWrites - before.firstWrites, 3, 'chunks 0, 2 and 3 were first written natively (chunk 1 by JavaScript, which offered the holes after it)');
  t.equal(after.fastWrites - before.fastWrites, pages - 1, 'every append but one was native');
  const st = await fs.promises.stat(file);
  t.same([st.size, st.blocks], [pages * 4096, (4 * CHUNK) / 512], 'the size and blocks');
  t.same(await pread(file, 0, pages * 4096), expect, 'the appends read back');
  t.same(s.mount.fs.read(st.ino, 0, pages * 4096), expect, 'the pool holds them');
});

t.test('a truncate leaves no chunk mapped past the new end, the old last one included', async (t) => {
  const s = await serveInProcess(t, 'data-path', { stampMs: 3_600_000 });
  const file = path.join(s.dir, 'f');
  await fs.promises.writeFile(file, pattern(2 * CHUNK + 100, 30));
  t.equal((await fs.promises.stat(file)).blocks, (3 * CHUNK) / 512, 'three chunks before');
  await fs.promises.truncate(file, CHUNK + 10);
  t.equal((await fs.promises.stat(file)).blocks, (2 * CHUNK) / 512, 'two after: the chunk that held the old end is gone, not zeroed');
  t.same(await pread(file, 0, 3 * CHUNK), pattern(2 * CHUNK + 100, 30).subarray(0, CHUNK + 10), 'the bytes kept');
});

t.test('holes inside a sparse file are filled natively, read as zeros natively, and an fdatasync commits what filled them', async (t) => {
  const s = await serveInProcess(t, 'data-path', { stampMs: 3_600_000 });
  const file = path.join(s.dir, 'sparse');
  // O_DIRECT, so each write is one request at the chunk it names; a page-aligned buffer from mmap.
  const child = new Talker(t, `
import mmap, os, sys
cs = ${CHUNK}
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o644)
os.ftruncate(fd, 64 * cs)
buf = mmap.mmap(-1, 4096)
print("ready", flush=True)
for line in sys.stdin:
    cmd, arg = line.split()
    if cmd == "write":
        buf.seek(0)
        buf.write(bytes([int(arg) + 1]) * 4096)
        os.pwrite(fd, buf, int(arg) * cs)
        print("ok", flush=True)
    elif cmd == "read":
        os.preadv(fd, [buf], int(arg) * cs)
        print(len(set(buf[:4096])), buf[0], flush=True)
    elif cmd == "sync":
        os.fdatasync(fd)
        print(os.fstat(fd).st_blocks, flush=True)
`, file);
  t.equal(await child.line(), 'ready');
  const step = async (cmd: string): Promise<{ answer: string; slow: number; first: number; reads: number }> => {
    const before = s.mount.stats();
    const answer = await child.ask(cmd);
    const after = s.mount.stats();
    return { answer, slow: after.slowRequests - before.slowRequests, first: after.firstWrites - before.firstWrites, reads: after.fastReads - before.fastReads };
  };
  await step('write 0');
  let native = 0;
  let slow = 0;
  for (let c = 1; c <= 16; c++) {
    const w = await step(`write ${c}`);
    native += w.first;
    slow += w.slow;
  }
  t.equal(native, 16, 'after JavaScript wrote chunk 0, the 16 chunks after it were first written by the addon');
  t.equal(slow, 0, 'with no request reaching JavaScript');
  // Any request JavaScript serves folds what the addon took first, and offers the holes after it.
  await fs.promises.readdir(s.dir);
  const next = await step('write 17');
  t.same([next.first, next.slow], [1, 0], 'so chunk 17 was native too');
  t.equal((await step('write 40')).slow, 1, 'chunk 40, past the holes offered, went to JavaScript');
  t.equal((await step('write 41')).slow, 1, 'and so did 41: a write after a hole offers none (a random writer would not find them)');
  t.equal((await step('write 42')).first, 1, 'but 41 went on from 40, so it offered the ones after it');
  const hole = await step('read 50');
  t.equal(hole.answer, '1 0', 'a hole never written reads as zeros');
  t.equal(hole.reads, 1, 'natively');
  t.equal(hole.slow, 0, 'with nothing asked of JavaScript');
  const synced = await step('sync 0');
  t.equal(Number(synced.answer), (21 * CHUNK) / 512, 'st_blocks counts the 21 chunks written');
  const expected = (c: number): Buffer => (c <= 17 || (c >= 40 && c <= 42) ? Buffer.alloc(4096, c + 1) : Buffer.alloc(4096));
  const again = copyOfPool(s.dir);
  try {
    const copied = new Filesystem(again.pool, again.pool.stat('v').id);
    const inode = copied.lookup(1, Buffer.from('sparse'));
    t.equal(inode.size, 64 * CHUNK, 'the copy has the size');
    let wrong = 0;
    for (let c = 0; c < 64; c++) if (!copied.read(inode.ino, c * CHUNK, 4096).equals(expected(c))) wrong++;
    t.equal(wrong, 0, 'and every chunk: the 21 written, zeros elsewhere');
  } finally {
    again.close();
  }
  t.equal((await child.end()).code, 0);
  let wrong = 0;
  for (let c = 0; c < 64; c++) if (!(await pread(file, c * CHUNK, 4096)).equals(expected(c))) wrong++;
  t.equal(wrong, 0, 'the mount reads the same');
});
