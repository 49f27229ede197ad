/**
 * Child process for the kill -9 test: opens a real pool directory, writes
 * numbered 4 KiB blocks into volume VOL, flushes every few writes and, after
 * each flush returns, prints "flushed N" (every write up to N is durable).
 * Every 50th flush it also takes snapshot VOL@sN and prints "snap N".
 * Block content: the u32 N repeated; block position: (N * 7) % BLOCKS.
 */
import { PoolDir } from '../../src/blockstore/pool-dir.js';

export const BLOCKS = 2048;
export const BLOCK = 4096;

export function blockOf(n: number): number {
  return (n * 7) % BLOCKS;
}

export function pattern(n: number): Buffer {
  const buf = Buffer.alloc(BLOCK);
  for (let i = 0; i < BLOCK; i += 4) buf.writeUInt32LE(n, i);
  return buf;
}

async function main(): Promise<void> {
  const [dir, vol] = process.argv.slice(2);
  if (!dir || !vol) throw new Error('usage: crash-writer DIR VOL');
  const handle = PoolDir.open(dir, { cacheBytes: 256 * 1024 });
  const pool = handle.pool;
  pool.createVolume(vol, BLOCKS * BLOCK);
  process.stdout.write('ready\n');
  let flushes = 0;
  for (let n = 1; ; n++) {
    pool.write(vol, blockOf(n) * BLOCK, pattern(n));
    if (n % 5 === 0) {
      pool.flush();
      flushes++;
      process.stdout.write(`flushed ${n}\n`);
      if (flushes % 50 === 0) {
        pool.fork(vol, `${vol}@s${n}`, { readOnly: true });
        process.stdout.write(`snap ${n}\n`);
      }
    }
    // Let stdout drain now and then so the parent sees progress.
    if (n % 64 === 0) await new Promise((r) => setImmediate(r));
  }
}

if (process.argv[1]?.endsWith('crash-writer.js')) {
  main().catch((err: unknown) => {
    process.stderr.write(`${(err as Error).stack}\n`);
    process.exit(1);
  });
}
