/**
 * The on-disk page: 4 KiB, a 32-byte header and 1016 little-endian u32 slots
 * (or, for a volume record, a length-prefixed JSON body).
 *
 * Header: magic u32 | kind u8 | level u8 | u16 0 | page number u32 |
 * u32 0 | crc32 u32 | 12 bytes 0. The page number catches misdirected writes;
 * the CRC covers the whole page except its own field.
 */
import zlib from 'node:zlib';

import { CowvolError } from '../errors.js';

export const PAGE_SIZE = 4096;
export const HEADER_SIZE = 32;
export const SLOTS = (PAGE_SIZE - HEADER_SIZE) / 4;
export const PAGE_MAGIC = 0x47505643; // "CVPG"

/** What a page belongs to; check() uses it to catch a page owned twice. */
export const PageKind = {
  MAP: 1, // a volume's chunk map: shareable between volumes
  META_SPACE: 2, // refcounts of metadata pages
  DATA_SPACE: 3, // refcounts of data chunks
  DIRECTORY: 4, // volume id -> record page
  RECORD: 5, // one volume's record
  LOG: 6, // a commit's log: pages it wrote (commit-log.ts); referenced by the superblock only
  FS: 7, // a filesystem volume's metadata tree (btree.ts): shareable between volumes
} as const;
export type PageKind = (typeof PageKind)[keyof typeof PageKind];

const CRC_OFFSET = 16;

export function newPage(kind: PageKind, level: number): Buffer {
  const buf = Buffer.alloc(PAGE_SIZE);
  buf.writeUInt32LE(PAGE_MAGIC, 0);
  buf[4] = kind;
  buf[5] = level;
  return buf;
}

export function pageKind(buf: Buffer): number {
  return buf[4] ?? 0;
}

export function pageLevel(buf: Buffer): number {
  return buf[5] ?? 0;
}

export function slot(buf: Buffer, i: number): number {
  return buf.readUInt32LE(HEADER_SIZE + 4 * i);
}

export function setSlot(buf: Buffer, i: number, value: number): void {
  buf.writeUInt32LE(value, HEADER_SIZE + 4 * i);
}

function crc(buf: Buffer): number {
  const head = zlib.crc32(buf.subarray(0, CRC_OFFSET));
  return zlib.crc32(buf.subarray(CRC_OFFSET + 4), head);
}

/** Stamps the page number and checksum just before the page is written. */
export function sealPage(buf: Buffer, pageNo: number): void {
  buf.writeUInt32LE(pageNo, 8);
  buf.writeUInt32LE(crc(buf), CRC_OFFSET);
}

/** The checksum stamped by sealPage. */
export function pageCrc(buf: Buffer): number {
  return buf.readUInt32LE(CRC_OFFSET);
}

/** What is wrong with the page as page `pageNo`, or null. */
export function pageProblem(buf: Buffer, pageNo: number): string | null {
  if (buf.readUInt32LE(0) !== PAGE_MAGIC) return 'bad magic';
  if (buf.readUInt32LE(8) !== pageNo) return `it claims to be page ${buf.readUInt32LE(8)}`;
  if (pageCrc(buf) !== crc(buf)) return 'checksum mismatch';
  return null;
}

export function verifyPage(buf: Buffer, pageNo: number): void {
  const problem = pageProblem(buf, pageNo);
  if (problem !== null) throw new CowvolError('ECORRUPT', `metadata page ${pageNo} is damaged: ${problem}`);
}
