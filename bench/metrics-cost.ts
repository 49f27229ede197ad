/**
 * What per-volume counting costs (`npm run bench:metrics`): two pools on
 * the same disk in the same run, each served by a daemon, one counting for
 * /metrics (the default) and one with --metrics-address none, which counts
 * nothing. Every round restarts both daemons with the roles swapped, so
 * whatever favours one pool or one daemon's threads falls on both sides; the
 * same 4 KiB fio jobs run against each, interleaved, and the ratio of IOPS
 * (counting / not counting) is printed per job. A scrape of the counting
 * daemon follows each of its jobs, as Prometheus would.
 *
 *   node dist/bench/metrics-cost.js [--quick] [--dir DIR] [--runtime SECONDS]
 */
import { type ChildProcess, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

import { isMountPoint } from '../src/host/mounts.js';
import { flag, quick, repo } from './args.js';
import { startDaemon } from './daemon.js';

const base = flag('--dir') ?? fs.mkdtempSync(path.join(os.tmpdir(), 'cowvol-metrics-'));
const runtime = Number(flag('--runtime') ?? (quick ? 3 : 8));
const rounds = quick ? 2 : 4;
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

interface Pool {
  name: string;
  dir: string;
  mnt: string;
  file: string;
}

function makePool(name: string): Pool {
  const dir = path.join(base, `${name}-pool`);
  const mnt = path.join(base, `${name}-mnt`);
  run(process.execPath, [cowvol, 'pool', 'init', '--pool', dir]);
  run(process.execPath, [cowvol, 'volume', 'create', 'bench', '--size', String(size), '--pool', dir]);
  return { name, dir, mnt, file: path.join(mnt, 'block', 'bench') };
}

/** Serves `p`, counting for /metrics or not; with the metrics address (null when not counting). */
async function serve(p: Pool, counting: boolean, children: ChildProcess[]): Promise<{ child: ChildProcess; metrics: string | null }> {
  const child = await startDaemon(cowvol, p.dir, p.mnt, ['--log-level', 'warn', '--metrics-address', counting ? '127.0.0.1:0' : 'none']);
  children.push(child);
  // The endpoint listens before the daemon says it serves.
  const metrics = (JSON.parse(run(process.execPath, [cowvol, 'pool', 'show', '--json', '--pool', p.dir])) as { metricsAddress: string | null }).metricsAddress;
  return { child, metrics };
}

async function stop(child: ChildProcess): Promise<void> {
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await gone;
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
  console.log(`metrics cost in ${base}: ${JOBS.length} jobs x ${rounds} rounds x 2 daemons, ${runtime}s each; the counting pool swaps each round`);
  const children: ChildProcess[] = [];
  const pools = [makePool('a'), makePool('b')];
  const sums = new Map<string, { on: number; off: number }>(JOBS.map((j) => [j.name, { on: 0, off: 0 }]));
  try {
    for (let r = 0; r < rounds; r++) {
      const daemons = await Promise.all(pools.map((p, i) => serve(p, i === r % 2, children)));
      if (r < 2) for (const p of pools) run('fio', ['--name=fill', `--filename=${p.file}`, `--size=${size}`, '--rw=write', '--bs=1M', '--direct=1', '--ioengine=libaio', '--iodepth=8']);
      for (const job of JOBS) {
        for (const i of r % 2 === 0 ? [0, 1] : [1, 0]) {
          const d = daemons[i];
          const sum = sums.get(job.name);
          if (d === undefined || sum === undefined) continue;
          const got = iops((pools[i] as Pool).file, job);
          if (d.metrics !== null) {
            sum.on += got;
            await scrape(d.metrics);
          } else sum.off += got;
        }
      }
      await Promise.all(daemons.map((d) => stop(d.child)));
    }
    console.log(`${'job'.padEnd(24)} ${'counting IOPS'.padStart(14)} ${'off IOPS'.padStart(10)} ${'ratio'.padStart(6)}`);
    for (const job of JOBS) {
      const s = sums.get(job.name) ?? { on: 0, off: 0 };
      console.log(`${job.name.padEnd(24)} ${(s.on / rounds).toFixed(0).padStart(14)} ${(s.off / rounds).toFixed(0).padStart(10)} ${(s.on / s.off).toFixed(3).padStart(6)}`);
    }
  } finally {
    for (const p of pools) if (isMountPoint(p.mnt)) spawnSync('umount', ['-l', p.mnt]);
    for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    if (!flag('--dir')) fs.rmSync(base, { recursive: true, force: true });
  }
}

await main();
