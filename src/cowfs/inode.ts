/**
 * An inode as the metadata tree stores it: 96 bytes, little-endian.
 *
 * mode u32 | uid u32 | gid u32 | nlink u32 | rdev u32 | flags u32 |
 * size u64 | chunks u32 (data chunks its regions map: st_blocks) |
 * atime, mtime, ctime, btime: s i64 + ns u32 each | parent u64 (a
 * directory's '..') | entries u32 (a directory's children).
 *
 * Inode numbers are handed out from a counter and never reused (2^48 of
 * them), so a FUSE node id or NFS handle can never name a later file.
 */
import { assert } from '../errors.js';

export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;
export const S_ISUID = 0o4000;
export const S_ISGID = 0o2000;

export interface Time {
  sec: number;
  nsec: number;
}

export interface Inode {
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  rdev: number;
  flags: number;
  size: number;
  chunks: number;
  atime: Time;
  mtime: Time;
  ctime: Time;
  btime: Time;
  parent: number;
  entries: number;
}

const SIZE = 96;

export function isDir(i: Pick<Inode, 'mode'>): boolean {
  return (i.mode & S_IFMT) === S_IFDIR;
}

export function isReg(i: Pick<Inode, 'mode'>): boolean {
  return (i.mode & S_IFMT) === S_IFREG;
}

export function isLink(i: Pick<Inode, 'mode'>): boolean {
  return (i.mode & S_IFMT) === S_IFLNK;
}

/** A write to it must reach JavaScript, which clears these bits. */
export function hasSetId(i: Pick<Inode, 'mode'>): boolean {
  return (i.mode & (S_ISUID | S_ISGID)) !== 0;
}

/** Wall-clock nanoseconds at the monotonic clock's zero: read once, so times never step back within a process. */
const WALL_AT_ZERO = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();

/** The time now in nanoseconds (the wall clock as of start-up, advanced by the monotonic clock). */
export function now(): Time {
  const wall = WALL_AT_ZERO + process.hrtime.bigint();
  return { sec: Number(wall / 1_000_000_000n), nsec: Number(wall % 1_000_000_000n) };
}

/** The wall clock at the monotonic clock's zero: what the addon adds to its own readings to stamp times as now() does. */
export function wallAtZero(): Time {
  return { sec: Number(WALL_AT_ZERO / 1_000_000_000n), nsec: Number(WALL_AT_ZERO % 1_000_000_000n) };
}

/** A CLOCK_MONOTONIC reading (the addon's, for writes it served) on the same scale as now(). */
export function fromMonotonic(sec: number, nsec: number): Time {
  const wall = WALL_AT_ZERO + BigInt(sec) * 1_000_000_000n + BigInt(nsec);
  return { sec: Number(wall / 1_000_000_000n), nsec: Number(wall % 1_000_000_000n) };
}

/** a is later than b. */
export function after(a: Time, b: Time): boolean {
  return a.sec > b.sec || (a.sec === b.sec && a.nsec > b.nsec);
}

function putTime(b: Buffer, at: number, t: Time): void {
  b.writeBigInt64LE(BigInt(t.sec), at);
  b.writeUInt32LE(t.nsec, at + 8);
}

function getTime(b: Buffer, at: number): Time {
  return { sec: Number(b.readBigInt64LE(at)), nsec: b.readUInt32LE(at + 8) };
}

export function encodeInode(i: Inode): Buffer {
  const b = Buffer.alloc(SIZE);
  [i.mode, i.uid, i.gid, i.nlink, i.rdev, i.flags].forEach((v, n) => b.writeUInt32LE(v >>> 0, 4 * n));
  b.writeUIntLE(i.size, 24, 6);
  b.writeUInt32LE(i.chunks, 32);
  [i.atime, i.mtime, i.ctime, i.btime].forEach((t, n) => putTime(b, 36 + 12 * n, t));
  b.writeUIntLE(i.parent, 84, 6);
  b.writeUInt32LE(i.entries, 92);
  return b;
}

export function decodeInode(ino: number, b: Buffer): Inode {
  assert(b.length === SIZE, `inode ${ino} item is ${b.length} bytes`);
  const u = (n: number): number => b.readUInt32LE(4 * n);
  return {
    ino,
    mode: u(0),
    uid: u(1),
    gid: u(2),
    nlink: u(3),
    rdev: u(4),
    flags: u(5),
    size: b.readUIntLE(24, 6),
    chunks: b.readUInt32LE(32),
    atime: getTime(b, 36),
    mtime: getTime(b, 48),
    ctime: getTime(b, 60),
    btime: getTime(b, 72),
    parent: b.readUIntLE(84, 6),
    entries: b.readUInt32LE(92),
  };
}
