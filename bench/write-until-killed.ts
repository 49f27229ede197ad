/**
 * Helper for the pool-open benchmark: writes BYTES into a fresh volume of a
 * pool directory in 1 MiB writes, flushing every 256 MiB, then prints
 * "written" and keeps writing unflushed data until it is killed.
 */
import { PoolDir } from '../src/blockstore/pool-dir.js';

const [dir, bytesArg] = process.argv.slice(2);
const bytes = Number(bytesArg);
const h = PoolDir.open(dir ?? '');
h.pool.createVolume('big', bytes + 64 * 1024 * 1024);
const buf = Buffer.alloc(1 << 20, 0xc3);
for (let off = 0; off < bytes; off += buf.length) {
  h.pool.write('big', off, buf);
  if (off % (256 << 20) === 0) h.pool.flush();
}
h.pool.flush();
process.stdout.write('written\n');
for (let off = 0; ; off = (off + buf.length) % bytes) h.pool.write('big', off, buf);
