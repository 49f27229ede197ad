/**
 * Items found by name: directory entries and extended attributes. Each sits
 * at (owner, type, hash(name) << 16 | n), n the first free slot among names
 * sharing the hash, and its value starts with the name, so a lookup reads
 * the few items of one hash and compares names.
 *
 * Value layouts: a directory entry is child ino (6 bytes) | file type (1) |
 * name; an xattr is name length (1) | name | value.
 */
import { fail } from '../errors.js';
import type { FsTree } from './fs-tree.js';
import { COLLISIONS, ItemType, key, nameBase } from './keys.js';

type NamedType = typeof ItemType.DIRENT | typeof ItemType.XATTR;

export interface Found {
  offset: number;
  value: Buffer;
}

export function nameOf(type: NamedType, value: Buffer): Buffer {
  return type === ItemType.DIRENT ? value.subarray(7) : value.subarray(1, 1 + (value[0] ?? 0));
}

export function findNamed(tree: FsTree, owner: number, type: NamedType, name: Buffer): Found | null {
  const base = nameBase(name);
  let found: Found | null = null;
  tree.items(owner, type, base, (offset, _k, value) => {
    if (offset >= base + COLLISIONS) return true;
    if (nameOf(type, value).equals(name)) {
      found = { offset, value };
      return true;
    }
    return false;
  });
  return found;
}

/** Puts a name that is not there yet; returns its offset. */
export function addNamed(tree: FsTree, owner: number, type: NamedType, name: Buffer, value: Buffer): number {
  const base = nameBase(name);
  let offset = base;
  tree.items(owner, type, base, (o) => {
    if (o !== offset) return true;
    offset++;
    return offset >= base + COLLISIONS;
  });
  if (offset >= base + COLLISIONS) fail('ENOSPC', `too many names share one hash in inode ${owner}`);
  tree.put(key(owner, type, offset), value);
  return offset;
}

export function direntValue(ino: number, fileType: number, name: Buffer): Buffer {
  const v = Buffer.alloc(7 + name.length);
  v.writeUIntLE(ino, 0, 6);
  v[6] = fileType;
  name.copy(v, 7);
  return v;
}

export function direntIno(value: Buffer): number {
  return value.readUIntLE(0, 6);
}

export function direntType(value: Buffer): number {
  return value[6] ?? 0;
}

export function xattrValue(name: Buffer, data: Buffer): Buffer {
  return Buffer.concat([Buffer.from([name.length]), name, data]);
}

/** An XATTR item's data (a copy, so it outlives the page it came from). */
export function xattrData(value: Buffer): Buffer {
  return Buffer.from(value.subarray(1 + (value[0] ?? 0)));
}
