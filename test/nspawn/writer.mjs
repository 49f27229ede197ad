// Runs inside the systemd-nspawn container (test/systemd-nspawn.test.ts):
// writes 4 KiB blocks round a file (a block file, or a file in a cowfs
// mount), with an fsync every 32, until /results/stop appears; then reads
// every block back. Any error a write or fsync gets is recorded;
// /results/TAG.json holds the outcome, and /results/TAG.progress the writes
// so far (every 1024). TAG is the second argument, `writer` if none.
import fs from 'node:fs';

const file = process.argv[2];
const tag = process.argv[3] ?? 'writer';
const BLOCKS = 4096;
const fd = fs.openSync(file, 'r+');
const pattern = (n) => {
  const b = Buffer.alloc(4096, n & 0xff);
  b.writeUInt32LE(n, 0);
  return b;
};
const errors = [];
const last = new Map();
const started = Date.now();
let n = 0;
while (!fs.existsSync('/results/stop') && Date.now() - started < 300000 && errors.length < 5) {
  try {
    fs.writeSync(fd, pattern(n), 0, 4096, (n % BLOCKS) * 4096);
    last.set(n % BLOCKS, n);
    if (n % 32 === 31) fs.fsyncSync(fd);
    // Progress for the scenario, which waits on it rather than on a clock.
    if (n % 1024 === 1023) fs.writeFileSync(`/results/${tag}.progress`, String(n + 1));
  } catch (err) {
    errors.push(`write ${n}: ${err.code}`);
  }
  n++;
}
fs.fsyncSync(fd);
let bad = 0;
for (const [block, m] of last) {
  const b = Buffer.alloc(4096);
  fs.readSync(fd, b, 0, 4096, block * 4096);
  if (!b.equals(pattern(m))) bad++;
}
fs.writeFileSync(`/results/${tag}.json`, JSON.stringify({ writes: n, errors, bad }));
