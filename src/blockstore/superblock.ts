/**
 * The superblock: the one place that says which pages are the pool.
 *
 * Two copies live in pages 0 and 1; commit N writes slot N % 2, so a torn
 * superblock write can only damage the copy being replaced. Opening picks the
 * valid copy with the highest generation: no scan, no replay.
 */
import zlib from 'node:zlib';

import { CowvolError } from '../errors.js';
import type { Disk } from './disk.js';
import { PAGE_SIZE } from './page.js';
import type { SpaceState } from './space-map.js';
import type { Tree } from './radix-tree.js';

const MAGIC = Buffer.from('COWVOLSB', 'latin1');
export const FORMAT_VERSION = 1;
const LENGTH = 108;

export interface Superblock {
  generation: number;
  chunkSize: number;
  /** Most data chunks the pool may use; 0 for "as many as the disk holds". */
  capacityChunks: number;
  meta: SpaceState;
  data: SpaceState;
  directory: Tree;
  nextVolumeId: number;
  createdAt: number;
  uuid: string;
}

function writeSpace(buf: Buffer, at: number, s: SpaceState): void {
  buf.writeUInt32LE(s.tree.root, at);
  buf.writeUInt32LE(s.tree.levels, at + 4);
  buf.writeUInt32LE(s.highWater, at + 8);
  buf.writeUInt32LE(s.used, at + 12);
}

function readSpace(buf: Buffer, at: number): SpaceState {
  return {
    tree: { root: buf.readUInt32LE(at), levels: buf.readUInt32LE(at + 4) },
    highWater: buf.readUInt32LE(at + 8),
    used: buf.readUInt32LE(at + 12),
  };
}

export function encodeSuperblock(sb: Superblock): Buffer {
  const buf = Buffer.alloc(PAGE_SIZE);
  MAGIC.copy(buf, 0);
  buf.writeUInt32LE(FORMAT_VERSION, 8);
  buf.writeUInt32LE(PAGE_SIZE, 12);
  buf.writeUInt32LE(sb.chunkSize, 16);
  buf.writeUIntLE(sb.generation, 20, 6);
  writeSpace(buf, 28, sb.meta);
  writeSpace(buf, 44, sb.data);
  buf.writeUInt32LE(sb.directory.root, 60);
  buf.writeUInt32LE(sb.directory.levels, 64);
  buf.writeUInt32LE(sb.nextVolumeId, 68);
  buf.writeUIntLE(sb.capacityChunks, 72, 6);
  buf.writeUIntLE(sb.createdAt, 80, 6);
  Buffer.from(sb.uuid.replace(/-/g, ''), 'hex').copy(buf, 88);
  buf.writeUInt32LE(zlib.crc32(buf.subarray(0, LENGTH - 4)), LENGTH - 4);
  return buf;
}

/** Returns null when the slot does not hold a valid superblock. */
export function decodeSuperblock(buf: Buffer): Superblock | null {
  if (!buf.subarray(0, 8).equals(MAGIC)) return null;
  if (buf.readUInt32LE(LENGTH - 4) !== zlib.crc32(buf.subarray(0, LENGTH - 4))) return null;
  if (buf.readUInt32LE(8) !== FORMAT_VERSION || buf.readUInt32LE(12) !== PAGE_SIZE) return null;
  const hex = buf.subarray(88, 104).toString('hex');
  return {
    chunkSize: buf.readUInt32LE(16),
    generation: buf.readUIntLE(20, 6),
    meta: readSpace(buf, 28),
    data: readSpace(buf, 44),
    directory: { root: buf.readUInt32LE(60), levels: buf.readUInt32LE(64) },
    nextVolumeId: buf.readUInt32LE(68),
    capacityChunks: buf.readUIntLE(72, 6),
    createdAt: buf.readUIntLE(80, 6),
    uuid: `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`,
  };
}

export function readSuperblock(disk: Disk, where: string): Superblock {
  const slots = [0, 1].map((i) => {
    const buf = Buffer.alloc(PAGE_SIZE);
    disk.read(buf, i * PAGE_SIZE);
    return decodeSuperblock(buf);
  });
  let best: Superblock | null = null;
  for (const sb of slots) if (sb && (!best || sb.generation > best.generation)) best = sb;
  if (!best) {
    throw new CowvolError('ENOTPOOL', `${where} is not a cowvol pool (no valid superblock): run 'cowvol pool init' there first`);
  }
  return best;
}

export function writeSuperblock(disk: Disk, sb: Superblock): void {
  disk.write(encodeSuperblock(sb), (sb.generation % 2) * PAGE_SIZE);
}
