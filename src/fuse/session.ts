/**
 * A mounted FUSE session (native/src/fuse_session.c) with typed requests.
 *
 * The addon serves mapped reads and writes on its own threads and sends
 * every other request to `handler` on the event loop; the handler must call
 * `reply` exactly once per request, before it returns or later.
 */
import fs from 'node:fs';

import type { ItemChange } from '../blockstore/pool.js';
import type { KernelTimes } from '../cowfs/filesystem.js';
import type { Time } from '../cowfs/inode.js';
import { fail } from '../errors.js';
import { type FuseHandle, native } from '../native.js';

export const Op = {
  LOOKUP: 1,
  GETATTR: 2,
  SETATTR: 3,
  READDIR: 4,
  OPEN: 5,
  READ: 6,
  WRITE: 7,
  FSYNC: 8,
  FALLOCATE: 9,
  LSEEK: 10,
  STATFS: 11,
  /** Not a request and never answered: the chunk table's reserve runs low. */
  LOW: 12,
} as const;
export type Op = (typeof Op)[keyof typeof Op];

/** What volume_stats.c counts, in its order. */
export const STAT_KINDS = ['read', 'write', 'flush', 'discard'] as const;
export type StatKind = (typeof STAT_KINDS)[number];
/** Completed requests of one kind, their bytes and the seconds spent on them (request in to reply out). */
export type IoCounts = Record<StatKind, { count: number; bytes: number; seconds: number }>;

/** A latency histogram: counts by bucket (not cumulative) with each bucket's upper bound in seconds, and their total seconds. */
export interface Latency {
  buckets: { le: number; count: number }[];
  seconds: number;
}

/** The first latency bucket's bound (volume_stats.h, STAT_BUCKET_FIRST_NS); each next one doubles. */
const LATENCY_FIRST_BOUND_US = 16;
const NUL = Buffer.alloc(1);

export function emptyCounts(): IoCounts {
  return {
    read: { count: 0, bytes: 0, seconds: 0 },
    write: { count: 0, bytes: 0, seconds: 0 },
    flush: { count: 0, bytes: 0, seconds: 0 },
    discard: { count: 0, bytes: 0, seconds: 0 },
  };
}

/** How many times, 10 ms apart, to look for the kernel's INIT of a new mount. */
const INIT_WAIT_TRIES = 500;
/** Most tree items one journal unit holds (fuse_session.c): a larger change commits instead. */
const JOURNAL_BATCH_MAX = 4096;

export interface FuseRequest {
  id: number;
  /** Op for the block files, FsOp (cowfs-mount.ts) for a cowfs mount. */
  op: number;
  ino: number;
  /** Op-specific numbers; see each op in block-files.ts. */
  n: [number, number, number];
  data?: Buffer;
  name?: string;
  /** cowfs: the name as bytes, and rename's new name. */
  bytes?: Buffer;
  bytes2?: Buffer;
  /** Who asked. */
  uid: number;
  gid: number;
  /** cowfs: the kernel's id of the request, and whether it is a resend of one a killed daemon read (FUSE_NOTIFY_RESEND). */
  unique: number;
  resent: boolean;
}

export interface SessionOptions {
  mountpoint: string;
  /** An fd of the pool's data file, for the native fast path. */
  dataFd: number;
  chunkSize: number;
  /** Entries in the native translation table. */
  tableSlots: number;
  /** Mount options for libfuse's -o. */
  options: string;
  /** Serve a connection a previous daemon handed over (keeper) instead of mounting. */
  takeover?: Handover;
  /** A cowfs mount, served by this many FUSE threads (the block files use 16). */
  filesystemThreads?: number;
}

/** A file a cowfs mount wrote natively (FuseSession.written). */
export interface Written {
  ino: number;
  sec: number;
  nsec: number;
  end: number;
}

/** What the next daemon needs to serve a live connection: its fd and the kernel's INIT request. */
export interface Handover {
  fd: number;
  init: Buffer;
}

export class FuseSession {
  private readonly handle: FuseHandle;
  private readonly closed: Promise<void>;
  private unmounting = false;
  /** Detaching: the requests still being read are served as usual, for the pool stays open until they are done. */
  private detaching = false;
  private readonly mountpoint: string;

  /** `onLow`: the table's reserve of chunks for first writes runs low (see MappingListener.reserve). */
  constructor(opts: SessionOptions, handler: (req: FuseRequest) => void, onLow: () => void = () => {}) {
    let onClosed: () => void = () => {};
    this.closed = new Promise<void>((resolve) => (onClosed = resolve));
    this.mountpoint = opts.mountpoint;
    this.handle = native.fuseMount(
      opts.mountpoint,
      opts.dataFd,
      opts.chunkSize,
      opts.tableSlots,
      opts.options,
      (id, op, ino, n0, n1, n2, data, name, name2, uid, gid, unique) => {
        if (op === Op.LOW) return onLow();
        const text = typeof name === 'string' ? name : undefined;
        const u = unique ?? 0;
        handler({ id, op, ino, n: [n0, n1, n2], data, name: text, bytes: typeof name === 'string' ? undefined : name, bytes2: name2, uid, gid, unique: Math.abs(u), resent: u < 0 });
      },
      () => onClosed(),
      opts.takeover ? [opts.takeover.fd, opts.takeover.init] : undefined,
      opts.filesystemThreads ?? 0,
    );
  }

  reply(id: number, errno: number, data?: Buffer, nums?: number[]): void {
    native.fuseReply(this.handle, id, errno, data, nums);
  }

  /** `tail` (cowfs): the chunk holds the file's end, so reads go to JavaScript and writes note how far they reach (`written`). */
  map(ino: number, index: number, offset: number, writable: boolean, breakable = false, tail = false): void {
    native.fuseMap(this.handle, ino, index, offset, writable, breakable, tail);
  }

  /** Drops one entry, or all of an inode's (index < 0), or every entry (ino 0); returns after in-flight fast I/O. */
  invalidate(ino: number, index = -1): void {
    native.fuseInvalidate(this.handle, ino, index);
  }

  /** Where a cowfs mount's native writes put their times: the wall time at CLOCK_MONOTONIC's zero. */
  clock(sec: number, nsec: number): void {
    native.fuseClock(this.handle, sec, nsec);
  }

  /**
   * The files a cowfs mount wrote natively since the last call: the
   * monotonic time of each one's latest write (sec -1: none noted, the
   * kernel keeps the times), and how far writes past its known end reached
   * (0: none). `endsOnly`: only the ends leave; the times stay noted.
   */
  written(endsOnly = false): Written[] {
    const flat = native.fuseWritten(this.handle, endsOnly);
    const out: Written[] = [];
    for (let i = 0; i + 3 < flat.length; i += 4) {
      out.push({ ino: flat[i] as number, sec: flat[i + 1] as number, nsec: flat[i + 2] as number, end: flat[i + 3] as number });
    }
    return out;
  }

  /** Times the kernel set on a cowfs mount's files since the last call, answered natively (native/src/kernel_times.h). */
  kernelTimes(): KernelTimes[] {
    const flat = native.fuseKernelTimes(this.handle);
    const out: KernelTimes[] = [];
    const at = (i: number): Time => ({ sec: flat[i] as number, nsec: flat[i + 1] as number });
    for (let i = 0; i + 7 < flat.length; i += 8) {
      const set = flat[i + 1] as number;
      out.push({
        ino: flat[i] as number,
        ...(set & 1 ? { atime: at(i + 2) } : {}),
        ...(set & 2 ? { mtime: at(i + 4) } : {}),
        ...(set & 4 ? { ctime: at(i + 6) } : {}),
      });
    }
    return out;
  }

  /**
   * These indices of the inode are unmapped: first writes there may take
   * reserved chunks. `tail` (cowfs): they may lie past the file's end, so
   * reads go to JavaScript and writes note how far they reach (`written`).
   */
  holes(ino: number, indices: number[], tail = false): void {
    native.fuseHoles(this.handle, ino, indices, tail);
  }

  /** Hands the table free zero chunks (data file offsets); returns how many it took in. */
  reserve(offsets: number[]): number {
    return native.fuseReserve(this.handle, offsets);
  }

  /** First writes (old -1) and CoW breaks (old: the chunk replaced) served from reserved chunks since the last call. */
  taken(): { ino: number; index: number; offset: number; old: number }[] {
    const flat = native.fuseTaken(this.handle);
    const out: { ino: number; index: number; offset: number; old: number }[] = [];
    for (let i = 0; i + 3 < flat.length; i += 4) out.push({ ino: flat[i] as number, index: flat[i + 1] as number, offset: flat[i + 2] as number, old: flat[i + 3] as number });
    return out;
  }

  /** While not needed, the addon answers an fsync with an fdatasync of the data file itself. */
  commitNeeded(needed: boolean): void {
    native.fuseCommitNeeded(this.handle, needed);
  }

  /**
   * cowfs: the pool's generations, by which the addon knows which files'
   * data syncs need no commit (flush_marks.c); `all`: every file waits for
   * the open one, whatever was marked.
   */
  generations(open: number, durable: number, all = false): void {
    native.fuseGenerations(this.handle, open, durable, all);
  }

  /** cowfs: `names` are every name directory `dir` holds; from now on the addon answers lookups of the others (name_filter.c). */
  followNames(dir: number, names: readonly Buffer[]): void {
    const parts: Buffer[] = [];
    for (const name of names) parts.push(name, NUL);
    native.fuseFollowNames(this.handle, dir, Buffer.concat(parts));
  }

  /** absentNames: cowfs lookups the addon answered "not there" (name_filter.c). */
  stats(): { fastReads: number; fastWrites: number; slowRequests: number; firstWrites: number; fastFlushes: number; absentNames: number; cowBreaks: number } {
    const [fastReads, fastWrites, slowRequests, , firstWrites, fastFlushes, , absentNames, cowBreaks] = native.fuseStats(this.handle);
    return { fastReads, fastWrites, slowRequests, firstWrites, fastFlushes, absentNames, cowBreaks };
  }

  /** Counts completed reads, writes, flushes and discards per inode from now on, for up to `inodes` per thread. */
  countVolumes(inodes: number): void {
    native.fuseCountVolumes(this.handle, inodes);
  }

  /** Every inode's counts since countVolumes, summed over the threads; and requests no inode could be counted for. */
  volumeStats(): { byIno: Map<number, IoCounts>; untracked: number } {
    const flat = native.fuseVolumeStats(this.handle);
    const byIno = new Map<number, IoCounts>();
    const kinds = STAT_KINDS.length;
    for (let i = 1; i + 3 * kinds < flat.length; i += 1 + 3 * kinds) {
      const ino = flat[i] as number;
      const sum = byIno.get(ino) ?? emptyCounts();
      STAT_KINDS.forEach((kind, k) => {
        sum[kind].count += flat[i + 1 + k] as number;
        sum[kind].bytes += flat[i + 1 + kinds + k] as number;
        sum[kind].seconds += (flat[i + 1 + 2 * kinds + k] as number) / 1e9;
      });
      byIno.set(ino, sum);
    }
    return { byIno, untracked: flat[0] ?? 0 };
  }

  /**
   * Request latencies of every volume together, by kind: the count in each
   * bucket (not cumulative) by its upper bound in seconds, the last bound
   * Infinity; and the seconds of them all. Empty when not counting.
   */
  latency(): Map<StatKind, Latency> {
    const flat = native.fuseLatency(this.handle);
    const out = new Map<StatKind, Latency>();
    const row = flat.length / STAT_KINDS.length;
    STAT_KINDS.forEach((kind, k) => {
      if (flat.length === 0) return;
      const counts = flat.slice(k * row, (k + 1) * row - 1);
      out.set(kind, {
        buckets: counts.map((count, b) => ({ le: b === counts.length - 1 ? Infinity : (LATENCY_FIRST_BOUND_US * 2 ** b) / 1e6, count })),
        seconds: (flat[(k + 1) * row - 1] as number) / 1e9,
      });
    });
    return out;
  }

  /** Its volume is gone: its counters free their entries. */
  forgetVolume(ino: number): void {
    native.fuseForgetVolume(this.handle, ino);
  }

  /** The errno of an fdatasync the addon made for an fsync and saw fail; 0 if none. */
  flushErrno(): number {
    return native.fuseStats(this.handle)[6];
  }

  /** Why the pool must fail, if an fdatasync the addon made failed: some written data did not reach the disk. */
  lostWrites(): Error | null {
    const lost = this.flushErrno();
    return lost === 0 ? null : new Error(`an fdatasync of the data file failed (errno ${lost}): written data may be lost`);
  }

  /** 0 when the serving threads are PR_SET_IO_FLUSHER, else the errno prctl gave. */
  ioFlusherErrno(): number {
    return native.fuseStats(this.handle)[3];
  }

  /**
   * Unmounts, lets the requests already queued finish, calls `beforeFree`
   * (the table can still be drained then), and frees the session.
   */
  async close(beforeFree?: () => void): Promise<void> {
    if (!this.unmounting && !this.detaching) {
      this.unmounting = true;
      native.fuseUnmount(this.handle);
      await this.closed;
      try {
        beforeFree?.();
      } finally {
        native.fuseDestroy(this.handle);
      }
    }
  }

  /**
   * Stops taking requests but leaves the mount and the connection alive:
   * requests from now on wait in the kernel for the next daemon. Lets the
   * requests being served finish, calls `beforeFree`, and returns what the
   * next daemon needs (its fd is a duplicate the caller must pass on or close).
   */
  async detach(beforeFree?: () => void): Promise<Handover> {
    if (this.unmounting || this.detaching) throw new Error('the session is already closing');
    this.detaching = true;
    native.fuseDetach(this.handle);
    await this.closed;
    try {
      beforeFree?.();
      return this.connection();
    } finally {
      native.fuseDestroy(this.handle);
    }
  }

  /**
   * Journals every mapping change from now on in the memfd journal `fd`
   * (native/src/journal.c); a cowfs mount's first writes and ends as
   * filesystem volume `volume`'s (-1 for the block files).
   */
  journal(fd: number, volume = -1): void {
    native.fuseJournal(this.handle, fd, volume);
  }

  /**
   * Records filesystem tree items put (deleted: `value` null) as one unit,
   * then, unless `unique` is 0, that cowfs request `unique` of `volume`
   * made them; false when the journal is full.
   */
  journalItems(items: readonly ItemChange[], volume: number, unique: number): boolean {
    if (items.length > JOURNAL_BATCH_MAX) return false;
    const parts: Buffer[] = [];
    for (const it of items) {
      const head = Buffer.alloc(12);
      head.writeUInt32LE(it.id, 0);
      head.writeUInt32LE(it.key.length, 4);
      head.writeUInt32LE(it.value === null ? 0xffffffff : it.value.length, 8);
      parts.push(head, it.key);
      if (it.value !== null) parts.push(it.value);
    }
    return native.fuseJournalItems(this.handle, Buffer.concat(parts), items.length, volume, unique) !== 0;
  }

  /** Records a mapping change (offsets, -1 for none); false when the journal is full. */
  journalAppend(ino: number, index: number, offset: number, old: number): boolean {
    return native.fuseJournalAppend(this.handle, ino, index, offset, old) !== 0;
  }

  journalCover(): number {
    return native.fuseJournalCommit(this.handle, 0, 0, 0);
  }

  journalMark(generation: number, covered: number): void {
    native.fuseJournalCommit(this.handle, 1, generation, covered);
  }

  journalTrim(covered: number): void {
    native.fuseJournalCommit(this.handle, 2, 0, covered);
  }

  /** The share of the journal in use, 0..1. */
  journalFill(): number {
    return native.fuseJournalCommit(this.handle, 3, 0, 0);
  }

  /** A duplicate of the connection's fd, and the kernel's INIT request (empty before it came). */
  connection(): Handover {
    const [fd, init] = native.fuseHandover(this.handle);
    return { fd, init };
  }

  /** connection(), once the kernel's INIT came: it follows the mount by a moment (the kernel sends it, libfuse reads it). */
  async connectionWithInit(): Promise<Handover> {
    for (let i = 0; i < INIT_WAIT_TRIES; i++) {
      const h = this.connection();
      if (h.init.length > 0) return h;
      fs.closeSync(h.fd);
      await new Promise((r) => setTimeout(r, 10));
    }
    return fail('EIO', `the kernel never sent FUSE_INIT for ${this.mountpoint}`);
  }

  get closing(): boolean {
    return this.unmounting;
  }
}
