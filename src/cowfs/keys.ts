/**
 * The keys of a filesystem volume's metadata tree (src/blockstore/btree.ts),
 * btrfs-style: inode number (8 bytes), item type (1), offset (7), compared
 * as bytes, so all items of one inode sit together and each type's items
 * run in offset order.
 *
 * | type    | inode      | offset                      | value                          |
 * |---------|------------|-----------------------------|--------------------------------|
 * | SUPER   | 0          | 0                           | counters (filesystem.ts)       |
 * | INODE   | ino        | 0                           | the inode (inode.ts)           |
 * | DIRENT  | dir        | name hash << 16 | n         | child ino, file type, name     |
 * | XATTR   | ino        | name hash << 16 | n         | name length, name, value       |
 * | SYMLINK | ino        | part                        | the target, in parts           |
 * | REGION  | ino        | region number               | first chunk index (regions.ts) |
 * | FREE    | 0          | class << 32 | first chunk   | nothing: a free region         |
 * | ORPHAN  | 0          | ino                         | nothing: unlinked, still open  |
 *
 * Names hash to 32 bits; n (16 bits) tells apart names with one hash, so a
 * lookup reads one short run of entries whatever the directory holds, and
 * a readdir cookie (the offset) stays valid across inserts and deletes
 * elsewhere, as ext4's hash-ordered cookies do.
 */
import zlib from 'node:zlib';

import { KEY_SIZE } from '../blockstore/btree.js';

export const ItemType = {
  SUPER: 0,
  INODE: 1,
  DIRENT: 2,
  XATTR: 3,
  SYMLINK: 4,
  REGION: 5,
  FREE: 6,
  ORPHAN: 7,
} as const;
export type ItemType = (typeof ItemType)[keyof typeof ItemType];

/** Offsets span 7 bytes; the hashed ones use 48 bits of them. */
const OFFSET_LIMIT = 2 ** 53;
export const COLLISIONS = 65536;

export function key(ino: number, type: ItemType, offset: number): Buffer {
  const k = Buffer.alloc(KEY_SIZE);
  k.writeUIntBE(ino, 2, 6);
  k[8] = type;
  k.writeUIntBE(Math.floor(offset / 2 ** 24), 9, 4);
  k.writeUIntBE(offset % 2 ** 24, 13, 3);
  return k;
}

/** The first key after every item of (ino, type). */
export function typeEnd(ino: number, type: ItemType): Buffer {
  return key(ino, type, OFFSET_LIMIT - 1);
}

/** The inode an INODE item's key names, or null for any other key. */
export function inodeOfKey(k: Buffer): number | null {
  return k.length === KEY_SIZE && k[8] === ItemType.INODE ? k.readUIntBE(2, 6) : null;
}

export function offsetOf(k: Buffer): number {
  return k.readUIntBE(9, 4) * 2 ** 24 + k.readUIntBE(13, 3);
}

/** A name's first possible offset; a lookup scans [base, base + COLLISIONS). */
export function nameBase(name: Buffer): number {
  return zlib.crc32(name) * COLLISIONS;
}
