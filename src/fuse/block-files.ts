/**
 * The block-file frontend: every volume of the pool is a regular file of
 * the volume's size at /block/NAME, every snapshot a read-only file at
 * /snapshots/VOL@SNAP. Meant for loop devices, mkfs and fio. An inode is
 * VOLUME_INO_BASE + the volume's pool id, and the pool is asked by id.
 *
 * Semantics: reads and writes within the file (writes past the end fail
 * with EFBIG and change nothing); fsync commits metadata if the file's
 * volume changed, else is a data sync (made by the addon itself while the
 * pool has nothing to commit);
 * fallocate PUNCH_HOLE|KEEP_SIZE discards (unmaps), ZERO_RANGE zeroes and
 * keeps the range mapped (it is what "write zeroes, do not unmap" becomes
 * through a loop device); SEEK_DATA and
 * SEEK_HOLE follow the chunk map; truncate to another size is refused
 * (EPERM: sizes change only through grow); statfs reports the pool. Files
 * are opened direct_io, so the kernel keeps no second page cache of them.
 *
 * This layer is the pool's MappingListener: the pool hands it each mapping
 * it resolves (with the in-place rule's answer, see pool.ts) and it installs
 * them in the native table, so the next access stays in native threads.
 */
import { CowvolError, type ErrorCode, errno, fail, fromSystemError } from '../errors.js';
import type { ItemChange, MappingListener, Pool, VolumeInfo } from '../blockstore/pool.js';
import { VOLUME_INO_BASE } from './journal-records.js';
import { type Handover, FuseSession, type FuseRequest, type IoCounts, Op, type SessionOptions } from './session.js';

const ROOT = 1;
const BLOCK_DIR = 2;
const SNAP_DIR = 3;
/** Volume inodes are this plus the volume id (ids are never reused). */
/** How many tree changes are journaled between looks at the journal's fill. */
const FILL_CHECK_ITEMS = 256;

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const O_ACCMODE = 3;
const O_RDONLY = 0;
const FATTR_SIZE = 1 << 3;
const FALLOC_FL_KEEP_SIZE = 0x01;
const FALLOC_FL_PUNCH_HOLE = 0x02;
const FALLOC_FL_ZERO_RANGE = 0x10;
const SEEK_DATA = 3;
const SEEK_HOLE = 4;

/** A refusal the kernel passes on as an errno; the message only reaches logs. */
function reject(code: ErrorCode): never {
  fail(code, `refused: ${code}`);
}

export interface BlockFilesOptions extends Omit<SessionOptions, 'chunkSize'> {
  /** Bytes free on the filesystem under the pool (used when the pool has no capacity). */
  hostFree: () => number;
  /** Called with each request that failed for an unexpected reason. */
  onError?: (err: unknown, req: FuseRequest) => void;
  /** Who holds a volume (a loop device over its block file, a cowfs mount of it), or null; consulted before a volume is removed. */
  holderOf?: (file: string, volumeId: number) => string | null;
  /** A memfd journal (native journalCreate) to record mapping changes in, for a successor after a kill. */
  journalFd?: number;
  /** The oldest journal seq the cowfs mounts sharing the journal still hold unfolded (their takes and ends); Infinity for none. */
  otherCover?: () => number;
  /** Count I/O per volume (for metrics), tracking up to this many volumes per FUSE thread slot; off when absent. */
  countVolumes?: number;
}

/** Where a volume's (or snapshot's) file is under the mount point. */
export function blockFilePath(mountpoint: string, name: string, readOnly: boolean): string {
  return `${mountpoint}/${readOnly ? 'snapshots' : 'block'}/${name}`;
}

export class BlockFiles implements MappingListener {
  private readonly pool: Pool;
  private readonly session: FuseSession;
  private readonly opts: BlockFilesOptions;
  private readonly started = Math.floor(Date.now() / 1000);
  /** Requests that failed with EIO or EUCLEAN, by volume id: what CSI reports as an abnormal volume condition. */
  private readonly ioErrors = new Map<number, number>();
  /** Requests the addon handed to JavaScript, by operation (Op value). */
  private readonly slowByOp = new Map<number, number>();
  /** Tree changes journaled since the journal's fill was last looked at. */
  private itemsSinceFill = 0;

  constructor(pool: Pool, opts: BlockFilesOptions) {
    this.pool = pool;
    this.opts = opts;
    this.session = new FuseSession(
      { ...opts, chunkSize: pool.chunkSize },
      (req) => {
        this.slowByOp.set(req.op, (this.slowByOp.get(req.op) ?? 0) + 1);
        this.handle(req);
      },
      () => this.replenish(),
    );
    if (opts.journalFd !== undefined) {
      this.session.journal(opts.journalFd);
      // What the opened commit holds is everything so far.
      this.session.journalMark(pool.stats().generation, this.session.journalCover());
    }
    if (opts.countVolumes !== undefined) this.session.countVolumes(opts.countVolumes);
    pool.listener = this;
    pool.tellCommitNeeded();
  }

  /**
   * I/O per volume id since this daemon started (with countVolumes), and the
   * requests a full counter table could not attribute. Counters of volumes
   * that are gone are dropped here, so their entries serve new volumes.
   */
  volumeStats(): { byVolume: Map<number, IoCounts>; untracked: number } {
    const { byIno, untracked } = this.session.volumeStats();
    const byVolume = new Map<number, IoCounts>();
    for (const [ino, counts] of byIno) {
      const id = ino - VOLUME_INO_BASE;
      if (ino >= VOLUME_INO_BASE && this.pool.has(id)) byVolume.set(id, counts);
      else this.session.forgetVolume(ino);
    }
    return { byVolume, untracked };
  }

  /** Request latencies of all volumes together (see FuseSession.latency). */
  latency(): ReturnType<FuseSession['latency']> {
    return this.session.latency();
  }

  /** Requests that went to JavaScript since the daemon started, by operation name. */
  slowRequests(): Map<string, number> {
    const names = new Map<number, string>(Object.entries(Op).map(([name, op]) => [op, name.toLowerCase()]));
    return new Map([...this.slowByOp].map(([op, n]) => [names.get(op) ?? String(op), n]));
  }

  stats(): {
    fastReads: number;
    fastWrites: number;
    slowRequests: number;
    firstWrites: number;
    fastFlushes: number;
    flushes: number;
    flushCommits: number;
    flushDataSyncs: number;
  } {
    const f = this.pool.flushStats();
    return { ...this.session.stats(), flushes: f.requests, flushCommits: f.commits, flushDataSyncs: f.dataSyncs };
  }

  ioFlusherErrno(): number {
    return this.session.ioFlusherErrno();
  }

  async close(): Promise<void> {
    await this.session.close(() => this.foldLast());
    this.letGo();
  }

  journal(id: number, index: number, offset: number, old: number): boolean {
    return this.opts.journalFd === undefined || this.session.journalAppend(VOLUME_INO_BASE + id, index, offset, old);
  }

  journalItems(items: readonly ItemChange[], unique: number): boolean {
    if (this.opts.journalFd === undefined) return true;
    if (!this.session.journalItems(items, items[0]?.id ?? 0, unique)) return false;
    // Tree changes come many per request: past half full, a commit starts now, so neither the addon nor we find it full.
    this.itemsSinceFill += items.length;
    if (this.itemsSinceFill >= FILL_CHECK_ITEMS) {
      this.itemsSinceFill = 0;
      if (this.session.journalFill() > 0.5) void this.pool.flushAsync().catch(() => undefined);
    }
    return true;
  }

  journalCover(): number {
    return Math.min(this.session.journalCover(), this.opts.otherCover?.() ?? Infinity);
  }

  journalMark(generation: number, covered: number): void {
    this.session.journalMark(generation, covered);
  }

  journalTrim(covered: number): void {
    this.session.journalTrim(covered);
  }

  /** A duplicate of the FUSE connection's fd (for the keeper) and the INIT read so far. */
  connection(): Handover {
    return this.session.connection();
  }

  /** connection(), once the kernel's INIT (sent during the mount) came. */
  connectionWithInit(): Promise<Handover> {
    return this.session.connectionWithInit();
  }

  /** Stops serving but keeps the mount alive for the next daemon; see FuseSession.detach. */
  async detach(): Promise<Handover> {
    const handover = await this.session.detach(() => this.foldLast());
    this.letGo();
    return handover;
  }

  /**
   * First writes the table served must reach the maps before it is freed,
   * and whatever the pool holds uncommitted (a cowfs mount's last stamps,
   * say) must reach a commit while the journal can still be marked: a
   * successor that replays the journal (always, from systemd's fd store)
   * refuses one with no mark for the commit it opens, and mounts afresh.
   */
  private foldLast(): void {
    if (this.pool.listener !== this) return;
    this.pool.fold();
    if (this.pool.broken === null) this.pool.commit();
  }

  private letGo(): void {
    if (this.pool.listener === this) {
      this.pool.dropReserve();
      this.pool.listener = null;
    }
  }

  /** EIO and EUCLEAN answers given for this volume since the daemon started. */
  errorCount(volumeId: number): number {
    return this.ioErrors.get(volumeId) ?? 0;
  }

  holder(id: number): string | null {
    if (!this.opts.holderOf || !this.pool.has(id)) return null;
    const v = this.pool.stat(id);
    return this.opts.holderOf(blockFilePath(this.opts.mountpoint, v.name, v.readOnly), id);
  }

  map(id: number, index: number, offset: number, writable: boolean, breakable = false): void {
    this.session.map(VOLUME_INO_BASE + id, index, offset, writable, breakable);
  }

  private replenish(): void {
    if (this.session.closing || this.pool.listener !== this) return;
    // A journal past half full gets a commit now, so the addon never finds it full.
    if (this.opts.journalFd !== undefined && this.session.journalFill() > 0.5) void this.pool.flushAsync().catch(() => undefined);
    try {
      this.pool.replenish();
    } catch (err) {
      // Only first writes slow down: they go through the pool until the next request folds.
      this.opts.onError?.(err, { id: 0, op: Op.WRITE, ino: 0, n: [0, 0, 0], uid: 0, gid: 0, unique: 0, resent: false });
    }
  }

  commitNeeded(needed: boolean): void {
    this.session.commitNeeded(needed);
  }

  holes(id: number, indices: number[]): void {
    this.session.holes(VOLUME_INO_BASE + id, indices);
  }

  reserve(offsets: number[]): number {
    return this.session.reserve(offsets);
  }

  taken(): [number, number, number, number][] {
    // Inode 0 (a chunk a failed copy spoiled) becomes an id no volume has: the pool gives the chunk back and punches it.
    return this.session.taken().map((t) => [t.ino - VOLUME_INO_BASE, t.index, t.offset, t.old]);
  }

  dropVolume(id: number): void {
    this.session.invalidate(VOLUME_INO_BASE + id);
  }

  dropChunk(id: number, index: number): void {
    this.session.invalidate(VOLUME_INO_BASE + id, index);
  }

  private handle(req: FuseRequest): void {
    if (this.session.closing) {
      this.session.reply(req.id, errno.EIO);
      return;
    }
    if (this.pool.committing && (req.op === Op.WRITE || req.op === Op.FALLOCATE)) {
      // It may change metadata, which would finish the commit on the event loop: wait for the disk instead.
      void this.pool.idle().then(() => this.handle(req));
      return;
    }
    let data: Buffer | undefined;
    let nums: number[] | undefined;
    try {
      if (req.op === Op.FSYNC) {
        this.fsync(req);
        return;
      }
      [data, nums] = this.dispatch(req);
    } catch (err) {
      this.replyError(req, err);
      return;
    }
    this.session.reply(req.id, 0, data, nums);
  }

  /**
   * Answered when the flush is durable; a data-only flush waits off the
   * event loop (Pool.flushAsync). Most data-only fsyncs never get here: the
   * addon makes them itself while the pool says no commit is needed.
   */
  private fsync(req: FuseRequest): void {
    const lost = this.session.lostWrites();
    if (lost !== null) this.pool.fail(lost);
    const v = this.volumeOf(req.ino);
    this.pool.flushAsync(v.id).then(
      () => this.session.reply(req.id, 0),
      (err: unknown) => this.replyError(req, err),
    );
  }

  private replyError(req: FuseRequest, err: unknown): void {
    let code: number = errno.EIO;
    if (err instanceof CowvolError) code = errno[err.code];
    else {
      // Not a refusal: an OS error keeps its errno where it has one in the vocabulary, and is logged.
      this.opts.onError?.(err, req);
      code = errno[fromSystemError(err).code];
    }
    // What the pool could not do for this volume (I/O, or metadata that fails its checksum).
    if ((code === errno.EIO || code === errno.ECORRUPT) && req.ino >= VOLUME_INO_BASE) {
      const id = req.ino - VOLUME_INO_BASE;
      this.ioErrors.set(id, (this.ioErrors.get(id) ?? 0) + 1);
    }
    this.session.reply(req.id, code);
  }

  private dispatch(req: FuseRequest): [Buffer | undefined, number[] | undefined] {
    switch (req.op) {
      case Op.LOOKUP:
        return [undefined, this.attr(this.lookup(req.ino, req.name ?? ''))];
      case Op.GETATTR:
        return [undefined, this.attr(req.ino)];
      case Op.SETATTR: {
        const [toSet, size] = req.n;
        if (toSet & FATTR_SIZE) {
          const v = this.volumeOf(req.ino);
          if (size !== v.size) reject('EPERM');
        }
        return [undefined, this.attr(req.ino)];
      }
      case Op.READDIR:
        return [this.readdir(req.ino), undefined];
      case Op.OPEN: {
        const v = this.volumeOf(req.ino);
        if (v.readOnly && (req.n[0] & O_ACCMODE) !== O_RDONLY) reject('EROFS');
        return [undefined, [1]];
      }
      case Op.READ:
        return [this.read(req.ino, req.n[0], req.n[1]), undefined];
      case Op.WRITE:
        return [undefined, [this.write(req.ino, req.n[0], req.data ?? Buffer.alloc(0))]];
      case Op.FALLOCATE:
        this.fallocate(req.ino, req.n[0], req.n[1], req.n[2]);
        return [undefined, undefined];
      case Op.LSEEK:
        return [undefined, [this.seek(req.ino, req.n[0], req.n[1])]];
      case Op.STATFS:
        return [undefined, this.statfs()];
    }
    return reject('EINVAL');
  }

  private lookup(parent: number, name: string): number {
    if (parent === ROOT) {
      if (name === 'block') return BLOCK_DIR;
      if (name === 'snapshots') return SNAP_DIR;
      reject('ENOENT');
    }
    if (parent !== BLOCK_DIR && parent !== SNAP_DIR) reject('ENOTDIR');
    const v = this.pool.has(name) ? this.pool.stat(name) : undefined;
    // A filesystem volume is no block file: it is served as a cowfs mount of its own.
    if (!v || v.readOnly !== (parent === SNAP_DIR) || v.kind !== 'block') reject('ENOENT');
    return VOLUME_INO_BASE + v.id;
  }

  private volumeOf(ino: number): VolumeInfo {
    if (ino < VOLUME_INO_BASE) reject('EISDIR');
    const v = this.pool.stat(ino - VOLUME_INO_BASE);
    if (v.kind !== 'block') reject('ENOENT');
    return v;
  }

  /** [ino, size, mode, nlink, mtime, allocated bytes] */
  private attr(ino: number): number[] {
    if (ino === ROOT || ino === BLOCK_DIR || ino === SNAP_DIR) return [ino, 0, S_IFDIR | 0o755, ino === ROOT ? 4 : 2, this.started, 0];
    const v = this.volumeOf(ino);
    const mode = S_IFREG | (v.readOnly ? 0o444 : 0o644);
    return [ino, v.size, mode, 1, Math.floor(v.createdAt / 1000), v.allocatedBytes];
  }

  private readdir(ino: number): Buffer {
    const entries: [number, number, string][] = [];
    if (ino === ROOT) {
      entries.push([ROOT, S_IFDIR, '.'], [ROOT, S_IFDIR, '..'], [BLOCK_DIR, S_IFDIR, 'block'], [SNAP_DIR, S_IFDIR, 'snapshots']);
    } else if (ino === BLOCK_DIR || ino === SNAP_DIR) {
      entries.push([ino, S_IFDIR, '.'], [ROOT, S_IFDIR, '..']);
      for (const v of this.pool.list()) {
        if (v.readOnly === (ino === SNAP_DIR) && v.kind === 'block') entries.push([VOLUME_INO_BASE + v.id, S_IFREG, v.name]);
      }
    } else {
      reject('ENOTDIR');
    }
    const parts = entries.map(([child, mode, name]) => {
      const nameBuf = Buffer.from(name);
      const b = Buffer.alloc(14 + nameBuf.length);
      b.writeBigUInt64LE(BigInt(child), 0);
      b.writeUInt32LE(mode, 8);
      b.writeUInt16LE(nameBuf.length, 12);
      nameBuf.copy(b, 14);
      return b;
    });
    return Buffer.concat(parts);
  }

  private read(ino: number, offset: number, size: number): Buffer {
    const v = this.volumeOf(ino);
    if (offset >= v.size) return Buffer.alloc(0);
    return this.pool.read(v.id, offset, Math.min(size, v.size - offset));
  }

  private write(ino: number, offset: number, data: Buffer): number {
    const v = this.volumeOf(ino);
    if (v.readOnly) reject('EROFS');
    this.pool.write(v.id, offset, data);
    return data.length;
  }

  private fallocate(ino: number, mode: number, offset: number, length: number): void {
    const v = this.volumeOf(ino);
    if (v.readOnly) reject('EROFS');
    const punch = (mode & FALLOC_FL_PUNCH_HOLE) !== 0 && (mode & FALLOC_FL_KEEP_SIZE) !== 0;
    const zero = (mode & FALLOC_FL_ZERO_RANGE) !== 0;
    if (!punch && !zero) reject('EOPNOTSUPP');
    const end = Math.min(offset + length, v.size);
    if (end <= offset) return;
    // The loop device sends PUNCH_HOLE for a discard and ZERO_RANGE for a write-zeroes told not to unmap.
    if (punch) this.pool.discard(v.id, offset, end - offset);
    else this.pool.zeroRange(v.id, offset, end - offset);
  }

  private seek(ino: number, offset: number, whence: number): number {
    const v = this.volumeOf(ino);
    if (offset >= v.size) reject('ENXIO');
    const chunk = this.pool.chunkSize;
    const chunks = Math.ceil(v.size / chunk);
    const at = Math.floor(offset / chunk);
    if (whence === SEEK_DATA) {
      const next = this.pool.nextMapped(v.id, at, chunks);
      if (next < 0) reject('ENXIO');
      return Math.max(offset, next * chunk);
    }
    if (whence === SEEK_HOLE) {
      let index = at;
      while (index < chunks && this.pool.nextMapped(v.id, index, index + 1) === index) index++;
      return Math.min(v.size, Math.max(offset, index * chunk));
    }
    return reject('EINVAL');
  }

  /** [blocks, bfree, bavail, files, ffree, bsize] in chunks. */
  private statfs(): number[] {
    const s = this.pool.stats();
    const free = s.capacityBytes > 0 ? s.freeChunks : Math.floor(this.opts.hostFree() / s.chunkSize);
    return [s.usedChunks + free, free, free, s.volumes, 0, s.chunkSize];
  }
}
