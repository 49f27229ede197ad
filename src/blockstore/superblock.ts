/**
 * The superblock: the one place that says which pages are the pool.
 *
 * Two copies live in pages 0 and 1; commit N writes slot N % 2, so a torn
 * superblock write can only damage the copy being replaced. Format 2 adds
 * the commit log (commit-log.ts): the pages the commit wrote and their
 * checksums, so a commit that needs one disk flush can be told whole from
 * torn. Opening reads both copies; the newer is used only if every page its
 * log names holds what the commit wrote (see pool.ts, `Pool.open`).
 *
 * Format 1 (no log) is still read: its commits were made with a flush
 * before the superblock was written, so they need no checking. It is never
 * written again; a format this code does not know is refused, not skipped.
 */
import zlib from 'node:zlib';

import { CowvolError, assert, fail } from '../errors.js';
import type { Disk } from './disk.js';
import { PAGE_SIZE } from './page.js';
import type { SpaceState } from './space-map.js';
import type { Tree } from './radix-tree.js';

const MAGIC = Buffer.from('COWVOLSB', 'latin1');
export const FORMAT_VERSION = 2;
/** Bytes covered by the checksum (which sits in the last 4), per format. */
const LENGTHS: Record<number, number> = { 1: 108, 2: 124 };

/** Where a commit's log lives and what it must hold (commit-log.ts). */
export interface LogRef {
  /** First page of the log; its pages are consecutive. */
  start: number;
  pages: number;
  entries: number;
  /** crc32 over every entry, in order. */
  crc: number;
}

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
  /** What the commit wrote; null for a format-1 commit, which needs no check. */
  log: LogRef | null;
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
  assert(sb.log !== null, 'a format-2 superblock names its commit log');
  const length = LENGTHS[FORMAT_VERSION] as number;
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
  buf.writeUInt32LE(sb.log.start, 104);
  buf.writeUInt32LE(sb.log.pages, 108);
  buf.writeUInt32LE(sb.log.entries, 112);
  buf.writeUInt32LE(sb.log.crc, 116);
  buf.writeUInt32LE(zlib.crc32(buf.subarray(0, length - 4)), length - 4);
  return buf;
}

/**
 * Returns null when the slot does not hold a valid superblock, and throws
 * for one of a newer format than this code knows: skipping
 * it would open an older commit and lose the newer one.
 */
export function decodeSuperblock(buf: Buffer): Superblock | null {
  if (!buf.subarray(0, 8).equals(MAGIC)) return null;
  const version = buf.readUInt32LE(8);
  const length = LENGTHS[version];
  if (length === undefined) {
    // Magic and version share the first sector, so a torn write cannot forge them.
    if (version > FORMAT_VERSION) fail('ENOTPOOL', `the pool was written by a newer cowvol (format ${version}; this one reads 1 and 2): run that version`);
    return null;
  }
  if (buf.readUInt32LE(length - 4) !== zlib.crc32(buf.subarray(0, length - 4))) return null;
  if (buf.readUInt32LE(12) !== PAGE_SIZE) return null;
  const log =
    version === 1 ? null : { start: buf.readUInt32LE(104), pages: buf.readUInt32LE(108), entries: buf.readUInt32LE(112), crc: buf.readUInt32LE(116) };
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
    log,
  };
}

/** The valid superblocks, newest first (at most two). */
export function readSuperblocks(disk: Disk, where: string): Superblock[] {
  const slots: Superblock[] = [];
  for (const i of [0, 1]) {
    const buf = Buffer.alloc(PAGE_SIZE);
    disk.read(buf, i * PAGE_SIZE);
    const sb = decodeSuperblock(buf);
    if (sb) slots.push(sb);
  }
  if (slots.length === 0) {
    throw new CowvolError('ENOTPOOL', `${where} is not a cowvol pool (no valid superblock): run 'cowvol pool init' there first`);
  }
  return slots.sort((a, b) => b.generation - a.generation);
}

export function writeSuperblock(disk: Disk, sb: Superblock): void {
  disk.write(encodeSuperblock(sb), (sb.generation % 2) * PAGE_SIZE);
}
