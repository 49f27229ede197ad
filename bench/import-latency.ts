/**
 * Does a long admin operation stop FUSE? (`npm run bench:import`)
 *
 * A daemon serves two volumes. A probe opens `other`'s block file with
 * O_DIRECT before anything starts, then writes 4 KiB into a chunk never
 * written before (so each write needs the JavaScript slow path: allocation)
 * every PROBE_GAP_MS, timing each write. It runs alone first (baseline), then
 * while `cowvol import` copies IMAGE_SIZE of data into `big` through the
 * daemon. Prints the probe's latency percentiles for both phases and the
 * import's own time.
 *
 *   node dist/bench/import-latency.js [--image-size 2G] [--bin path/to/cowvol.js] [--dir DIR]
 *
 * --bin lets the same probe run against another build of cowvol (an older
 * checkout), so before and after are measured on the same disk.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { parseSize } from '../src/size.js';
import { args, flag, repo } from './args.js';
import { startDaemon } from './daemon.js';

const bin = path.resolve(flag('--bin') ?? path.join(repo, 'bin', 'cowvol.js'));
const imageSize = parseSize(flag('--image-size') ?? '2G');
const base = flag('--dir') ?? fs.mkdtempSync(path.join(os.tmpdir(), 'cowvol-import-lat-'));
const PROBE_GAP_MS = 20;

const PROBE = `
import mmap, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_DIRECT)
buf = mmap.mmap(-1, 4096); buf.write(b'p' * 4096)
chunk = int(sys.argv[2]); i = int(sys.argv[3])
print('ready', flush=True)
for line in sys.stdin:
    if line.strip() == 'stop': break
    t0 = time.monotonic(); os.pwritev(fd, [buf], i * chunk); t1 = time.monotonic()
    print('%.3f' % ((t1 - t0) * 1000), flush=True)
    i += 1
`;

function cowvol(pool: string, ...argv: string[]): string {
  const r = spawnSync(process.execPath, [bin, ...argv, '--pool', pool], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cowvol ${argv.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Writes `count` probes (or until `until` settles) `PROBE_GAP_MS` apart, into chunks first, first+1...; returns latencies in ms. */
async function probe(file: string, chunk: number, first: number, until: Promise<unknown> | null, count: number): Promise<number[]> {
  const p = spawn('python3', ['-c', PROBE, file, String(chunk), String(first)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines: string[] = [];
  let tail = '';
  let waiter: (() => void) | null = null;
  p.stdout.on('data', (b: Buffer) => {
    tail += b.toString();
    const parts = tail.split('\n');
    tail = parts.pop() ?? '';
    lines.push(...parts);
    waiter?.();
  });
  const nextLine = (): Promise<void> => new Promise((resolve) => (waiter = resolve));
  while (lines.length === 0) await nextLine();
  let done = false;
  void until?.then(() => (done = true));
  const out: number[] = [];
  for (let i = 0; until ? !done : i < count; i++) {
    const have = lines.length;
    p.stdin.write('go\n');
    while (lines.length === have) await nextLine();
    out.push(Number(lines[lines.length - 1]));
    await new Promise((r) => setTimeout(r, PROBE_GAP_MS));
  }
  p.stdin.end('stop\n');
  return out;
}

function summary(ms: number[]): string {
  const s = [...ms].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
  return `n=${s.length} p50=${at(0.5).toFixed(2)} ms p99=${at(0.99).toFixed(2)} ms max=${(s[s.length - 1] ?? NaN).toFixed(2)} ms`;
}

async function main(): Promise<void> {
  const pool = path.join(base, 'pool');
  const mount = path.join(base, 'mnt');
  const image = path.join(base, 'image.raw');
  cowvol(pool, 'pool', 'init');
  cowvol(pool, 'volume', 'create', 'big', '--size', String(imageSize));
  cowvol(pool, 'volume', 'create', 'other', '--size', '1G');
  // Data that is never all zeros, so every chunk is written.
  const block = Buffer.alloc(1 << 20);
  for (let i = 0; i < block.length; i += 8) block.writeUInt32LE((i * 2654435761) >>> 0, i);
  const fd = fs.openSync(image, 'w');
  for (let at = 0; at < imageSize; at += block.length) fs.writeSync(fd, block, 0, Math.min(block.length, imageSize - at), at);
  fs.closeSync(fd);
  const daemon = await startDaemon(bin, pool, mount);
  try {
    const other = path.join(mount, 'block', 'other');
    const chunk = 64 * 1024;
    const alone = await probe(other, chunk, 0, null, 100);
    const started = Date.now();
    const importing = new Promise<void>((resolve, reject) => {
      const c = spawn(process.execPath, [bin, 'import', image, 'big', '--pool', pool], { stdio: 'ignore' });
      c.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`import exited ${code}`))));
    });
    // Chunks from 1000 on: never written, so each probe takes the slow path.
    const during = await probe(other, chunk, 1000, importing, 0);
    await importing;
    const seconds = (Date.now() - started) / 1000;
    console.log(`cowvol: ${bin}`);
    console.log(`probe alone:         ${summary(alone)}`);
    console.log(`probe during import: ${summary(during)}`);
    console.log(`import of ${(imageSize / 2 ** 30).toFixed(1)} GiB: ${seconds.toFixed(1)} s (${(imageSize / 2 ** 20 / seconds).toFixed(0)} MiB/s)`);
  } finally {
    daemon.kill('SIGTERM');
    await new Promise((r) => daemon.once('exit', r));
    if (!args.includes('--keep')) fs.rmSync(base, { recursive: true, force: true });
  }
}

await main();
