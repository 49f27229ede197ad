/**
 * The fio harness (`npm run bench` or `cowvol bench`): one fixed job set,
 * run in the same session against three targets on the same disk:
 *   - cowvol: a block file served by `cowvol serve`;
 *   - reference: a minimal C FUSE passthrough (bench/reference/, built here
 *     with gcc) serving a plain file: the FUSE ceiling;
 *   - plain: a preallocated plain file, no FUSE at all.
 * Prints IOPS, MB/s and p99 latency per job with the ratios to the other two,
 * and writes bench/results/fio-bench.json and fio-bench.svg.
 *
 *   node dist/bench/fio-bench.js [--quick] [--dir DIR] [--runtime SECONDS]
 *
 * Caveat: both FUSE targets do buffered pread/pwrite on their backing file,
 * while fio's direct=1 on the plain file bypasses the page cache; compare
 * cowvol with the reference for FUSE cost, and with plain for the whole.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { isMountPoint } from '../src/host/mounts.js';
import { flag, quick, repo } from './args.js';
import { startReference } from './reference.js';

const base = flag('--dir') ?? fs.mkdtempSync(path.join(os.tmpdir(), 'cowvol-fio-'));
const runtime = Number(flag('--runtime') ?? (quick ? 2 : 8));
const size = quick ? 256 << 20 : 1 << 30;

interface Job {
  name: string;
  rw: string;
  bs: string;
  iodepth: number;
  numjobs: number;
  extra?: string[];
}

const JOBS: Job[] = [];
for (const numjobs of [1, 4]) {
  for (const iodepth of [1, 32]) {
    JOBS.push({ name: `4k-randread-qd${iodepth}-j${numjobs}`, rw: 'randread', bs: '4k', iodepth, numjobs });
    JOBS.push({ name: `4k-randwrite-qd${iodepth}-j${numjobs}`, rw: 'randwrite', bs: '4k', iodepth, numjobs });
    JOBS.push({ name: `4k-randrw70-qd${iodepth}-j${numjobs}`, rw: 'randrw', bs: '4k', iodepth, numjobs, extra: ['--rwmixread=70'] });
  }
  JOBS.push({ name: `1m-read-j${numjobs}`, rw: 'read', bs: '1M', iodepth: 8, numjobs });
  JOBS.push({ name: `1m-write-j${numjobs}`, rw: 'write', bs: '1M', iodepth: 8, numjobs });
}

interface Measure {
  iops: number;
  mbps: number;
  p99us: number;
}

interface FioSide {
  iops: number;
  bw_bytes: number;
  clat_ns?: { percentile?: Record<string, number> };
}

function run(cmd: string, argv: string[]): string {
  const r = spawnSync(cmd, argv, { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

function fio(file: string, job: Job): Measure {
  const out = run('fio', [
    '--name=bench',
    `--filename=${file}`,
    `--size=${size}`,
    `--rw=${job.rw}`,
    `--bs=${job.bs}`,
    `--iodepth=${job.iodepth}`,
    `--numjobs=${job.numjobs}`,
    '--direct=1',
    '--ioengine=libaio',
    '--group_reporting',
    '--time_based',
    `--runtime=${runtime}`,
    '--ramp_time=1',
    '--output-format=json',
    ...(job.extra ?? []),
  ]);
  const j = JSON.parse(out.slice(out.indexOf('{'))) as { jobs: { read: FioSide; write: FioSide }[] };
  const r = j.jobs[0];
  if (!r) throw new Error('fio printed no job');
  const p99 = (s: FioSide): number => s.clat_ns?.percentile?.['99.000000'] ?? 0;
  return {
    iops: r.read.iops + r.write.iops,
    mbps: (r.read.bw_bytes + r.write.bw_bytes) / 1e6,
    p99us: Math.max(p99(r.read), p99(r.write)) / 1000,
  };
}

function prefill(file: string): void {
  run('fio', ['--name=fill', `--filename=${file}`, `--size=${size}`, '--rw=write', '--bs=1M', '--direct=1', '--ioengine=libaio', '--iodepth=8']);
}

async function waitFor(test: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (test()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function main(): Promise<void> {
  console.log(`fio bench in ${base}: ${JOBS.length} jobs x 3 targets, ${runtime}s each, ${size >> 20} MiB files`);
  const children: ChildProcess[] = [];
  const mounts: string[] = [];
  try {
    // plain file
    const plain = path.join(base, 'plain.img');
    run('fallocate', ['-l', String(size), plain]);
    prefill(plain);

    // C reference
    const refImg = path.join(base, 'ref.img');
    run('fallocate', ['-l', String(size), refImg]);
    const refMnt = path.join(base, 'refmnt');
    fs.mkdirSync(refMnt);
    mounts.push(refMnt);
    children.push(await startReference('passthrough', base, refMnt, refImg));
    const ref = path.join(refMnt, 'data');
    prefill(ref);

    // cowvol
    const pool = path.join(base, 'pool');
    const mnt = path.join(base, 'mnt');
    const cowvol = path.join(repo, 'bin', 'cowvol.js');
    run(process.execPath, [cowvol, 'pool', 'init', '--pool', pool]);
    run(process.execPath, [cowvol, 'volume', 'create', 'bench', '--size', String(size), '--pool', pool]);
    const daemon = spawn(process.execPath, [cowvol, 'serve', '--pool', pool, '--mount', mnt, '--log-level', 'warn', '--handover-grace', '0'], { stdio: 'ignore' });
    children.push(daemon);
    mounts.push(mnt);
    await waitFor(() => fs.existsSync(path.join(pool, 'cowvol.sock')) && isMountPoint(mnt), 'cowvol serve');
    const block = path.join(mnt, 'block', 'bench');
    prefill(block);

    const results: { job: string; cowvol: Measure; reference: Measure; plain: Measure }[] = [];
    const head = `${'job'.padEnd(24)} ${'cowvol IOPS'.padStart(12)} ${'MB/s'.padStart(8)} ${'p99 us'.padStart(8)} | ${'ref IOPS'.padStart(10)} ${'plain IOPS'.padStart(11)} | ${'vs ref'.padStart(6)} ${'vs plain'.padStart(8)}`;
    console.log(head);
    for (const job of JOBS) {
      // Interleaved per job, so drift on the machine hits all three alike.
      const row = { job: job.name, cowvol: fio(block, job), reference: fio(ref, job), plain: fio(plain, job) };
      results.push(row);
      console.log(
        `${job.name.padEnd(24)} ${row.cowvol.iops.toFixed(0).padStart(12)} ${row.cowvol.mbps.toFixed(0).padStart(8)} ${row.cowvol.p99us.toFixed(0).padStart(8)} | ${row.reference.iops.toFixed(0).padStart(10)} ${row.plain.iops.toFixed(0).padStart(11)} | ${(row.cowvol.iops / row.reference.iops).toFixed(2).padStart(6)} ${(row.cowvol.iops / row.plain.iops).toFixed(2).padStart(8)}`,
      );
    }
    const out = path.join(repo, 'bench', 'results');
    fs.mkdirSync(out, { recursive: true });
    fs.writeFileSync(path.join(out, 'fio-bench.json'), `${JSON.stringify({ date: new Date().toISOString(), runtime, size, results }, null, 2)}\n`);
    fs.writeFileSync(path.join(out, 'fio-bench.svg'), chart(results.map((r) => ({ label: r.job, ref: r.cowvol.iops / r.reference.iops, plain: r.cowvol.iops / r.plain.iops }))));
    console.log(`results: ${path.join(out, 'fio-bench.json')} and fio-bench.svg`);
  } finally {
    for (const m of mounts) spawnSync('umount', ['-l', m]);
    for (const c of children) c.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    if (!flag('--dir')) fs.rmSync(base, { recursive: true, force: true });
  }
}

/** Grouped bars: cowvol IOPS as a fraction of the reference and of the plain file. */
function chart(rows: { label: string; ref: number; plain: number }[]): string {
  const w = 900;
  const rowH = 22;
  const left = 200;
  const scale = (w - left - 60) / Math.max(1.2, ...rows.flatMap((r) => [r.ref, r.plain]));
  const bars = rows
    .map((r, i) => {
      const y = 30 + i * rowH;
      return [
        `<text x="${left - 6}" y="${y + 13}" text-anchor="end" font-size="11">${r.label}</text>`,
        `<rect x="${left}" y="${y}" width="${(r.ref * scale).toFixed(1)}" height="9" fill="#3b7dd8"/>`,
        `<rect x="${left}" y="${y + 10}" width="${(r.plain * scale).toFixed(1)}" height="9" fill="#999"/>`,
        `<text x="${left + r.ref * scale + 4}" y="${y + 8}" font-size="9">${r.ref.toFixed(2)}</text>`,
      ].join('');
    })
    .join('\n');
  const h = 50 + rows.length * rowH;
  const one = left + scale;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif">
<text x="10" y="18" font-size="13">cowvol IOPS / C FUSE reference (blue) and / plain file (grey)</text>
<line x1="${one}" y1="24" x2="${one}" y2="${h - 10}" stroke="#c00" stroke-dasharray="3,3"/>
${bars}
</svg>
`;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
