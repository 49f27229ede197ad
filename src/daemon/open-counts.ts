/**
 * The cowfs mounts' open counts, in a memfd the keeper (or systemd's fd
 * store) holds beside the journal, so a daemon killed with -9 leaves them
 * to its successor: an unlinked file must outlive the kill while a process
 * still holds it open, and only the kernel's last RELEASE of it, which now
 * reaches the successor, frees it.
 *
 * Layout: MOUNT_REGIONS regions, one per mount, each of REGION_SLOTS
 * 24-byte slots (ino, count, unique: the FUSE request that set the count).
 * Slot 0 is the region's header: a magic while a mount uses it, and an
 * overflow flag once more files were open at once than fit. A slot is
 * written with one pwrite, so a kill leaves it old or new. The unique
 * lets a successor tell whether the OPEN or RELEASE the kernel resends
 * (FUSE_NOTIFY_RESEND) was counted already: only the one request the dead
 * daemon was serving can have been.
 *
 * Bounded: the memfd is MOUNT_REGIONS * REGION_BYTES (12 MiB), untouched
 * pages unallocated; a region past full says so, and its mount is then
 * mounted afresh after a kill (as before this existed), not taken over.
 */
import fs from 'node:fs';

import { assert } from '../errors.js';
import { native } from '../native.js';

const SLOT = 24;
/** Slots per mount, the header among them: open files one mount keeps across a kill. */
export const REGION_SLOTS = 4096;
const REGION_BYTES = SLOT * REGION_SLOTS;
/** As many as the handover carries (HANDED_MOUNTS_MAX). */
export const MOUNT_REGIONS = 128;
const MAGIC = 0x636f77666f70656en; // "cowfopen"

/** A region as a successor reads it: the open counts, and the request that last set each. */
export interface OpenRecord {
  opens: [number, number][];
  /** ino -> the FUSE unique of the OPEN, CREATE or RELEASE that last changed its count. */
  uniques: Map<number, number>;
}

export class OpenCounts {
  private readonly used = new Set<number>();
  /** Regions some mount used: one given out again is emptied first (a fresh one reads as zeros, and stays unallocated). */
  private readonly touched = new Set<number>();

  private constructor(readonly fd: number) {}

  static create(): OpenCounts {
    const fd = native.memfdWith(Buffer.alloc(0));
    fs.ftruncateSync(fd, MOUNT_REGIONS * REGION_BYTES);
    return new OpenCounts(fd);
  }

  /** A free region for a mount, emptied; null when every one is in use. */
  region(): OpenRegion | null {
    for (let i = 0; i < MOUNT_REGIONS; i++) {
      if (this.used.has(i)) continue;
      this.used.add(i);
      const dirty = this.touched.has(i);
      this.touched.add(i);
      return new OpenRegion(this.fd, i, dirty, () => this.used.delete(i));
    }
    return null;
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

export class OpenRegion {
  /** ino -> its slot. Lock: event loop only. */
  private readonly slots = new Map<number, number>();
  private readonly free: number[] = [];
  private overflowed = false;

  constructor(
    private readonly fd: number,
    readonly index: number,
    dirty: boolean,
    private readonly onClose: () => void,
  ) {
    if (dirty) fs.writeSync(fd, Buffer.alloc(REGION_BYTES), 0, REGION_BYTES, this.at(0));
    for (let s = REGION_SLOTS - 1; s >= 1; s--) this.free.push(s);
    this.header(false);
  }

  /** File `ino` is open `count` times now, as request `unique` left it. */
  set(ino: number, count: number, unique: number): void {
    let slot = this.slots.get(ino);
    if (slot === undefined) {
      if (count === 0) return;
      slot = this.free.pop();
      if (slot === undefined) return this.overflow();
      this.slots.set(ino, slot);
    }
    const b = Buffer.alloc(SLOT);
    if (count > 0) {
      b.writeBigUInt64LE(BigInt(ino), 0);
      b.writeBigUInt64LE(BigInt(count), 8);
      b.writeBigUInt64LE(BigInt(unique), 16);
    }
    fs.writeSync(this.fd, b, 0, SLOT, this.at(slot));
    if (count === 0) {
      this.slots.delete(ino);
      this.free.push(slot);
    }
  }

  /** The mount is gone: the region is free for another. */
  close(): void {
    fs.writeSync(this.fd, Buffer.alloc(SLOT), 0, SLOT, this.at(0));
    this.onClose();
  }

  private overflow(): void {
    if (!this.overflowed) this.header(true);
    this.overflowed = true;
  }

  private header(overflow: boolean): void {
    const b = Buffer.alloc(SLOT);
    b.writeBigUInt64LE(MAGIC, 0);
    b.writeBigUInt64LE(overflow ? 1n : 0n, 8);
    fs.writeSync(this.fd, b, 0, SLOT, this.at(0));
  }

  private at(slot: number): number {
    assert(slot >= 0 && slot < REGION_SLOTS, `open count slot ${slot}`);
    return this.index * REGION_BYTES + slot * SLOT;
  }
}

/** Region `index` of the open counts in `fd`, as a killed daemon left it; null if it is not in use or overflowed (the counts are not all there). */
export function readOpenRegion(fd: number, index: number): OpenRecord | null {
  if (!Number.isSafeInteger(index) || index < 0 || index >= MOUNT_REGIONS) return null;
  const b = Buffer.alloc(REGION_BYTES);
  if (fs.readSync(fd, b, 0, REGION_BYTES, index * REGION_BYTES) !== REGION_BYTES) return null;
  if (b.readBigUInt64LE(0) !== MAGIC || b.readBigUInt64LE(8) !== 0n) return null;
  const out: OpenRecord = { opens: [], uniques: new Map() };
  for (let s = 1; s < REGION_SLOTS; s++) {
    const ino = Number(b.readBigUInt64LE(s * SLOT));
    const count = Number(b.readBigUInt64LE(s * SLOT + 8));
    if (ino === 0 || count === 0) continue;
    out.opens.push([ino, count]);
    out.uniques.set(ino, Number(b.readBigUInt64LE(s * SLOT + 16)));
  }
  return out;
}
