/**
 * kill -9 of a real process that writes and flushes into a pool directory
 * on the real filesystem. After each kill the pool must open (the flock died
 * with the process), check clean, hold every block up to the last reported
 * flush, and hold each snapshot exactly as it was at its flush.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import t from 'tap';

import { checkPool } from '../src/blockstore/check.js';
import { PoolDir, initPoolDir } from '../src/blockstore/pool-dir.js';
import { BLOCK, BLOCKS, blockOf, pattern } from './helpers/crash-writer.js';

const writer = path.join(path.dirname(fileURLToPath(import.meta.url)), 'helpers', 'crash-writer.js');

interface Round {
  volume: string;
  flushed: number;
  snaps: number[];
}

function runAndKill(dir: string, volume: string, killAfterMs: number): Promise<Round> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [writer, dir, volume], { stdio: ['ignore', 'pipe', 'pipe'] });
    const round: Round = { volume, flushed: 0, snaps: [] };
    let buffered = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      buffered += d.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        const [what, n] = line.split(' ');
        if (what === 'flushed') round.flushed = Number(n);
        if (what === 'snap') round.snaps.push(Number(n));
        if (what === 'ready') setTimeout(() => child.kill('SIGKILL'), killAfterMs);
      }
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (_code, signal) => {
      if (signal === 'SIGKILL') resolve(round);
      else reject(new Error(`writer exited on its own: ${stderr}`));
    });
  });
}

/** Latest write to each block at or before n (0 = never written). */
function stateAt(n: number): Uint32Array {
  const state = new Uint32Array(BLOCKS);
  for (let i = 1; i <= n; i++) state[blockOf(i)] = i;
  return state;
}

function decode(buf: Buffer): number | null {
  const n = buf.readUInt32LE(0);
  return buf.equals(n === 0 ? Buffer.alloc(BLOCK) : pattern(n)) ? n : null;
}

t.test('kill -9 during writes and flushes loses nothing flushed', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cowvol-kill-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  initPoolDir(dir, { chunkSize: 16384 });
  const rounds: Round[] = [];
  for (let r = 0; r < 3; r++) {
    rounds.push(await runAndKill(dir, `w${r}`, 300 + 250 * r));
    const handle = PoolDir.open(dir);
    try {
      const pool = handle.pool;
      const report = checkPool(pool);
      t.ok(report.ok, `round ${r}: check clean ${report.problems.join('; ')}`);
      for (const round of rounds) {
        t.ok(round.flushed > 0, `round ${r}: ${round.volume} flushed ${round.flushed} writes before the kill`);
        const want = stateAt(round.flushed);
        const got = pool.read(round.volume, 0, BLOCKS * BLOCK);
        let bad = 0;
        for (let b = 0; b < BLOCKS; b++) {
          const n = decode(got.subarray(b * BLOCK, (b + 1) * BLOCK));
          // A flushed block holds its last flushed write or a later one to the same place.
          if (n === null || n < (want[b] ?? 0) || (n !== 0 && blockOf(n) !== b)) bad++;
        }
        t.equal(bad, 0, `round ${r}: ${round.volume} holds every flushed block`);
        for (const s of round.snaps) {
          const snapWant = stateAt(s);
          const snap = pool.read(`${round.volume}@s${s}`, 0, BLOCKS * BLOCK);
          let wrong = 0;
          for (let b = 0; b < BLOCKS; b++) if (decode(snap.subarray(b * BLOCK, (b + 1) * BLOCK)) !== snapWant[b]) wrong++;
          t.equal(wrong, 0, `round ${r}: snapshot ${round.volume}@s${s} is exactly the state at its flush`);
        }
      }
    } finally {
      handle.close();
    }
  }
  t.ok(rounds.some((r) => r.snaps.length > 0), 'at least one snapshot was taken before a kill');
});
