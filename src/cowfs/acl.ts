/**
 * POSIX ACLs as the kernel hands them to a FUSE filesystem that asked for
 * them (FUSE_CAP_POSIX_ACL): the xattrs system.posix_acl_access and
 * system.posix_acl_default, in the kernel's xattr form (a u32 version, 2,
 * then per entry a u16 tag, u16 permission bits and u32 id). The kernel
 * validates them and enforces them; what it leaves to the filesystem, and
 * what lives here, is keeping the mode and the access ACL in step (a set
 * ACL moves the mode, a chmod moves the ACL) and what a new file gets from
 * its directory's default ACL. The rules are the kernel's own
 * (fs/posix_acl.c), which ext4 follows.
 */
import { fail } from '../errors.js';

export const ACL_ACCESS = 'system.posix_acl_access';
export const ACL_DEFAULT = 'system.posix_acl_default';

const VERSION = 2;
const HEADER = 4;
const ENTRY = 8;
const Tag = { USER_OBJ: 0x01, USER: 0x02, GROUP_OBJ: 0x04, GROUP: 0x08, MASK: 0x10, OTHER: 0x20 } as const;
const RWX = 7;

export interface AclEntry {
  tag: number;
  perm: number;
  id: number;
}

export function decodeAcl(b: Buffer): AclEntry[] {
  if (b.length < HEADER || (b.length - HEADER) % ENTRY !== 0 || b.readUInt32LE(0) !== VERSION) fail('EINVAL', 'not a POSIX ACL in the kernel\'s xattr form');
  const out: AclEntry[] = [];
  for (let at = HEADER; at < b.length; at += ENTRY) out.push({ tag: b.readUInt16LE(at), perm: b.readUInt16LE(at + 2) & RWX, id: b.readUInt32LE(at + 4) });
  if (!out.some((e) => e.tag === Tag.USER_OBJ) || !out.some((e) => e.tag === Tag.GROUP_OBJ) || !out.some((e) => e.tag === Tag.OTHER)) fail('EINVAL', 'a POSIX ACL needs user::, group:: and other:: entries');
  return out;
}

export function encodeAcl(entries: AclEntry[]): Buffer {
  const b = Buffer.alloc(HEADER + ENTRY * entries.length);
  b.writeUInt32LE(VERSION, 0);
  entries.forEach((e, i) => {
    b.writeUInt16LE(e.tag, HEADER + ENTRY * i);
    b.writeUInt16LE(e.perm, HEADER + ENTRY * i + 2);
    b.writeUInt32LE(e.id, HEADER + ENTRY * i + 4);
  });
  return b;
}

/**
 * The permission bits an access ACL stands for (the group bits are the
 * mask's when there is one), and whether the mode alone says as much
 * (then ext4 keeps no ACL at all).
 */
export function modeOfAcl(entries: AclEntry[], mode: number): { mode: number; minimal: boolean } {
  let bits = 0;
  let minimal = true;
  for (const e of entries) {
    if (e.tag === Tag.USER_OBJ) bits |= e.perm << 6;
    else if (e.tag === Tag.GROUP_OBJ) bits |= e.perm << 3;
    else if (e.tag === Tag.OTHER) bits |= e.perm;
    else minimal = false;
  }
  const mask = entries.find((e) => e.tag === Tag.MASK);
  if (mask !== undefined) bits = (bits & ~0o070) | (mask.perm << 3);
  return { mode: (mode & ~0o777) | bits, minimal };
}

/** A chmod's new permission bits, carried into the access ACL (the mask takes the group bits when there is one). */
export function chmodAcl(entries: AclEntry[], mode: number): AclEntry[] {
  const hasMask = entries.some((e) => e.tag === Tag.MASK);
  return entries.map((e) => {
    if (e.tag === Tag.USER_OBJ) return { ...e, perm: (mode >> 6) & RWX };
    if (e.tag === Tag.OTHER) return { ...e, perm: mode & RWX };
    if (e.tag === (hasMask ? Tag.MASK : Tag.GROUP_OBJ)) return { ...e, perm: (mode >> 3) & RWX };
    return e;
  });
}

/**
 * What a new inode made with `mode` gets from its directory's default ACL:
 * its mode (the requested bits narrowed by the ACL, no umask) and its
 * access ACL, null when the mode says it all.
 */
export function inheritAcl(dflt: AclEntry[], mode: number): { mode: number; access: AclEntry[] | null } {
  let bits = mode & 0o777;
  let minimal = true;
  const acl = dflt.map((e) => ({ ...e }));
  for (const e of acl) {
    if (e.tag === Tag.USER_OBJ) {
      e.perm &= (bits >> 6) & RWX;
      bits &= (e.perm << 6) | ~0o700;
    } else if (e.tag === Tag.OTHER) {
      e.perm &= bits & RWX;
      bits &= e.perm | ~0o007;
    } else if (e.tag !== Tag.GROUP_OBJ) minimal = false;
  }
  const group = acl.find((e) => e.tag === Tag.MASK) ?? acl.find((e) => e.tag === Tag.GROUP_OBJ);
  if (group !== undefined) {
    group.perm &= (bits >> 3) & RWX;
    bits &= (group.perm << 3) | ~0o070;
  }
  return { mode: (mode & ~0o777) | bits, access: minimal ? null : acl };
}
