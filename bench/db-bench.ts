/**
 * The database bench (`npm run bench:db`): what a database on a cowvol
 * volume gets, against the node's own disk, in one run on the same disk.
 *
 *   host:   a directory on the filesystem that holds the pool
 *   loop:   ext4 on a loop device (direct I/O) over a sparse file in that
 *           directory: the same stack without cowvol, so the ratio to it
 *           is what cowvol itself costs and the rest is the loop device's
 *   C FUSE: the same again, the loop device over the one file of the C FUSE
 *           reference (bench/reference/passthrough.c) over a sparse file:
 *           the floor any FUSE daemon under the loop device pays
 *   cowvol: ext4 on a loop device (direct I/O) over a block file that
 *           `cowvol serve` serves, made the way CSI NodeStage makes it
 *
 * Jobs: fio 4 KiB random writes with fsync=1 and fdatasync=1 at 1 and 4
 * jobs; pgbench (Debian's PostgreSQL, installed here with apt if missing)
 * before any snapshot, right after one snapshot of the live volume, and
 * after 20; first writes into a fresh thin volume against overwrites of the
 * same chunks, on the block file itself; and pgbench with the data
 * directory on a cowfs volume (`cowvol mount`) against the host, and right
 * after a snapshot of it against before. Prints each
 * result with its ratio and the goal it is held to (issues 9 and 11), and
 * writes bench/results/db-bench.json.
 *
 *   node dist/bench/db-bench.js [--quick] [--dir DIR] [--runtime SECONDS] [--scale N] [--bin OTHER/bin/cowvol.js] [--cowfs-only]
 *
 * --bin runs the cowvol side with another build (an older checkout).
 * --cowfs-only runs pgbench on the host and on cowfs, nothing else.
 *
 * Caveat: PostgreSQL refuses to run as root, so its data directories belong
 * to the postgres user; the bench removes everything it made when it ends.
 */
import { type ChildProcess, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { makeFs, mountFs, unmount } from '../src/host/filesystem.js';
import { attachLoop, detachLoop } from '../src/host/loop.js';
import { startDaemon } from './daemon.js';
import { startReference } from './reference.js';
import { args, flag, quick, repo } from './args.js';

const bin = path.resolve(flag('--bin') ?? path.join(repo, 'bin', 'cowvol.js'));
const base = flag('--dir') ?? fs.mkdtempSync(path.join(os.tmpdir(), 'cowvol-db-'));
const runtime = Number(flag('--runtime') ?? (quick ? 5 : 20));
const scale = Number(flag('--scale') ?? (quick ? 5 : 20));
const fioSize = quick ? '128M' : '512M';
const cowfsOnly = args.includes('--cowfs-only');

interface Row {
  what: string;
  host: number;
  /** The same job on ext4 over a loop device over a plain file, where that counterpart applies. */
  loop?: number;
  /** The same again with the loop device over the C FUSE reference's file instead: the FUSE floor. */
  fuse?: number;
  cowvol: number;
  unit: string;
  goal: number;
}

function run(cmd: string, argv: string[], opts: { user?: string; cwd?: string } = {}): string {
  const full = opts.user ? ['runuser', ['-u', opts.user, '--', cmd, ...argv]] : [cmd, argv];
  const r = spawnSync(full[0] as string, full[1] as string[], { encoding: 'utf8', maxBuffer: 64 << 20, cwd: opts.cwd ?? os.tmpdir() });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** The PostgreSQL server's bin directory; Debian's package is installed if there is none. */
function postgresBin(): string {
  const find = (): string | null => {
    const root = '/usr/lib/postgresql';
    if (!fs.existsSync(root)) return null;
    const versions = fs.readdirSync(root).sort((a, b) => Number(b) - Number(a));
    return versions.length > 0 ? path.join(root, versions[0] as string, 'bin') : null;
  };
  const found = find();
  if (found) return found;
  run('apt-get', ['install', '-y', '-q', 'postgresql']);
  const again = find();
  if (!again) throw new Error('postgresql did not install');
  return again;
}

function fioIops(file: string, extra: string[]): number {
  const out = run('fio', ['--name=db', `--filename=${file}`, '--output-format=json', '--direct=0', '--ioengine=psync', ...extra]);
  const job = (JSON.parse(out) as { jobs: { write: { iops: number } }[] }).jobs;
  return job.reduce((sum, j) => sum + j.write.iops, 0);
}

function fsyncJobs(dir: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const sync of ['fsync', 'fdatasync']) {
    for (const jobs of [1, 4]) {
      const file = path.join(dir, `fio-${sync}-${jobs}`);
      out.set(`fio 4k randwrite ${sync}=1, ${jobs} job${jobs > 1 ? 's' : ''}`, fioIops(file, ['--rw=randwrite', '--bs=4k', `--size=${fioSize}`, `--${sync}=1`, `--numjobs=${jobs}`, '--group_reporting', '--time_based', `--runtime=${runtime}`]));
      for (let j = 0; j < jobs; j++) fs.rmSync(`${file}.${j}.0`, { force: true });
      fs.rmSync(file, { force: true });
    }
  }
  return out;
}

/** pgbench's TPS on a fresh cluster in `dir`, or on the cluster already there. */
class Postgres {
  private readonly data: string;
  private readonly port: number;

  constructor(
    private readonly pgBin: string,
    dir: string,
    port: number,
  ) {
    this.data = path.join(dir, 'pg');
    this.port = port;
  }

  init(): void {
    fs.mkdirSync(this.data, { recursive: true });
    run('chown', ['-R', 'postgres:postgres', path.dirname(this.data)]);
    run(path.join(this.pgBin, 'initdb'), ['-D', this.data, '--auth=trust', '--no-instructions'], { user: 'postgres' });
    this.start();
    run(path.join(this.pgBin, 'pgbench'), ['-i', '-s', String(scale), '-q', ...this.conn()], { user: 'postgres' });
  }

  start(): void {
    run(path.join(this.pgBin, 'pg_ctl'), ['-D', this.data, '-w', '-l', path.join(this.data, 'log'), '-o', `-p ${this.port} -k ${this.data} -c listen_addresses=''`, 'start'], { user: 'postgres' });
  }

  stop(): void {
    run(path.join(this.pgBin, 'pg_ctl'), ['-D', this.data, '-w', '-m', 'fast', 'stop'], { user: 'postgres' });
  }

  tps(): number {
    const out = run(path.join(this.pgBin, 'pgbench'), ['-c', '4', '-j', '2', '-T', String(runtime), ...this.conn()], { user: 'postgres' });
    const m = /tps = ([\d.]+) \(without initial connection time\)/.exec(out);
    if (!m?.[1]) throw new Error(`no tps in pgbench output: ${out}`);
    return Number(m[1]);
  }

  private conn(): string[] {
    return ['-h', this.data, '-p', String(this.port), 'postgres'];
  }
}

function cowvol(pool: string, ...argv: string[]): void {
  run(process.execPath, [bin, ...argv, '--pool', pool]);
}

function pgbenchOn(pgBin: string, dir: string, port: number): number {
  const pg = new Postgres(pgBin, dir, port);
  pg.init();
  const tps = pg.tps();
  pg.stop();
  return tps;
}

/** pgbench's TPS with the cluster on the cowfs volume `dbfs`, mounted at `dir` for it and unmounted after: before, and right after a snapshot of the live volume. */
function pgbenchOnCowfs(pgBin: string, pool: string, dir: string): [number, number] {
  cowvol(pool, 'mount', 'dbfs', dir);
  fs.chmodSync(dir, 0o755);
  const pg = new Postgres(pgBin, dir, 54323);
  pg.init();
  const before = pg.tps();
  cowvol(pool, 'snapshot', 'create', 'dbfs@s1');
  const after = pg.tps();
  pg.stop();
  cowvol(pool, 'unmount', dir);
  return [before, after];
}

/** First 4 KiB writes, one per fresh 64 KiB chunk, against overwrites of the same places. */
function firstWrites(file: string): [number, number] {
  const pattern = ['--rw=write:60k', '--bs=4k', '--size=1G', '--direct=1', '--ioengine=libaio', '--iodepth=16'];
  const out = (): number => {
    const json = run('fio', ['--name=first', `--filename=${file}`, '--output-format=json', ...pattern]);
    return (JSON.parse(json) as { jobs: { write: { iops: number } }[] }).jobs[0]?.write.iops ?? 0;
  };
  return [out(), out()];
}

/** ext4 on a loop device (direct I/O) over `file`, mounted at `dir`: what CSI NodeStage makes of a block file. */
async function stage(file: string, dir: string): Promise<string> {
  fs.mkdirSync(dir, { recursive: true });
  const loop = await attachLoop(file, false);
  await makeFs(loop, 'ext4');
  await mountFs(loop, dir, 'ext4', [], false);
  fs.chmodSync(dir, 0o755);
  return loop;
}

/** A sparse 4 GiB file, as thin as a fresh cowvol volume. */
function sparseFile(file: string): string {
  fs.closeSync(fs.openSync(file, 'w'));
  fs.truncateSync(file, 4 * 2 ** 30);
  return file;
}

/** The block-path rows: fio fsync jobs and pgbench on every stack, then snapshots and first writes on cowvol. */
function blockRows(pgBin: string, pool: string, mnt: string, dirs: Dirs, hostTps: number): Row[] {
  const rows: Row[] = [];
  const fio = { host: fsyncJobs(dirs.host), loop: fsyncJobs(dirs.loop), fuse: fsyncJobs(dirs.fuse), cowvol: fsyncJobs(dirs.vol) };
  for (const [what, host] of fio.host) rows.push({ what, host, loop: fio.loop.get(what) ?? 0, fuse: fio.fuse.get(what) ?? 0, cowvol: fio.cowvol.get(what) ?? 0, unit: 'IOPS', goal: 0.9 });
  const loopTps = pgbenchOn(pgBin, dirs.loop, 54324);
  const fuseTps = pgbenchOn(pgBin, dirs.fuse, 54325);
  const volPg = new Postgres(pgBin, dirs.vol, 54322);
  volPg.init();
  const volTps = volPg.tps();
  rows.push({ what: `pgbench -c 4 -j 2 -T ${runtime}, scale ${scale}`, host: hostTps, loop: loopTps, fuse: fuseTps, cowvol: volTps, unit: 'TPS', goal: 1.0 });
  cowvol(pool, 'snapshot', 'create', 'db@s1');
  rows.push({ what: 'pgbench after 1 snapshot of the live volume (vs before)', host: volTps, cowvol: volPg.tps(), unit: 'TPS', goal: 0.95 });
  for (let i = 2; i <= 20; i++) cowvol(pool, 'snapshot', 'create', `db@s${i}`);
  rows.push({ what: 'pgbench after 20 snapshots (vs before)', host: volTps, cowvol: volPg.tps(), unit: 'TPS', goal: 0.95 });
  volPg.stop();
  const [first, over] = firstWrites(path.join(mnt, 'block', 'thin'));
  rows.push({ what: 'first writes into a thin volume (vs overwrites of them)', host: over, cowvol: first, unit: 'IOPS', goal: 0.7 });
  return rows;
}

interface Dirs {
  host: string;
  vol: string;
  loop: string;
  fuse: string;
  cowfs: string;
}

async function main(): Promise<void> {
  const pgBin = postgresBin();
  const pool = path.join(base, 'pool');
  const mnt = path.join(base, 'mnt');
  const dirs: Dirs = { host: path.join(base, 'host'), vol: path.join(base, 'vol'), loop: path.join(base, 'loop'), fuse: path.join(base, 'fuse'), cowfs: path.join(base, 'cowfs') };
  const refMnt = path.join(base, 'refmnt');
  for (const dir of [dirs.host, dirs.cowfs, refMnt]) fs.mkdirSync(dir, { recursive: true });
  // The postgres user must reach its data directories (mkdtemp makes 0700).
  fs.chmodSync(base, 0o755);
  cowvol(pool, 'pool', 'init');
  cowvol(pool, 'volume', 'create', 'db', '--size', '4G');
  cowvol(pool, 'volume', 'create', 'thin', '--size', '64G');
  cowvol(pool, 'volume', 'create', 'dbfs', '--size', '4G', '--kind', 'fs');
  const daemon = await startDaemon(bin, pool, mnt);
  const loops: string[] = [];
  let reference: ChildProcess | undefined;
  const rows: Row[] = [];
  try {
    const hostTps = pgbenchOn(pgBin, dirs.host, 54321);
    const [fsTps, fsSnapTps] = pgbenchOnCowfs(pgBin, pool, dirs.cowfs);
    rows.push({ what: `pgbench on cowfs, scale ${scale}`, host: hostTps, cowvol: fsTps, unit: 'TPS', goal: 1.0 });
    rows.push({ what: 'pgbench on cowfs after 1 snapshot of the live volume (vs before)', host: fsTps, cowvol: fsSnapTps, unit: 'TPS', goal: 0.95 });
    if (!cowfsOnly) {
      reference = await startReference('passthrough', base, refMnt, sparseFile(path.join(dirs.host, 'fuse.img')));
      loops.push(await stage(path.join(mnt, 'block', 'db'), dirs.vol));
      loops.push(await stage(sparseFile(path.join(dirs.host, 'plain.img')), dirs.loop));
      loops.push(await stage(path.join(refMnt, 'data'), dirs.fuse));
      rows.push(...blockRows(pgBin, pool, mnt, dirs, hostTps));
    }
  } finally {
    for (const dir of Object.values(dirs)) stopPostgres(pgBin, dir);
    spawnSync(process.execPath, [bin, 'unmount', dirs.cowfs, '--pool', pool]);
    for (const [i, dir] of [dirs.vol, dirs.loop, dirs.fuse].entries()) {
      await unmount(dir, false).catch(() => undefined);
      if (loops[i] !== undefined) await detachLoop(loops[i] as string).catch(() => undefined);
    }
    await unmount(refMnt, false).catch(() => undefined);
    reference?.kill('SIGTERM');
    daemon.kill('SIGTERM');
    await new Promise((r) => daemon.once('exit', r));
  }
  report(rows);
  if (!args.includes('--keep')) fs.rmSync(base, { recursive: true, force: true });
}

/** Stops a cluster a failed run left running in `dir`, if there is one. */
function stopPostgres(pgBin: string, dir: string): void {
  if (fs.existsSync(path.join(dir, 'pg', 'postmaster.pid'))) spawnSync('runuser', ['-u', 'postgres', '--', path.join(pgBin, 'pg_ctl'), '-D', path.join(dir, 'pg'), '-m', 'immediate', 'stop']);
}

function report(rows: Row[]): void {
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(58) : c.padStart(9))).join(' ');
  // ratio: cowvol against host, the goal's measure; vs loop and vs FUSE: against the same stack over a plain file, and over the C FUSE reference.
  console.log(line(['job', 'host', 'loop', 'C FUSE', 'cowvol', 'ratio', 'vs loop', 'vs FUSE', 'goal', 'met']));
  const against = (n: number | undefined, cowvolValue: number): [string, string] => (n === undefined ? ['-', '-'] : [n.toFixed(0), `${(cowvolValue / n).toFixed(2)}x`]);
  for (const r of rows) {
    const ratio = r.cowvol / r.host;
    const [loop, vsLoop] = against(r.loop, r.cowvol);
    const [fuse, vsFuse] = against(r.fuse, r.cowvol);
    console.log(line([`${r.what} (${r.unit})`, r.host.toFixed(0), loop, fuse, r.cowvol.toFixed(0), `${ratio.toFixed(2)}x`, vsLoop, vsFuse, `>=${r.goal}x`, ratio >= r.goal ? 'yes' : 'no']));
  }
  const out = path.join(repo, 'bench', 'results');
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'db-bench.json'), `${JSON.stringify({ date: new Date().toISOString(), runtime, scale, rows }, null, 2)}\n`);
}

await main();
