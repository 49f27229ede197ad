/**
 * One filesystem volume served as its own FUSE mount (native/src/fs_ops.c):
 * each request the kernel sends becomes one cowfs operation (src/cowfs),
 * answered with attributes, bytes or an errno from the one error table.
 *
 * Reads and in-place writes of whole chunks inside a file are served by
 * the addon once JavaScript has served the chunk once, and so is a new
 * file's first write into its first chunk (file-chunks.ts says when that
 * is safe); everything else runs on the event loop.
 *
 * Every cowfs mount of the process is served by one set of FUSE threads
 * (native/src/fs_workers.c), however many mounts there are.
 *
 * A mount can stop serving without unmounting (`detach`) and be taken over
 * by the next daemon (`takeover`): the kernel keeps the connection, its
 * open files and its cached names, since inode numbers are never reused
 * and files keep no handles; only the open counts travel with it. A mount
 * made afresh frees what a crash left (orphans, stray chunks) first.
 */
import type { Pool, VolumeRef } from '../blockstore/pool.js';
import { type AttrChanges, Filesystem, onlyTimes } from '../cowfs/filesystem.js';
import { type Inode, S_IFMT, S_IFREG, type Time, isDir, isReg, wallAtZero } from '../cowfs/inode.js';
import { CowvolError, errno, fail, fromSystemError } from '../errors.js';
import { relaxDirtyLimits } from '../host/dirty-limits.js';
import { type MountEntry, mountAt, readMountTable } from '../host/mount-table.js';
import { FileChunks } from './file-chunks.js';
import { type FuseRequest, FuseSession, type Handover } from './session.js';

export const FsOp = {
  LOOKUP: 20,
  GETATTR: 21,
  SETATTR: 22,
  READLINK: 23,
  MKNOD: 24,
  MKDIR: 25,
  UNLINK: 26,
  RMDIR: 27,
  SYMLINK: 28,
  RENAME: 29,
  LINK: 30,
  OPEN: 31,
  READ: 32,
  WRITE: 33,
  RELEASE: 34,
  FSYNC: 35,
  READDIR: 36,
  STATFS: 37,
  SETXATTR: 38,
  GETXATTR: 39,
  LISTXATTR: 40,
  REMOVEXATTR: 41,
  CREATE: 42,
  FALLOCATE: 43,
  LSEEK: 44,
  COPY_FILE_RANGE: 45,
} as const;

/** FUSE_SET_ATTR_* bits (fuse_lowlevel.h). */
const SET = { MODE: 1, UID: 2, GID: 4, SIZE: 8, ATIME: 16, MTIME: 32, ATIME_NOW: 128, MTIME_NOW: 256, CTIME: 1024, KILL_SETID: 2048 } as const;
/** A write's n2 (fs_ops.c): the writer lacks CAP_FSETID; the write comes back from the kernel's page cache. */
const WRITE_KILLS_SETID = 1;
const WRITE_FROM_CACHE = 2;
const SEEK_DATA = 3;
const SEEK_HOLE = 4;
/** Table entries of a mount (16 bytes each, 128 KiB): 512 MiB of file data at 64 KiB chunks served without JavaScript. */
export const DEFAULT_TABLE_SLOTS = 1 << 13;
/** A directory with more names than this is not listed for the addon's filter of names (name_filter.c): its misses stay in JavaScript. */
const FOLLOW_NAMES_MAX = 256;
/** How often the times of natively served writes are stamped when nothing else asks. */
const STAMP_MS = 1000;
/** What a directory reports as its size, as ext4's one-block directories do. */
const DIR_SIZE = 4096;

/** A filesystem volume (or snapshot) the daemon serves as a cowfs mount. */
export interface MountView {
  source: string;
  dir: string;
  readOnly: boolean;
}

/** The daemon's cowfs mounts (src/daemon/fs-mounts.ts), as the admin operations and CSI ask for them. */
export interface MountService {
  mount(source: string, dir: string, readOnly: boolean): Promise<MountView>;
  unmount(dir: string): Promise<void>;
  list(): MountView[];
}

export interface CowfsMountOptions {
  readOnly?: boolean;
  /** FUSE threads all cowfs mounts of the process share: the first mount starts them, later ones use them. */
  threads?: number;
  /** An fd of the pool's data file: the addon serves file data through it. Without one, every request goes to JavaScript. */
  dataFd?: number;
  /** Chunks of file data the addon may serve at once (16 bytes each). */
  tableSlots?: number;
  /** How often the times of natively served writes are stamped when nothing else asks (ms). */
  stampMs?: number;
  /** An error that is not a refusal (a bug or an I/O failure), for the log. */
  onError?: (err: unknown, op: number) => void;
  /** Serve a connection a previous daemon detached (`detach`), with the open counts it had, instead of mounting. */
  takeover?: Detached;
  /** The daemon's kill -9 journal (native journalCreate): tree changes, first writes and ends go in it before they are answered. */
  journalFd?: number;
  /** Where each file's open count goes as it changes, for a successor after a kill (src/daemon/open-counts.ts). */
  openCounts?: { set(ino: number, count: number, unique: number): void };
  /**
   * Fault injection for tests of the kill -9 handover: the process kills
   * itself (SIGKILL) after serving the first request of this FsOp name and
   * before answering it, the one moment a resend of it must not be done
   * again. Set from $COWVOL_TEST_DIE_BEFORE_ANSWER by the daemon.
   */
  dieBeforeAnswer?: string;
}

/** What a detached mount leaves for the next daemon: the live connection and the open counts it was served with. */
export interface Detached {
  handover: Handover;
  opens: [number, number][];
  /**
   * After a kill: what the dead daemon may have done without answering,
   * which the kernel resends. `done`: the last request whose tree changes
   * the journal held; `uniques`: the request that last set each file's
   * open count.
   */
  resent?: { done: number; uniques: Map<number, number> };
}

export class CowfsMount {
  readonly fs: Filesystem;
  private readonly session: FuseSession;
  private readonly chunkSize: number;
  private readonly chunks: FileChunks | null;
  private readonly unwatch: () => void;
  private readonly stamper: NodeJS.Timeout;
  /** Why the mount kept the kernel's FUSE limits on dirty pages (host/dirty-limits.ts), or null. */
  readonly dirtyLimitsKept: string | null;
  /** The addon journals this mount's first writes and ends (a writable mount, with a journal). */
  private readonly journaled: boolean;
  /** The FUSE unique of the request being served (0 between requests). Lock: event loop only. */
  private serving = 0;
  /** From a takeover after a kill: what the dead daemon did and may not have answered; null otherwise. */
  private readonly resent: { done: number; uniques: Map<number, number> } | null;

  constructor(
    private readonly pool: Pool,
    volume: VolumeRef,
    readonly mountpoint: string,
    private readonly opts: CowfsMountOptions = {},
  ) {
    const info = pool.stat(volume);
    this.fs = new Filesystem(pool, info.id);
    this.chunkSize = pool.chunkSize;
    const ro = opts.readOnly === true || info.readOnly;
    // Taken over, the kernel's open files stay open: orphans among them live on. Mounted afresh, nothing is open.
    if (opts.takeover !== undefined) this.fs.adoptOpens(opts.takeover.opens);
    else if (!info.readOnly) this.fs.recover();
    this.resent = opts.takeover?.resent ?? null;
    const counts = opts.openCounts;
    if (counts !== undefined) {
      this.fs.watchOpens((ino, count) => counts.set(ino, count, this.serving));
      for (const [ino, count] of this.fs.openFiles()) counts.set(ino, count, 0);
    }
    this.session = new FuseSession(
      {
        mountpoint,
        dataFd: opts.dataFd ?? -1,
        chunkSize: pool.chunkSize,
        tableSlots: opts.tableSlots ?? DEFAULT_TABLE_SLOTS,
        // dev and suid as an ext4 mount has them (libfuse would add nodev,nosuid): device nodes open, set-id bits count.
        options: `fsname=${fsName(pool, info.name)},subtype=cowfs,allow_other,default_permissions,dev,suid${ro ? ',ro' : ''}`,
        filesystemThreads: Math.max(1, opts.threads ?? 2),
        takeover: opts.takeover?.handover,
      },
      (req) => this.serve(req),
      () => this.chunks?.replenish(),
    );
    // From the mount table, never stat(2): only this thread answers the mount's requests.
    const entry = mountAt(readMountTable(), mountpoint);
    this.dirtyLimitsKept = entry === undefined ? `${mountpoint} is not in the mount table` : relaxDirtyLimits(entry.devNo);
    // Before anything is offered to the addon: its first writes and ends are journaled from the first.
    this.journaled = opts.journalFd !== undefined && !ro;
    if (this.journaled) this.session.journal(opts.journalFd as number, info.id);
    const zero = wallAtZero();
    this.session.clock(zero.sec, zero.nsec);
    const fast = (opts.dataFd ?? -1) >= 0;
    this.chunks = fast ? new FileChunks(pool, info.id, this.fs, this.session, opts.tableSlots ?? DEFAULT_TABLE_SLOTS, !ro) : null;
    this.unwatch = this.chunks === null ? () => {} : pool.watch(info.id, this.chunks);
    // Bounds how long a file written only natively shows its old mtime to a commit.
    this.stamper = setInterval(() => this.stamp(), opts.stampMs ?? STAMP_MS).unref();
  }

  /** Unmounts once the requests under way are answered. */
  async close(): Promise<void> {
    clearInterval(this.stamper);
    try {
      await this.session.close(() => this.settle());
    } finally {
      this.unwatch();
    }
  }

  /**
   * Stops serving without unmounting: requests from now on wait in the
   * kernel for the next daemon. The requests under way are answered and the
   * times of native writes stamped first. The handover's fd is a duplicate
   * the caller passes on or closes.
   */
  async detach(): Promise<Detached> {
    clearInterval(this.stamper);
    try {
      const handover = await this.session.detach(() => this.settle());
      return { handover, opens: this.fs.openFiles() };
    } finally {
      this.unwatch();
    }
  }

  /** A duplicate of the connection's fd and the kernel's INIT for it, once that came (it follows the mount by a moment). */
  connectionWithInit(): Promise<Handover> {
    return this.session.connectionWithInit();
  }

  /** The oldest journal seq this mount's addon holds unfolded (a commit covers only below it); Infinity when it journals nothing. */
  journalCover(): number {
    return this.journaled ? this.session.journalCover() : Infinity;
  }

  /** Reads, writes (first writes of chunks among them), fdatasyncs and lookups of missing names the addon served itself, and requests that came to JavaScript, since the mount. */
  stats(): { fastReads: number; fastWrites: number; firstWrites: number; fastFlushes: number; absentNames: number; slowRequests: number; cowBreaks: number } {
    const { fastReads, fastWrites, firstWrites, fastFlushes, absentNames, slowRequests, cowBreaks } = this.session.stats();
    return { fastReads, fastWrites, firstWrites, fastFlushes, absentNames, slowRequests, cowBreaks };
  }

  private stamp(datasync = false): void {
    try {
      if (this.chunks === null) this.fs.applyKernelTimes(this.session.kernelTimes());
      // fdatasync need not keep times: left noted (for the next other request or the timer), they
      // leave the tree as it was, so a file the addon only overwrote needs a data sync, not a commit.
      else if (datasync) this.chunks.fold();
      else this.chunks.stamp();
    } catch (err) {
      // A failed pool refuses everything from now on; the requests report it.
      this.opts.onError?.(err, 0);
    }
  }

  /** The last requests are answered: what the addon served goes in, and its reserve back to the pool. */
  private settle(): void {
    try {
      if (this.chunks === null) this.stamp();
      else this.chunks.close();
    } catch (err) {
      this.opts.onError?.(err, 0);
    }
  }

  private serve(req: FuseRequest): void {
    if (req.op === FsOp.FSYNC) return this.fsync(req);
    // Before anything else is answered: the times of the writes the addon served.
    this.stamp();
    this.serving = req.unique;
    try {
      // One unit in the journal, named after the request, so a successor knows whether the kernel's resend of it was done.
      const answer = (req.resent ? this.redone(req) : null) ?? this.pool.atomically(() => this.dispatch(req), req.unique);
      if (this.opts.dieBeforeAnswer !== undefined && FsOp[this.opts.dieBeforeAnswer as keyof typeof FsOp] === req.op) process.kill(process.pid, 'SIGKILL');
      if (typeof answer === 'number') this.session.reply(req.id, answer);
      else this.session.reply(req.id, 0, answer[0], answer[1]);
    } catch (err) {
      this.replyError(req, err);
    } finally {
      this.serving = 0;
    }
  }

  /**
   * The answer to a request the killed daemon served (its changes are in
   * the journal, or its open count in the counts) but did not answer, which
   * the kernel now resends: made from what it left, since doing it again
   * would fail (EEXIST, ENOENT) or count twice. Null: serve it as new (it
   * was not done, or doing it again changes nothing).
   */
  private redone(req: FuseRequest): ReturnType<CowfsMount['dispatch']> | null {
    const r = this.resent;
    if (r === null) return null;
    const done = req.unique === r.done;
    const counted = r.uniques.get(req.ino) === req.unique;
    const name = req.bytes ?? Buffer.alloc(0);
    const found = (parent: number): Inode => this.fs.find(parent, name) ?? fail('ENOENT', `the resent request's name is not in ${parent}`);
    switch (req.op) {
      case FsOp.MKNOD:
      case FsOp.MKDIR:
      case FsOp.SYMLINK:
        return done ? [undefined, this.withParent(this.attr(found(req.ino)), req.ino)] : null;
      case FsOp.LINK:
        return done ? [undefined, this.attr(found(req.n[0]))] : null;
      case FsOp.CREATE: {
        if (!done) return null;
        const inode = found(req.ino);
        if (r.uniques.get(inode.ino) !== req.unique) this.fs.opened(inode.ino);
        return [undefined, this.withParent(this.attr(inode), req.ino)];
      }
      case FsOp.UNLINK:
        // The unlinked inode may be gone: no attributes for the addon to hold (inode 0).
        return done ? [undefined, this.withParent(new Array<number>(14).fill(0), req.ino)] : null;
      case FsOp.RMDIR:
        return done ? [undefined, this.withParent([0], req.ino)] : null;
      case FsOp.RENAME:
      case FsOp.SETXATTR:
      case FsOp.REMOVEXATTR:
        return done ? [undefined, undefined] : null;
      case FsOp.OPEN:
      case FsOp.RELEASE:
        return done || counted ? [undefined, undefined] : null;
      default:
        return null;
    }
  }

  /** fsync, fdatasync, or a directory's fsync: answered once the volume's flush is durable. */
  private fsync(req: FuseRequest): void {
    this.stamp(req.n[0] !== 0);
    const lost = this.session.lostWrites();
    if (lost !== null) this.pool.fail(lost);
    this.fs.flush().then(
      () => this.session.reply(req.id, 0),
      (err: unknown) => this.replyError(req, err),
    );
  }

  private replyError(req: FuseRequest, err: unknown): void {
    if (!(err instanceof CowvolError)) this.opts.onError?.(err, req.op);
    this.session.reply(req.id, errno[fromSystemError(err).code]);
  }

  /** What to answer: bytes and numbers, or an errno for the one common failure that is no exception (a name not there). */
  private dispatch(req: FuseRequest): [Buffer | undefined, number[] | undefined] | number {
    const fs = this.fs;
    const name = req.bytes ?? Buffer.alloc(0);
    // n2 of a create, mknod or mkdir: the caller's umask (fs_ops.c).
    const caller = { uid: req.uid, gid: req.gid, umask: req.op === FsOp.MKNOD || req.op === FsOp.MKDIR || req.op === FsOp.CREATE ? req.n[2] : 0 };
    const [n0, n1, n2] = req.n;
    switch (req.op) {
      case FsOp.LOOKUP: {
        const found = fs.find(req.ino, name);
        if (found !== null) return [undefined, this.attr(found)];
        // n0: the addon does not follow the directory's names. A small one's go over, so its next miss is native.
        if (n0 === 1) this.followNames(req.ino);
        return errno.ENOENT;
      }
      case FsOp.GETATTR:
        return [undefined, this.attr(fs.getattr(req.ino))];
      case FsOp.SETATTR: {
        const changes = changesOf(req.data ?? Buffer.alloc(88), req.gid);
        // Times alone (the writeback cache sends them at every close and fsync) leave the file's chunks as they are.
        if (!onlyTimes(changes)) this.chunks?.forget(req.ino);
        return [undefined, this.attr(fs.setattr(req.ino, changes))];
      }
      case FsOp.READLINK:
        return [fs.readlink(req.ino), undefined];
      case FsOp.MKNOD:
        return [undefined, this.withParent(this.attr(fs.mknod(req.ino, name, n0, n1, caller)), req.ino)];
      case FsOp.MKDIR:
        return [undefined, this.withParent(this.attr(fs.mkdir(req.ino, name, n0, caller)), req.ino)];
      case FsOp.SYMLINK:
        return [undefined, this.withParent(this.attr(fs.symlink(req.ino, name, req.data ?? Buffer.alloc(0), caller)), req.ino)];
      case FsOp.LINK:
        return [undefined, this.attr(fs.link(req.ino, n0, name))];
      case FsOp.UNLINK:
        // The file's attributes after the unlink ride along: the kernel sends its new ctime right after (fs_ops.c).
        return [undefined, this.withParent(this.attr(fs.unlink(req.ino, name)), req.ino)];
      case FsOp.RMDIR:
        return [undefined, this.withParent([fs.rmdir(req.ino, name)], req.ino)];
      case FsOp.RENAME:
        fs.rename(req.ino, name, n0, req.bytes2 ?? Buffer.alloc(0), n1);
        return [undefined, undefined];
      case FsOp.CREATE: {
        const inode = fs.mknod(req.ino, name, S_IFREG | (n0 & 0o7777), 0, caller);
        fs.opened(inode.ino);
        this.chunks?.extend(inode.ino, 1);
        return [undefined, this.withParent(this.attr(inode), req.ino)];
      }
      case FsOp.OPEN:
        fs.opened(req.ino);
        return [undefined, undefined];
      case FsOp.RELEASE:
        fs.released(req.ino);
        return [undefined, undefined];
      case FsOp.READ: {
        const data = fs.read(req.ino, n0, n1);
        this.chunks?.offer(req.ino, n0, n1);
        return [data, undefined];
      }
      case FsOp.WRITE: {
        this.chunks?.quiesce(req.ino, n0, n1);
        const from = { killSetId: n2 & WRITE_KILLS_SETID ? req.gid : undefined, keepTimes: (n2 & WRITE_FROM_CACHE) !== 0 };
        const written = fs.write(req.ino, n0, req.data ?? Buffer.alloc(0), from);
        this.chunks?.offer(req.ino, n0, written);
        this.chunks?.extend(req.ino);
        this.chunks?.fillAfterWrite(req.ino, Math.floor(n0 / this.chunkSize));
        // The file's attributes after the write ride along, so the addon keeps them for the getattr the kernel sends next.
        return [undefined, [written, ...this.attr(fs.getattr(req.ino))]];
      }
      case FsOp.READDIR:
        return [this.entries(req.ino, n0, n1), undefined];
      case FsOp.STATFS: {
        const s = fs.statfs();
        return [undefined, [s.blocks, s.freeBlocks, s.freeBlocks, s.files, s.freeFiles, s.blockSize]];
      }
      case FsOp.SETXATTR:
        fs.setxattr(req.ino, name, req.data ?? Buffer.alloc(0), n0);
        return [undefined, undefined];
      case FsOp.GETXATTR:
        return [fs.getxattr(req.ino, name), undefined];
      case FsOp.LISTXATTR:
        return [Buffer.concat(fs.listxattr(req.ino).flatMap((x) => [x, Buffer.alloc(1)])), undefined];
      case FsOp.REMOVEXATTR:
        fs.removexattr(req.ino, name);
        return [undefined, undefined];
      case FsOp.FALLOCATE:
        this.chunks?.quiesce(req.ino, n1, n2);
        fs.fallocate(req.ino, n0, n1, n2);
        return [undefined, undefined];
      case FsOp.COPY_FILE_RANGE: {
        // Packed by fs_ops.c: off_in, ino_out, off_out, len, flags (none are defined; the kernel refuses others).
        const b = req.data ?? Buffer.alloc(40);
        const v = (i: number): number => Number(b.readBigInt64LE(8 * i));
        this.chunks?.quiesce(v(1), v(2), v(3));
        return [undefined, [fs.copyFileRange(req.ino, v(0), v(1), v(2), v(3))]];
      }
      case FsOp.LSEEK:
        return [undefined, [fs.seek(req.ino, n0, n1 === SEEK_DATA ? true : n1 === SEEK_HOLE ? false : invalidWhence(n1))]];
      default:
        throw new CowvolError('EOPNOTSUPP', `FUSE operation ${req.op}`);
    }
  }

  /**
   * The numbers of a reply followed by the parent directory's attributes,
   * which the addon keeps for the getattr of the directory the kernel sends
   * next (its permission check, after a create or unlink dropped them).
   */
  private withParent(nums: number[], parent: number): number[] {
    return [...nums, ...this.attr(this.fs.getattr(parent))];
  }

  /** The reply numbers fs_ops.c's fill_stat reads. */
  private attr(i: Inode): number[] {
    const size = isDir(i) ? DIR_SIZE : i.size;
    const blocks = isReg(i) ? (i.chunks * this.chunkSize) / 512 : isDir(i) ? DIR_SIZE / 512 : 0;
    return [i.ino, size, i.mode, i.nlink, i.uid, i.gid, i.rdev, blocks, i.atime.sec, i.atime.nsec, i.mtime.sec, i.mtime.nsec, i.ctime.sec, i.ctime.nsec];
  }

  /**
   * Hands a directory that was there before the mount (or that the filter
   * forgot) to the addon's filter, when it is small enough to list at the
   * cost of a few lookups (FOLLOW_NAMES_MAX). Safe between requests: the
   * kernel makes names in a directory only under its lock, which the
   * lookup asking holds shared, and JavaScript answers one request at a
   * time, each adding its name before the kernel hears the answer.
   */
  private followNames(dir: number): void {
    const names = this.fs.namesIn(dir, FOLLOW_NAMES_MAX);
    if (names !== null) this.session.followNames(dir, names);
  }

  /** Directory entries after cookie `after`, as many as `size` bytes of dirents could hold. */
  private entries(ino: number, after: number, size: number): Buffer {
    const parts: Buffer[] = [];
    // A dirent is at least 32 bytes (24 of header, the name padded to 8).
    for (const e of this.fs.readdir(ino, after, Math.max(1, Math.floor(size / 32)))) {
      const head = Buffer.alloc(22);
      head.writeBigUInt64LE(BigInt(e.ino), 0);
      head.writeUInt32LE((e.type << 12) & S_IFMT, 8);
      head.writeBigUInt64LE(BigInt(e.next), 12);
      head.writeUInt16LE(e.name.length, 20);
      parts.push(head, e.name);
    }
    return Buffer.concat(parts);
  }
}

/**
 * The mount table's source for a volume's cowfs mount (and for every bind
 * of it): the pool's id as well as the name, since names are per pool and
 * a node may hold two pools.
 */
export function fsName(pool: Pool, volume: string): string {
  return `cowfs:${pool.uuid.slice(0, 8)}:${volume}`;
}

/** Every mount of a volume's cowfs filesystem, the mount itself and its binds, in mount order (from the mount table). */
export function mountsOfVolume(pool: Pool, volume: string): MountEntry[] {
  return readMountTable()
    .filter((m) => m.fsType === 'fuse.cowfs' && m.source === fsName(pool, volume))
    .sort((a, b) => a.id - b.id);
}

function invalidWhence(whence: number): never {
  throw new CowvolError('EINVAL', `lseek whence ${whence}`);
}

/** setattr's packed request (fs_ops.c): to_set, mode, uid, gid, size, atime s/ns, mtime s/ns, ctime s/ns. */
function changesOf(b: Buffer, callerGid: number): AttrChanges {
  const v = (i: number): number => Number(b.readBigInt64LE(8 * i));
  const set = v(0);
  const time = (s: number, ns: number): Time => ({ sec: v(s), nsec: v(ns) });
  const out: AttrChanges = {};
  if (set & SET.MODE) out.mode = v(1);
  if (set & SET.UID) out.uid = v(2);
  if (set & SET.GID) out.gid = v(3);
  if (set & SET.SIZE) out.size = v(4);
  if (set & SET.ATIME) out.atime = set & SET.ATIME_NOW ? 'now' : time(5, 6);
  if (set & SET.MTIME) out.mtime = set & SET.MTIME_NOW ? 'now' : time(7, 8);
  if (set & SET.CTIME) out.ctime = time(9, 10);
  // FATTR_KILL_SUIDGID, which libfuse passes on as its KILL_SUID bit.
  if (set & SET.KILL_SETID) out.killSetId = callerGid;
  return out;
}
