/**
 * Raw images in and out of volumes. Import writes a file's bytes from offset
 * 0 and leaves runs of zeros unallocated (discarding what was there); export
 * writes a sparse file of the volume's size, skipping unmapped and all-zero
 * chunks.
 */
import fs from 'node:fs';

import { fail } from '../errors.js';
import type { Pool } from '../blockstore/pool.js';
import { Progress } from './progress.js';

const BATCH_CHUNKS = 16;

function isZero(buf: Buffer): boolean {
  for (let i = 0; i + 8 <= buf.length; i += 8) if (buf.readBigUInt64LE(i) !== 0n) return false;
  for (let i = buf.length & ~7; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}

export interface ImportResult {
  bytes: number;
  writtenBytes: number;
}

export function importImage(pool: Pool, file: string, volume: string): ImportResult {
  const v = pool.volume(volume);
  if (v.readOnly) fail('EROFS', `'${volume}' is a read-only snapshot: import into a volume`);
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch {
    fail('ENOENT', `cannot read ${file}: no such file`);
  }
  if (!stat.isFile()) fail('EINVAL', `${file} is not a regular file`);
  const size = stat.size;
  if (size > v.size) fail('EFBIG', `${file} is ${size} bytes, larger than '${volume}' (${v.size} bytes): grow the volume first`);
  const fd = fs.openSync(file, 'r');
  const progress = new Progress(`import ${volume}`);
  const chunk = pool.chunkSize;
  const buf = Buffer.alloc(chunk * BATCH_CHUNKS);
  let written = 0;
  try {
    for (let offset = 0; offset < size; ) {
      const want = Math.min(buf.length, size - offset);
      let got = 0;
      while (got < want) {
        const n = fs.readSync(fd, buf, got, want - got, offset + got);
        if (n === 0) fail('EIO', `${file} shrank while being imported`);
        got += n;
      }
      for (let at = 0; at < got; at += chunk) {
        const piece = buf.subarray(at, Math.min(at + chunk, got));
        if (isZero(piece)) {
          pool.discard(volume, offset + at, piece.length);
        } else {
          pool.write(volume, offset + at, piece);
          written += piece.length;
        }
      }
      offset += got;
      progress.update(offset, size);
    }
    pool.flush();
  } finally {
    progress.done();
    fs.closeSync(fd);
  }
  return { bytes: size, writtenBytes: written };
}

export function exportImage(pool: Pool, source: string, file: string): { bytes: number; dataBytes: number } {
  const v = pool.volume(source);
  const chunk = pool.chunkSize;
  const total = v.mapped;
  const fd = fs.openSync(file, 'w', 0o600);
  const progress = new Progress(`export ${source}`);
  let dataBytes = 0;
  let done = 0;
  try {
    fs.ftruncateSync(fd, v.size);
    // Streams chunk by chunk: memory stays flat whatever the volume's size.
    pool.forEachMapped(source, (index) => {
      const offset = index * chunk;
      const data = pool.read(source, offset, Math.min(chunk, v.size - offset));
      if (!isZero(data)) {
        fs.writeSync(fd, data, 0, data.length, offset);
        dataBytes += data.length;
      }
      progress.update(++done, total);
    });
    fs.fsyncSync(fd);
  } finally {
    progress.done();
    fs.closeSync(fd);
  }
  return { bytes: v.size, dataBytes };
}
