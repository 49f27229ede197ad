/**
 * Loads the N-API addon built from native/ by `npm install`: the file
 * operations Node's fs module lacks, and the libfuse3 session.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export interface NativeFileOps {
  punchHole(fd: number, offset: number, length: number): void;
  tryLock(fd: number): boolean;
  /** "major:minor" of the filesystem holding a loop device's backing file ("" if it has none). */
  loopBackingDevice(device: string): string;
}

/** An opaque libfuse session handle. */
export type FuseHandle = { readonly __brand: 'FuseHandle' };

export type FuseHandler = (
  id: number,
  op: number,
  ino: number,
  n0: number,
  n1: number,
  n2: number,
  data: Buffer | undefined,
  /** Text for the block files; bytes for a cowfs mount (a name need not be UTF-8). */
  name: string | Buffer | undefined,
  /** cowfs only: rename's new name. */
  name2: Buffer | undefined,
  /** Who asked (the caller's fsuid and fsgid). */
  uid: number,
  gid: number,
  /** cowfs: the kernel's unique of the request; negative for a resend (FUSE_UNIQUE_RESEND). */
  unique?: number,
) => void;

export interface NativeFuse {
  fuseMount(
    mountpoint: string,
    dataFd: number,
    chunkSize: number,
    slots: number,
    options: string,
    handler: FuseHandler,
    onClosed: () => void,
    takeover?: [number, Buffer],
    /** A cowfs mount (native/src/fs_ops.c) on this many FUSE threads; 0 or absent: the block files. */
    filesystemThreads?: number,
  ): FuseHandle;
  fuseReply(handle: FuseHandle, id: number, errno: number, data?: Buffer, nums?: number[]): void;
  /** `breakable`: when not writable, the addon may copy the chunk for a write (a CoW break); false for a read-only volume. */
  fuseMap(handle: FuseHandle, ino: number, index: number, offset: number, writable: boolean, breakable: boolean, tail: boolean): void;
  fuseInvalidate(handle: FuseHandle, ino: number, index: number): void;
  fuseHoles(handle: FuseHandle, ino: number, indices: number[], tail: boolean): void;
  fuseReserve(handle: FuseHandle, offsets: number[]): number;
  /** Flat: ino, index, offset, old for each first write (old -1) or CoW break served; ino 0: a reserved chunk a failed copy spoiled. */
  fuseTaken(handle: FuseHandle): number[];
  fuseCommitNeeded(handle: FuseHandle, needed: boolean): void;
  /** A cowfs mount's flush marks: the generation the pool's open transaction will commit as, and the last durable one. */
  fuseGenerations(handle: FuseHandle, open: number, durable: number, all: boolean): void;
  /** A cowfs mount's natively written files since the last call: [ino, monotonic s, ns] each. */
  fuseWritten(handle: FuseHandle, endsOnly: boolean): number[];
  /** Flat [ino, set, atime s, ns, mtime s, ns, ctime s, ns] per file (native/src/kernel_times.h). */
  fuseKernelTimes(handle: FuseHandle): number[];
  /** A cowfs mount's clock: the wall time (s, ns) at CLOCK_MONOTONIC's zero. */
  fuseClock(handle: FuseHandle, sec: number, nsec: number): void;
  /** fastReads, fastWrites, slowRequests, ioFlusherErrno, firstWrites, fastFlushes, flushErrno, absentNames (cowfs), cowBreaks */
  fuseStats(handle: FuseHandle): [number, number, number, number, number, number, number, number, number];
  /** cowfs: `names` (each ended by a NUL) are all directory `dir` holds, so the addon answers lookups of others there (native/src/name_filter.h). */
  fuseFollowNames(handle: FuseHandle, dir: number, names: Buffer): void;
  fuseUnmount(handle: FuseHandle): void;
  fuseDestroy(handle: FuseHandle): void;
  /** Stops taking requests without unmounting; onClosed runs when the workers are done. */
  fuseDetach(handle: FuseHandle): void;
  /** A duplicate of the connection's fd, and the kernel's INIT request the session read. */
  fuseHandover(handle: FuseHandle): [number, Buffer];
  /** Journal every mapping change in this memfd journal from now on (journal.c). */
  fuseJournal(handle: FuseHandle, fd: number, volume: number): void;
  fuseJournalItems(handle: FuseHandle, packed: Buffer, count: number, volume: number, unique: number): number;
  /** Offsets -1 for none; returns the record's seq, 0 when the journal is full. */
  fuseJournalAppend(handle: FuseHandle, ino: number, index: number, offset: number, old: number): number;
  /** step 0: the seq a commit sealed now covers; 1: mark (generation, covered); 2: trim (covered); 3: fill, 0..1. */
  fuseJournalCommit(handle: FuseHandle, step: number, generation: number, covered: number): number;
  /** Counts requests per volume from now on (volume_stats.c), tracking up to `volumes` inodes per thread slot. */
  fuseCountVolumes(handle: FuseHandle, volumes: number): void;
  /** [untracked, then per entry: ino, counts[4], bytes[4], ns[4]] by kind (read, write, flush, discard); [] when not counting. */
  fuseVolumeStats(handle: FuseHandle): number[];
  /** Per kind: latency counts by bucket (bucket i: at most 16 us << i; the last, the rest), then total ns; [] when not counting. */
  fuseLatency(handle: FuseHandle): number[];
  fuseForgetVolume(handle: FuseHandle, ino: number): void;
  /** A new memfd journal of `capacity` records; its fd. */
  journalCreate(capacity: number): number;
  /** Flat [ino, index, offset, old] past what commit `generation` holds; null when the journal has no mark for it. */
  journalRead(fd: number, generation: number): Buffer | null;
}

/** Node tools run with posix_spawn on a thread of their own (native/src/spawn.c). */
export interface NativeTools {
  /** [status (exit code, 128 + signal, -1 on timeout), stdout, stderr]; rejects only when the tool could not start. */
  spawnTool(argv: string[], timeoutMs: number): Promise<[number, string, string]>;
  /** syncfs(2) of the filesystem holding `dir`, on libuv's thread pool (native/src/background.c). */
  syncFilesystem(dir: string): Promise<void>;
  /** fallocate(PUNCH_HOLE | KEEP_SIZE) on libuv's thread pool. */
  punchHoleAsync(fd: number, offset: number, length: number): Promise<void>;
  /** Blocks until no punchHoleAsync is running (any fd). */
  punchWait(): void;
}

/** Unix sequenced-packet sockets that carry fds; every call blocks. */
export interface NativeSockets {
  unixListen(path: string): number;
  unixConnect(path: string): number;
  unixSend(fd: number, data: Buffer, fds: number[]): void;
  /** null when the peer closed. */
  unixReceive(fd: number): [Buffer, number[]] | null;
  /** One datagram to a service manager's notify socket ('@' first: abstract), with fds if any. */
  sdNotify(path: string, message: string, fds: number[]): void;
  /** A bound datagram socket for tests that play the manager; its receives give up after timeoutMs (EAGAIN). */
  unixDatagramBind(path: string, timeoutMs: number): number;
  /** A memfd holding these bytes (for a service manager's fd store). */
  memfdWith(data: Buffer): number;
  /** The keeper process's whole life (keeper.c); returns why it ended. */
  keeperRun(path: string, graceMs: number): string;
}

const here = path.dirname(fileURLToPath(import.meta.url));
// dist/src -> repository root
const root = path.resolve(here, '..', '..');
const require = createRequire(import.meta.url);

export const native: NativeFileOps & NativeFuse & NativeSockets & NativeTools = require(
  path.join(root, 'native', 'build', 'Release', 'cowvol_native.node'),
) as NativeFileOps & NativeFuse & NativeSockets & NativeTools;
