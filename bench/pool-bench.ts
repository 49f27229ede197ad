/**
 * Blockstore benchmarks (issue: foundation). Runs on a real pool directory
 * and, for the I/O cases, on a plain file in the same directory, and prints
 * each measurement with its ratio. Results: bench/results/pool-bench.json.
 *
 *   node dist/bench/pool-bench.js [--dir DIR] [--quick]
 *
 * --quick shrinks every size (for a smoke run); the goals in the issue are
 * stated for the full sizes. Timings here are wall clock on a shared
 * machine: compare ratios within one run, not numbers across runs.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { PoolDir, initPoolDir } from '../src/blockstore/pool-dir.js';
import type { Pool } from '../src/blockstore/pool.js';
import { Prng } from '../src/blockstore/prng.js';

const MiB = 1 << 20;
const GiB = 1 << 30;
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const dirArg = args[args.indexOf('--dir') + 1];
const base = args.includes('--dir') && dirArg ? dirArg : fs.mkdtempSync(path.join(os.tmpdir(), 'cowvol-bench-'));
const scale = quick ? 1 / 16 : 1;

interface Result {
  name: string;
  a: string;
  b: string;
  valueA: number;
  valueB: number;
  unit: string;
  ratio: number;
  goal: string;
}
const results: Result[] = [];

/** Lets the kernel write back earlier phases' dirty data, so it does not slow this one. */
function settle(): void {
  execFileSync('sync');
}

function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

function ms(fn: () => void): number {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

function report(r: Result): void {
  results.push(r);
  console.log(
    `${r.name.padEnd(46)} ${r.a}: ${r.valueA.toFixed(3)} ${r.unit}  ${r.b}: ${r.valueB.toFixed(3)} ${r.unit}  ratio ${r.ratio.toFixed(2)}  (goal ${r.goal})`,
  );
}

function freshPool(name: string, chunkSize = 64 * 1024): PoolDir {
  const dir = path.join(base, name);
  fs.rmSync(dir, { recursive: true, force: true });
  initPoolDir(dir, { chunkSize });
  return PoolDir.open(dir);
}

function fillVolume(pool: Pool, vol: string, bytes: number): void {
  const buf = Buffer.alloc(MiB);
  for (let off = 0; off < bytes; off += MiB) {
    buf.writeUInt32LE(off / MiB, 0);
    pool.write(vol, off, buf);
  }
  pool.flush();
}

function snapshotAndCloneTimes(): void {
  const sizes = [64 * MiB, Math.max(128 * MiB, 4 * GiB * scale)];
  const snap: number[] = [];
  const clone: number[] = [];
  for (const size of sizes) {
    const h = freshPool(`snap-${size}`);
    h.pool.createVolume('v', size);
    fillVolume(h.pool, 'v', size);
    const s: number[] = [];
    const c: number[] = [];
    settle();
    for (let i = 0; i < 21; i++) {
      s.push(ms(() => h.pool.fork('v', `v@s${i}`, { readOnly: true })));
      c.push(ms(() => h.pool.fork('v', `c${i}`, { readOnly: false })));
    }
    snap.push(median(s));
    clone.push(median(c));
    h.close();
  }
  const label = (n: number): string => `${Math.round(n / MiB)}MiB`;
  report({ name: 'snapshot time vs data written (median)', a: label(sizes[0] ?? 0), b: label(sizes[1] ?? 0), valueA: snap[0] ?? 0, valueB: snap[1] ?? 0, unit: 'ms', ratio: (snap[1] ?? 0) / (snap[0] ?? 1), goal: '<= 1.5, median < 10 ms' });
  report({ name: 'clone time vs data written (median)', a: label(sizes[0] ?? 0), b: label(sizes[1] ?? 0), valueA: clone[0] ?? 0, valueB: clone[1] ?? 0, unit: 'ms', ratio: (clone[1] ?? 0) / (clone[0] ?? 1), goal: '<= 1.5, median < 10 ms' });
}

function snapshotVsHistory(): void {
  const h = freshPool('history');
  h.pool.createVolume('v', 256 * MiB);
  fillVolume(h.pool, 'v', 16 * MiB);
  h.pool.fork('v', 'v@base', { readOnly: true });
  const time = (prefix: string): number => {
    const xs: number[] = [];
    for (let i = 0; i < 21; i++) xs.push(ms(() => h.pool.fork('v', `v@${prefix}${i}`, { readOnly: true })));
    for (let i = 0; i < 21; i++) h.pool.remove(`v@${prefix}${i}`);
    return median(xs);
  };
  settle();
  const one = time('a');
  const many = quick ? 100 : 1000;
  for (let i = 0; i < many; i++) h.pool.fork('v', `v@old${i}`, { readOnly: true });
  settle();
  const lots = time('b');
  report({ name: `snapshot time: 1 vs ${many} existing snapshots`, a: '1', b: String(many), valueA: one, valueB: lots, unit: 'ms', ratio: lots / one, goal: '<= 1.5' });
  h.close();
}

function randomIo(n: number, span: number, fn: (off: number) => void, seed = 1): number {
  const rng = new Prng(seed);
  const offs = Array.from({ length: n }, () => rng.int(span / 4096) * 4096);
  const t0 = process.hrtime.bigint();
  for (const off of offs) fn(off);
  return n / (Number(process.hrtime.bigint() - t0) / 1e9);
}

function readsAfterSnapshots(): void {
  const size = 256 * MiB;
  const n = quick ? 20000 : 100000;
  const pools = [0, 100].map((snapshots) => {
    const h = freshPool(`reads-${snapshots}`);
    h.pool.createVolume('v', size);
    fillVolume(h.pool, 'v', size);
    const rng = new Prng(7);
    for (let s = 0; s < snapshots; s++) {
      for (let i = 0; i < 200; i++) h.pool.write('v', rng.int(size / 4096) * 4096, Buffer.alloc(4096, s));
      h.pool.fork('v', `v@s${s}`, { readOnly: true });
    }
    h.pool.flush();
    return h;
  });
  settle();
  // Alternate the two pools over several rounds so drift on the machine hits both alike.
  const rounds: number[][] = [[], []];
  for (let round = 0; round < 5; round++) {
    pools.forEach((h, i) => {
      randomIo(n / 4, size, (off) => h.pool.read('v', off, 4096), 3 + round); // warm
      rounds[i]?.push(randomIo(n, size, (off) => h.pool.read('v', off, 4096), round));
    });
  }
  pools.forEach((h) => h.close());
  const none = median(rounds[0] ?? []);
  const snaps = median(rounds[1] ?? []);
  report({ name: '4KiB random reads: 100 snapshots vs none', a: 'none', b: '100 snaps', valueA: none / 1000, valueB: snaps / 1000, unit: 'kIOPS', ratio: snaps / none, goal: '>= 0.95' });
}

function cowBreakCost(chunkSize: number): void {
  const size = 256 * MiB;
  const chunks = size / chunkSize;
  const h = freshPool('cow', chunkSize);
  h.pool.createVolume('v', size);
  fillVolume(h.pool, 'v', size);
  const n = Math.min(chunks, quick ? 2000 : 4000);
  // One write per chunk, so that after the snapshot every write is a CoW break.
  const rng = new Prng(11);
  const order = Array.from({ length: chunks }, (_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j] ?? 0, order[i] ?? 0];
  }
  const picks = order.slice(0, n).map((c) => c * chunkSize + 4096 * rng.int(chunkSize / 4096));
  const data = Buffer.alloc(4096, 0x5a);
  const run = (): number => {
    const t0 = process.hrtime.bigint();
    for (const off of picks) h.pool.write('v', off, data);
    return n / (Number(process.hrtime.bigint() - t0) / 1e9);
  };
  run(); // owned chunks, warm the translation cache
  settle();
  const owned = run();
  h.pool.fork('v', 'v@s', { readOnly: true });
  const shared = run();
  h.close();
  report({ name: `4KiB random writes: owned vs shared, ${chunkSize / 1024}KiB chunks`, a: 'owned', b: 'shared', valueA: owned / 1000, valueB: shared / 1000, unit: 'kIOPS', ratio: owned / shared, goal: 'cost ratio <= 2' });
}

function versusRawFile(): void {
  const size = 256 * MiB;
  const n = quick ? 2000 : 4000;
  const data = Buffer.alloc(4096, 0x5a);
  // The raw file underneath, same pattern, same process.
  const raw = path.join(base, 'raw.img');
  const fd = fs.openSync(raw, 'w+');
  fs.ftruncateSync(fd, size);
  for (let off = 0; off < size; off += MiB) fs.writeSync(fd, Buffer.alloc(MiB, 1), 0, MiB, off);
  fs.fdatasyncSync(fd);
  settle();
  const rawW = randomIo(n * 4, size, (off) => fs.writeSync(fd, data, 0, 4096, off));
  const rawR = randomIo(n * 4, size, (off) => fs.readSync(fd, data, 0, 4096, off));
  fs.closeSync(fd);
  fs.rmSync(raw);
  const h2 = freshPool('vsraw');
  h2.pool.createVolume('v', size);
  fillVolume(h2.pool, 'v', size);
  randomIo(n, size, (off) => h2.pool.write('v', off, data), 5);
  const poolW = randomIo(n * 4, size, (off) => h2.pool.write('v', off, data));
  const poolR = randomIo(n * 4, size, (off) => h2.pool.read('v', off, 4096));
  h2.close();
  report({ name: '4KiB random writes: pool vs raw file', a: 'raw', b: 'pool', valueA: rawW / 1000, valueB: poolW / 1000, unit: 'kIOPS', ratio: poolW / rawW, goal: 'report' });
  report({ name: '4KiB random reads: pool vs raw file', a: 'raw', b: 'pool', valueA: rawR / 1000, valueB: poolR / 1000, unit: 'kIOPS', ratio: poolR / rawR, goal: 'report' });
}

async function openAfterKill(): Promise<void> {
  const bytes = quick ? 512 * MiB : 10 * GiB;
  const dir = path.join(base, 'kill');
  fs.rmSync(dir, { recursive: true, force: true });
  initPoolDir(dir, { chunkSize: 64 * 1024 });
  const here = path.dirname(fileURLToPath(import.meta.url));
  const child = spawn(process.execPath, [path.join(here, 'write-until-killed.js'), dir, String(bytes)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      if (d.toString().includes('written')) {
        child.kill('SIGKILL');
        resolve();
      }
    });
    child.on('exit', (code, signal) => (signal === 'SIGKILL' ? resolve() : reject(new Error(`writer exited ${code}`))));
  });
  await new Promise((r) => child.once('exit', r));
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    let h: PoolDir | null = null;
    times.push(ms(() => (h = PoolDir.open(dir))));
    (h as PoolDir | null)?.close();
  }
  const raw = ms(() => fs.closeSync(fs.openSync(path.join(dir, 'cowvol.data'), 'r')));
  report({ name: `pool open after kill -9, ${Math.round(bytes / GiB * 10) / 10} GiB written`, a: 'open(2) of data file', b: 'pool open', valueA: raw, valueB: median(times), unit: 'ms', ratio: median(times) / Math.max(raw, 0.001), goal: 'pool open < 1000 ms' });
  fs.rmSync(dir, { recursive: true, force: true });
}

async function main(): Promise<void> {
  console.log(`cowvol pool benchmarks in ${base}${quick ? ' (quick sizes)' : ''}`);
  snapshotAndCloneTimes();
  snapshotVsHistory();
  readsAfterSnapshots();
  cowBreakCost(64 * 1024);
  cowBreakCost(4096);
  versusRawFile();
  await openAfterKill();
  const out = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'results');
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'pool-bench.json'), `${JSON.stringify({ date: new Date().toISOString(), quick, results }, null, 2)}\n`);
  if (!args.includes('--dir')) fs.rmSync(base, { recursive: true, force: true });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
