/**
 * Raw images in and out of volumes. Import writes a file's bytes from offset
 * 0 and leaves runs of zeros unallocated (discarding what was there); export
 * writes a sparse file of the volume's size, skipping unmapped and all-zero
 * chunks. Both run in slices (slices.ts) and report progress per slice.
 *
 * Caveat: an export of a volume that is written meanwhile is not one
 * instant's image (other writes land between slices); export a snapshot for
 * that. An import and other writers of the same volume interleave like any
 * two writers of a disk.
 */
import fs from 'node:fs';

import { fail } from '../errors.js';
import type { Pool } from '../blockstore/pool.js';
import { type ProgressFn, SLICE_BYTES, yieldSlice } from './slices.js';

function isZero(buf: Buffer): boolean {
  for (let i = 0; i + 8 <= buf.length; i += 8) if (buf.readBigUInt64LE(i) !== 0n) return false;
  for (let i = buf.length & ~7; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}

/** Slices between two write-backs of the data file during an import. */
const WRITE_BACK_SLICES = 8;

export interface ImportResult {
  bytes: number;
  writtenBytes: number;
}

export async function importImage(pool: Pool, file: string, volume: string, progress?: ProgressFn): Promise<ImportResult> {
  const v = pool.stat(volume);
  refuseFilesystem(v.kind, volume);
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
  const chunk = pool.chunkSize;
  const buf = Buffer.alloc(Math.max(chunk, SLICE_BYTES));
  let written = 0;
  let writingBack: Promise<void> = Promise.resolve();
  try {
    for (let offset = 0; offset < size; ) {
      const want = Math.min(buf.length, size - offset);
      // A FUSE fsync's commit may be waiting for the disk: writing now would finish it on the event loop.
      await pool.idle();
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
      progress?.(offset, size);
      // Keep dirty data bounded, so no commit (on the event loop) waits on a long sync:
      // one write-back in flight while the next slices are written.
      if ((offset / buf.length) % WRITE_BACK_SLICES === 0) {
        await writingBack;
        writingBack = pool.writeBackData();
      }
      await yieldSlice();
    }
    await writingBack;
    await pool.flushAsync();
  } finally {
    // Settled before returning either way: no write-back outlives the import.
    await writingBack.catch(() => undefined);
    fs.closeSync(fd);
  }
  return { bytes: size, writtenBytes: written };
}

export interface ExportResult {
  bytes: number;
  dataBytes: number;
}

export async function exportImage(pool: Pool, source: string, file: string, progress?: ProgressFn): Promise<ExportResult> {
  const v = pool.stat(source);
  refuseFilesystem(v.kind, source);
  const chunk = pool.chunkSize;
  const total = v.allocatedBytes / chunk;
  const perSlice = Math.max(1, Math.floor(SLICE_BYTES / chunk));
  const chunks = Math.ceil(v.size / chunk);
  const fd = fs.openSync(file, 'w', 0o600);
  let dataBytes = 0;
  let done = 0;
  try {
    fs.ftruncateSync(fd, v.size);
    // A slice at a time over the index space: memory stays flat whatever the volume's size.
    for (let from = 0; from < chunks; from += perSlice) {
      const indices: number[] = [];
      pool.forEachMapped(source, (index) => indices.push(index), from, from + perSlice);
      for (const index of indices) {
        const offset = index * chunk;
        const data = pool.read(source, offset, Math.min(chunk, v.size - offset));
        if (!isZero(data)) {
          fs.writeSync(fd, data, 0, data.length, offset);
          dataBytes += data.length;
        }
      }
      done += indices.length;
      if (indices.length > 0) {
        progress?.(done, total);
        await yieldSlice();
      }
      // Jump over unmapped stretches instead of stepping through them.
      const next = pool.nextMapped(source, from + perSlice, chunks);
      if (next < 0) break;
      from = Math.floor(next / perSlice) * perSlice - perSlice;
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return { bytes: v.size, dataBytes };
}

/** An image is a disk's bytes; a filesystem volume has none to give (copy its files from a mount instead). */
function refuseFilesystem(kind: string, name: string): void {
  if (kind !== 'block') fail('EOPNOTSUPP', `'${name}' is a filesystem volume: images are of block volumes; mount it and copy its files (e.g. tar) instead`);
}
