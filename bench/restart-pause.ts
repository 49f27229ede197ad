/**
 * What a daemon restart costs the I/O it carries (`npm run bench:restart`).
 *
 * One daemon with a keeper serves a block volume and a cowfs mount; two
 * writers, one on the block file and one on a file in the cowfs mount,
 * each loop a 4 KiB pwrite and an fsync and time the gap between their
 * completed loops. Meanwhile the daemon is stopped with SIGTERM and a new
 * one started, ROUNDS times: every request waits in the kernel until the
 * new daemon takes the connections over. Prints, per writer, its loops, the
 * median gap and the longest (the pause a restart costs), and how long each
 * restart took from SIGTERM to the new daemon serving.
 *
 *   node dist/bench/restart-pause.js [--rounds 3] [--bin path/to/cowvol.js] [--dir DIR]
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { flag, repo } from './args.js';
import { startDaemon } from './daemon.js';

const bin = path.resolve(flag('--bin') ?? path.join(repo, 'bin', 'cowvol.js'));
const rounds = Number(flag('--rounds') ?? 3);
const base = flag('--dir') ?? fs.mkdtempSync(path.join(os.tmpdir(), 'cowvol-restart-'));
const SERVE = ['--handover-grace', '60', '--metrics-address', 'none'];

/** Loops pwrite + fsync until stdin closes, then prints its loops and its gaps in ms: median and longest. */
const WRITER = `
import os, sys, threading, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
gaps = []; last = time.monotonic(); i = 0
print('ready', flush=True)
while not stop.is_set():
    os.pwrite(fd, b'w' * 4096, (i % 256) * 4096); os.fsync(fd)
    now = time.monotonic(); gaps.append(now - last); last = now; i += 1
gaps.sort()
print('%d %.3f %.1f' % (i, gaps[len(gaps) // 2] * 1000, gaps[-1] * 1000), flush=True)
`;

function cowvol(pool: string, ...argv: string[]): void {
  const r = spawnSync(process.execPath, [bin, ...argv, '--pool', pool], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cowvol ${argv.join(' ')}: ${r.stderr}`);
}

function writer(file: string): { child: ChildProcess; said: Promise<string> } {
  const child = spawn('python3', ['-c', WRITER, file], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  const said = new Promise<string>((resolve) => {
    child.stdout?.on('data', (b: Buffer) => (out += b.toString()));
    child.once('exit', () => resolve(out));
  });
  return { child, said };
}

async function main(): Promise<void> {
  const pool = path.join(base, 'pool');
  const mount = path.join(base, 'mnt');
  const live = path.join(base, 'live');
  fs.mkdirSync(live, { recursive: true });
  cowvol(pool, 'pool', 'init');
  let d = await startDaemon(bin, pool, mount, SERVE);
  cowvol(pool, 'volume', 'create', 'bv', '--size', '64M');
  cowvol(pool, 'volume', 'create', 'fsv', '--size', '64M', '--kind', 'fs');
  cowvol(pool, 'mount', 'fsv', live);
  const writers = { 'block file': writer(path.join(mount, 'block', 'bv')), 'cowfs file': writer(path.join(live, 'data')) };
  const restarts: { stop: number; start: number }[] = [];
  try {
    for (let i = 0; i < rounds; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      const t0 = process.hrtime.bigint();
      const gone = new Promise((resolve) => d.once('exit', resolve));
      d.kill('SIGTERM');
      await gone;
      const t1 = process.hrtime.bigint();
      d = await startDaemon(bin, pool, mount, SERVE);
      restarts.push({ stop: Number(t1 - t0) / 1e6, start: Number(process.hrtime.bigint() - t1) / 1e6 });
    }
    await new Promise((r) => setTimeout(r, 1000));
  } finally {
    for (const w of Object.values(writers)) w.child.stdin?.end();
  }
  console.log('| writer (pwrite 4 KiB + fsync) | loops | median gap (ms) | longest gap (ms) |\n|---|---:|---:|---:|');
  for (const [name, w] of Object.entries(writers)) {
    const [loops, median, longest] = (await w.said).trim().split('\n').pop()?.split(' ') ?? [];
    console.log(`| ${name} | ${loops} | ${median} | ${longest} |`);
  }
  console.log(`\nrestarts, ms (SIGTERM to exit + start to serving): ${restarts.map((r) => `${r.stop.toFixed(0)} + ${r.start.toFixed(0)}`).join(', ')}`);
  cowvol(pool, 'stop');
  if (flag('--dir') === undefined) fs.rmSync(base, { recursive: true, force: true });
}

await main();
