/**
 * One filesystem volume's metadata tree, as cowfs reads and changes it:
 * typed access to its items (keys.ts) over the pool's fs calls. Every
 * change joins the pool's open transaction; an operation made of several
 * changes in one synchronous call is atomic across a crash.
 */
import type { Pool } from '../blockstore/pool.js';
import { fail } from '../errors.js';
import { type Inode, decodeInode, encodeInode } from './inode.js';
import { ItemType, key, typeEnd } from './keys.js';

/** Filesystem-wide counters: the SUPER item. */
export interface Counters {
  /** The next inode number to hand out; numbers are never reused. */
  nextIno: number;
  /** Chunk indices from here on were never part of a region. */
  nextChunk: number;
  /** Inodes in use (statfs). */
  inodes: number;
}

export const ROOT_INO = 1;

export class FsTree {
  constructor(
    readonly pool: Pool,
    readonly volume: number,
  ) {}

  get(k: Buffer): Buffer | undefined {
    return this.pool.fsGet(this.volume, k);
  }

  put(k: Buffer, value: Buffer): void {
    this.pool.fsPut(this.volume, k, value);
  }

  del(k: Buffer): boolean {
    return this.pool.fsDel(this.volume, k);
  }

  /** Items of (ino, type) with from <= offset, in offset order, until fn returns true. */
  items(ino: number, type: ItemType, from: number, fn: (offset: number, k: Buffer, value: Buffer) => boolean | void): void {
    this.pool.fsRange(this.volume, key(ino, type, from), typeEnd(ino, type), (k, v) => fn(k.readUIntBE(9, 4) * 2 ** 24 + k.readUIntBE(13, 3), k, v));
  }

  /** Every key of an inode's items of one type (collected first, so the caller may delete them). */
  keysOf(ino: number, type: ItemType): Buffer[] {
    const keys: Buffer[] = [];
    this.items(ino, type, 0, (_o, k) => {
      keys.push(k);
    });
    return keys;
  }

  inode(ino: number): Inode {
    const v = Number.isSafeInteger(ino) && ino > 0 ? this.get(key(ino, ItemType.INODE, 0)) : undefined;
    if (v === undefined) fail('ENOENT', `no inode ${ino}`);
    return decodeInode(ino, v);
  }

  hasInode(ino: number): boolean {
    return Number.isSafeInteger(ino) && ino > 0 && this.get(key(ino, ItemType.INODE, 0)) !== undefined;
  }

  saveInode(i: Inode): void {
    this.put(key(i.ino, ItemType.INODE, 0), encodeInode(i));
  }

  counters(): Counters {
    const v = this.get(key(0, ItemType.SUPER, 0));
    if (v === undefined) fail('ECORRUPT', `volume ${this.volume} holds no filesystem`);
    return { nextIno: v.readUIntLE(0, 6), nextChunk: v.readUIntLE(6, 6), inodes: v.readUIntLE(12, 6) };
  }

  saveCounters(c: Counters): void {
    this.put(key(0, ItemType.SUPER, 0), encodeCounters(c));
  }
}

export function encodeCounters(c: Counters): Buffer {
  const v = Buffer.alloc(18);
  v.writeUIntLE(c.nextIno, 0, 6);
  v.writeUIntLE(c.nextChunk, 6, 6);
  v.writeUIntLE(c.inodes, 12, 6);
  return v;
}
