/**
 * What per-volume counting costs (`npm run bench:metrics`): two daemons on
 * the same disk in the same run, one counting for /metrics (the default) and
 * one with --metrics-address none, which counts nothing. The same 4 KiB fio
 * jobs run against each, interleaved and repeated with the order swapped,
 * and the ratio of IOPS (counting / not counting) is printed per job. A
 * scrape of the counting daemon runs between its jobs, as Prometheus would.
 *
 *   node dist/bench/metrics-cost.js [--quick] [--dir DIR] [--runtime SECONDS]
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

import { isMountPoint } from '../src/host/mounts.js';
import { flag, quick, repo } from './args.js';

const base = flag('--dir') ?? fs.mkdtempSync(path.join(os.tmpdir(), 'cowvol-metrics-'));
const runtime = Number(flag('--runtime') ?? (quick ? 3 : 8));
const rounds = quick ? 2 : 3;
const size = 256 << 20;
const cowvol = path.join(repo, 'bin', 'cowvol.js');

const JOBS = [
  { name: '4k-randread-qd1-j1', rw: 'randread', iodepth: 1, numjobs: 1 },
  { name: '4k-randread-qd32-j4', rw: 'randread', iodepth: 32, numjobs: 4 },
  { name: '4k-randwrite-qd1-j1', rw: 'randwrite', iodepth: 1, numjobs: 1 },
  { name: '4k-randwrite-qd32-j4', rw: 'randwrite', iodepth: 32, numjobs: 4 },
];

function run(cmd: string, argv: string[]): string {
  const r = spawnSync(cmd, argv, { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

function iops(file: string, job: (typeof JOBS)[number]): number {
  const out = run('fio', [
    '--name=m', `--filename=${file}`, `--rw=${job.rw}`, '--bs=4k', `--size=${size}`, '--direct=1', '--ioengine=libaio',
    `--iodepth=${job.iodepth}`, `--numjobs=${job.numjobs}`, '--time_based', `--runtime=${runtime}`, '--group_reporting', '--output-format=json',
  ]);
  const j = (JSON.parse(out) as { jobs: { read: { iops: number }; write: { iops: number } }[] }).jobs[0];
  return (j?.read.iops ?? 0) + (j?.write.iops ?? 0);
}

interface Target {
  label: string;
  file: string;
  metrics: string | null;
}

async function start(name: string, metrics: string, children: ChildProcess[], mounts: string[]): Promise<Target> {
  const pool = path.join(base, `${name}-pool`);
  const mnt = path.join(base, `${name}-mnt`);
  run(process.execPath, [cowvol, 'pool', 'init', '--pool', pool]);
  run(process.execPath, [cowvol, 'volume', 'create', 'bench', '--size', String(size), '--pool', pool]);
  const d = spawn(process.execPath, [cowvol, 'serve', '--pool', pool, '--mount', mnt, '--log-level', 'warn', '--handover-grace', '0', '--metrics-address', metrics], {
    stdio: ['ignore', 'ignore', fs.openSync(path.join(base, `${name}.log`), 'w')],
  });
  children.push(d);
  mounts.push(mnt);
  for (let i = 0; i < 400 && !(fs.existsSync(path.join(pool, 'cowvol.sock')) && isMountPoint(mnt)); i++) await new Promise((r) => setTimeout(r, 25));
  const show = JSON.parse(run(process.execPath, [cowvol, 'pool', 'show', '--json', '--pool', pool])) as { metricsAddress: string | null };
  const file = path.join(mnt, 'block', 'bench');
  run('fio', ['--name=fill', `--filename=${file}`, `--size=${size}`, '--rw=write', '--bs=1M', '--direct=1', '--ioengine=libaio', '--iodepth=8']);
  return { label: name, file, metrics: show.metricsAddress };
}

function scrape(address: string): Promise<number> {
  return new Promise((resolve, reject) => {
    // No pooled connection: spawnSync(fio) blocks this loop, so a kept-alive socket's close goes unseen.
    http.get(`http://${address}/metrics`, { agent: false }, (res) => {
      let n = 0;
      res.on('data', (d: Buffer) => (n += d.length));
      res.on('end', () => resolve(n));
    }).on('error', reject);
  });
}

async function main(): Promise<void> {
  console.log(`metrics cost in ${base}: ${JOBS.length} jobs x ${rounds} rounds x 2 daemons, ${runtime}s each`);
  const children: ChildProcess[] = [];
  const mounts: string[] = [];
  try {
    const on = await start('counting', '127.0.0.1:0', children, mounts);
    const off = await start('not-counting', 'none', children, mounts);
    console.log(`${'job'.padEnd(24)} ${'counting IOPS'.padStart(14)} ${'off IOPS'.padStart(10)} ${'ratio'.padStart(6)}`);
    for (const job of JOBS) {
      const sums = new Map<string, number>([[on.label, 0], [off.label, 0]]);
      for (let r = 0; r < rounds; r++) {
        for (const target of r % 2 === 0 ? [on, off] : [off, on]) {
          sums.set(target.label, (sums.get(target.label) ?? 0) + iops(target.file, job));
          if (target.metrics !== null) await scrape(target.metrics);
        }
      }
      const a = (sums.get(on.label) ?? 0) / rounds;
      const b = (sums.get(off.label) ?? 0) / rounds;
      console.log(`${job.name.padEnd(24)} ${a.toFixed(0).padStart(14)} ${b.toFixed(0).padStart(10)} ${(a / b).toFixed(3).padStart(6)}`);
    }
  } finally {
    for (const m of mounts) spawnSync('umount', ['-l', m]);
    for (const c of children) c.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    if (!flag('--dir')) fs.rmSync(base, { recursive: true, force: true });
  }
}

await main();
