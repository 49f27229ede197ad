/**
 * The cowfs bench (`npm run bench:cowfs`, issue 11): a filesystem volume
 * served as cowfs, against the host's own directory, ext4 on a loop device
 * (direct I/O) over a cowvol block volume, and a minimal C FUSE passthrough
 * filesystem over a host directory (bench/reference/passthrough-fs.c, built
 * here: the FUSE ceiling), in one run on the same disk.
 *
 * Jobs:
 * - metadata: one Python process creates FILES files of 4 KiB in 200
 *   directories and syncs, stats them all, unlinks them all (seconds each),
 *   ROUNDS times on every target, each round in another order of targets
 *   (medians reported, with the spread): on a small shared machine one
 *   target's run alone moves by half from the host's writeback and
 *   neighbours, and whichever target runs after another's heavy writes
 *   pays for them;
 * - data: fio 4 KiB random reads and writes, 1 MiB sequential writes, and
 *   4 KiB writes with fsync after each, on a file in each target;
 * - snapshots: the time of a snapshot of a cowfs volume holding 10 files
 *   and one holding SNAPFILES, median of 11, taken on the pool in this
 *   process with the daemon stopped (what is timed is the operation, with
 *   its commit, not a CLI process start).
 *
 *   node dist/bench/cowfs-bench.js [--quick] [--dir DIR] [--files N] [--rounds N] [--runtime SECONDS]
 *
 * Prints each result with ratios and writes bench/results/cowfs-bench.json.
 * Not here yet: pgbench.
 */
import { type ChildProcess, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { PoolDir } from '../src/blockstore/pool-dir.js';
import { makeFs, mountFs, unmount } from '../src/host/filesystem.js';
import { attachLoop, detachLoop } from '../src/host/loop.js';
import { startDaemon } from './daemon.js';
import { startReference } from './reference.js';
import { flag, quick, repo } from './args.js';

const bin = path.join(repo, 'bin', 'cowvol.js');
const base = flag('--dir') ?? fs.mkdtempSync(path.join(os.tmpdir(), 'cowvol-cowfs-'));
const files = Number(flag('--files') ?? (quick ? 2000 : 20000));
const snapFiles = quick ? 10000 : 100000;
const runtime = Number(flag('--runtime') ?? (quick ? 3 : 10));
const rounds = Number(flag('--rounds') ?? (quick ? 1 : 3));

type Target = 'host' | 'cowfs' | 'ext4/cowvol' | 'C passthrough';
const TARGETS: Target[] = ['host', 'C passthrough', 'cowfs', 'ext4/cowvol'];

function run(cmd: string, argv: string[]): string {
  const r = spawnSync(cmd, argv, { encoding: 'utf8', maxBuffer: 64 << 20, cwd: os.tmpdir() });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

function cowvol(pool: string, ...argv: string[]): string {
  return run(process.execPath, [bin, ...argv, '--pool', pool]);
}

const METADATA = `
import os, sys, time
root, n = sys.argv[1], int(sys.argv[2])
dirs = 200 if n >= 2000 else 20
data = b"m" * 4096
t0 = time.monotonic()
for d in range(dirs):
    os.mkdir(f"{root}/d{d}")
for i in range(n):
    fd = os.open(f"{root}/d{i % dirs}/f{i}", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, data)
    os.close(fd)
os.sync()
t1 = time.monotonic()
for i in range(n):
    os.stat(f"{root}/d{i % dirs}/f{i}")
t2 = time.monotonic()
for i in range(n):
    os.unlink(f"{root}/d{i % dirs}/f{i}")
for d in range(dirs):
    os.rmdir(f"{root}/d{d}")
os.sync()
t3 = time.monotonic()
print(t1 - t0, t2 - t1, t3 - t2)
`;

/** Seconds for create+sync, stat, unlink. */
function metadata(dir: string): number[] {
  const out = run('python3', ['-c', METADATA, dir, String(files)]);
  return out.trim().split(' ').map(Number);
}

const FIO_JOBS: [string, string[]][] = [
  ['4k randread', ['--rw=randread', '--bs=4k']],
  ['4k randwrite', ['--rw=randwrite', '--bs=4k']],
  ['1m write', ['--rw=write', '--bs=1m']],
  ['4k randwrite fsync=1', ['--rw=randwrite', '--bs=4k', '--fsync=1']],
];

function fio(dir: string, extra: string[]): number {
  const file = path.join(dir, 'fio.data');
  const out = run('fio', ['--name=cowfs', `--filename=${file}`, '--output-format=json', '--ioengine=psync', '--size=256M', '--time_based', `--runtime=${runtime}`, ...extra]);
  const job = (JSON.parse(out) as { jobs: { read: { iops: number }; write: { iops: number } }[] }).jobs[0];
  return (job?.read.iops ?? 0) + (job?.write.iops ?? 0);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

/** Median milliseconds of 11 snapshots of `volume`, on the pool opened here. */
function snapshotMs(poolDir: string, volume: string): number {
  const handle = PoolDir.open(poolDir);
  try {
    const times: number[] = [];
    for (let i = 0; i < 11; i++) {
      const t0 = process.hrtime.bigint();
      handle.pool.fork(volume, `${volume}@bench${i}`, { readOnly: true });
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    return median(times);
  } finally {
    handle.close();
  }
}

function populate(dir: string, n: number): void {
  run('python3', ['-c', `import os,sys\nfor i in range(int(sys.argv[2])):\n    d=f"{sys.argv[1]}/d{i % 100}"\n    os.makedirs(d, exist_ok=True)\n    open(f"{d}/f{i}", "wb").close()`, dir, String(n)]);
}

async function main(): Promise<void> {
  const pool = path.join(base, 'pool');
  const mount = path.join(base, 'mnt');
  const dirs: Record<Target, string> = { host: path.join(base, 'host'), cowfs: path.join(base, 'cowfs'), 'ext4/cowvol': path.join(base, 'ext4'), 'C passthrough': path.join(base, 'passthrough') };
  const under = path.join(base, 'passthrough-backing');
  fs.mkdirSync(under);
  for (const d of Object.values(dirs)) fs.mkdirSync(d, { recursive: true });
  const small = path.join(base, 'small');
  const many = path.join(base, 'many');
  fs.mkdirSync(small);
  fs.mkdirSync(many);
  cowvol(pool, 'pool', 'init');
  let daemon = await startDaemon(bin, pool, mount, ['--metrics-address', 'none']);
  let loop = '';
  let reference: ChildProcess | undefined;
  const meta: Partial<Record<Target, number[][]>> = {};
  const data = new Map<string, Partial<Record<Target, number>>>();
  try {
    cowvol(pool, 'volume', 'create', 'fs', '--size', '16G', '--kind', 'fs');
    cowvol(pool, 'mount', 'fs', dirs.cowfs);
    cowvol(pool, 'volume', 'create', 'blk', '--size', '16G');
    loop = await attachLoop(path.join(mount, 'block', 'blk'), false);
    await makeFs(loop, 'ext4');
    await mountFs(loop, dirs['ext4/cowvol'], 'ext4', [], false);
    reference = await startReference('passthrough-fs', base, dirs['C passthrough'], under);
    for (let round = 0; round < rounds; round++) {
      // Rotated, so no target always follows the same other one.
      for (const target of TARGETS.map((_t, i) => TARGETS[(i + round) % TARGETS.length] as Target)) {
        const seconds = metadata(dirs[target]);
        (meta[target] ??= []).push(seconds);
        process.stderr.write(`metadata ${target} round ${round + 1}: ${seconds.map((s) => s.toFixed(2)).join(' / ')} s\n`);
      }
    }
    for (const target of TARGETS) {
      for (const [name, extra] of FIO_JOBS) {
        const row = data.get(name) ?? {};
        row[target] = fio(dirs[target], extra);
        data.set(name, row);
        process.stderr.write(`${name} ${target}: ${Math.round(row[target] ?? 0)} IOPS\n`);
      }
      fs.rmSync(path.join(dirs[target], 'fio.data'), { force: true });
    }
    cowvol(pool, 'volume', 'create', 'small', '--size', '1G', '--kind', 'fs');
    cowvol(pool, 'volume', 'create', 'many', '--size', '1G', '--kind', 'fs');
    cowvol(pool, 'mount', 'small', small);
    cowvol(pool, 'mount', 'many', many);
    populate(small, 10);
    populate(many, snapFiles);
    cowvol(pool, 'unmount', small);
    cowvol(pool, 'unmount', many);
    cowvol(pool, 'unmount', dirs.cowfs);
  } finally {
    await unmount(dirs['C passthrough'], false).catch(() => undefined);
    reference?.kill('SIGTERM');
    await unmount(dirs['ext4/cowvol'], false).catch(() => undefined);
    if (loop !== '') await detachLoop(loop).catch(() => undefined);
    daemon.kill('SIGTERM');
    await new Promise((r) => daemon.once('exit', r));
  }
  const snaps = { small: snapshotMs(pool, 'small'), many: snapshotMs(pool, 'many') };
  report(meta, data, snaps);
  daemon = await startDaemon(bin, pool, mount, ['--metrics-address', 'none']);
  daemon.kill('SIGTERM');
  await new Promise((r) => daemon.once('exit', r));
  if (flag('--dir') === undefined) fs.rmSync(base, { recursive: true, force: true });
}

/** Median of each phase over the rounds, and its spread as "min-max". */
function phaseOf(runs: number[][] | undefined, i: number): { mid: number; spread: string } {
  const xs = (runs ?? []).map((r) => r[i] ?? NaN);
  return { mid: xs.length === 0 ? NaN : median(xs), spread: `${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)}` };
}

function report(meta: Partial<Record<Target, number[][]>>, data: Map<string, Partial<Record<Target, number>>>, snaps: { small: number; many: number }): void {
  const lines: string[] = [];
  const phases = ['create+sync', 'stat', 'unlink'];
  lines.push(`metadata, ${files} files of 4 KiB, median of ${rounds} rounds [spread] (seconds; ratio = other / cowfs, above 1 means cowfs is faster)`);
  phases.forEach((p, i) => {
    const c = phaseOf(meta.cowfs, i);
    const h = phaseOf(meta.host, i);
    const e = phaseOf(meta['ext4/cowvol'], i);
    const r = phaseOf(meta['C passthrough'], i);
    const ratio = (other: { mid: number }): string => (other.mid / c.mid).toFixed(2);
    lines.push(
      `  ${p.padEnd(12)} cowfs ${c.mid.toFixed(2)} [${c.spread}]  C passthrough ${r.mid.toFixed(2)} [${r.spread}] (${ratio(r)}x, goal 1.0)  host ${h.mid.toFixed(2)} (${ratio(h)}x)  ext4/cowvol ${e.mid.toFixed(2)} (${ratio(e)}x)`,
    );
  });
  lines.push('data (IOPS; ratio = cowfs / other)');
  for (const [name, row] of data) {
    const c = row.cowfs ?? NaN;
    lines.push(`  ${name.padEnd(22)} cowfs ${Math.round(c)}  C passthrough ${Math.round(row['C passthrough'] ?? NaN)} (${(c / (row['C passthrough'] ?? NaN)).toFixed(2)}x)  host ${Math.round(row.host ?? NaN)} (${(c / (row.host ?? NaN)).toFixed(2)}x)  ext4/cowvol ${Math.round(row['ext4/cowvol'] ?? NaN)} (${(c / (row['ext4/cowvol'] ?? NaN)).toFixed(2)}x, goal 0.9)`);
  }
  lines.push(`snapshot of a cowfs volume: 10 files ${snaps.small.toFixed(2)} ms, ${snapFiles} files ${snaps.many.toFixed(2)} ms (medians of 11; goal: the same, under 10 ms)`);
  process.stdout.write(`${lines.join('\n')}\n`);
  const out = path.join(repo, 'bench', 'results');
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'cowfs-bench.json'), JSON.stringify({ files, rounds, snapFiles, runtime, meta, data: Object.fromEntries(data), snaps }, null, 1));
}

await main();
