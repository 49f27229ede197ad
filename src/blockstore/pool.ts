/**
 * The pool: many sparse volumes in one chunked copy-on-write store.
 *
 * Data lives in fixed-size chunks of the data disk; each volume maps chunk
 * index -> chunk number in a radix tree (radix-tree.ts). Refcounts on pages
 * and chunks (space-map.ts) make sharing explicit, so a snapshot or clone is
 * one refcount increment on the source's root.
 *
 * Writes: a chunk that only this volume holds, now and in the committed
 * state, is written in place with no metadata change (the fast path, cached
 * in `xlate`). Anything else gets a new chunk (CoW break or first write) and
 * a map update. A commit writes its pages, its log and the superblock, then
 * flushes both disks once; a commit whose lost data could show old bytes
 * (a CoW copy, a reused chunk) flushes data before writing the superblock.
 * Management operations (create, delete, snapshot, clone, grow) commit before
 * they return, so what they report is durable. FUSE fsyncs commit off the
 * event loop (`flushAsync`): while that commit waits for the disk, reads and
 * in-place writes go on; anything that would change metadata first finishes
 * the commit (`settle`).
 *
 * Caveats: one process per pool (see pool-dir.ts for the lock); calls are
 * synchronous and must not be interleaved from several threads.
 */
import { LRUCache } from 'lru-cache';

import { CowvolError, assert, fail, isNoSpace } from '../errors.js';
import { BTrees } from './btree.js';
import { Catalog } from './catalog.js';
import { EMPTY_LOG, checkCommit, logPagesFor, writeLog } from './commit-log.js';
import { GroupSync } from './group-sync.js';
import type { Disk } from './disk.js';
import { PageCache } from './page-cache.js';
import { PAGE_SIZE, PageKind } from './page.js';
import { MAX_LEVELS, RadixTrees, type Tree, capacity, levelsFor } from './radix-tree.js';
import { SpaceMap } from './space-map.js';
import { type Superblock, readSuperblocks, writeSuperblock } from './superblock.js';
import { DEFAULT_KIND, type Volume } from './volume-record.js';
import { Reserve } from './reserve.js';
import { ZeroChunks } from './zero-chunks.js';

export const DEFAULT_CHUNK_SIZE = 64 * 1024;
export const MIN_CHUNK_SIZE = 4 * 1024;
export const MAX_CHUNK_SIZE = 1024 * 1024;
export const DEFAULT_CACHE_BYTES = 64 * 1024 * 1024;
export const VOLUME_ALIGN = 4096;
/** Chunk numbers and indices are u32 on disk. */
const MAX_CHUNKS = 0xffffffff;
/** The chunk indices a filesystem volume's files are laid out in (u32, as the addon keys them). */
export const FS_SPACE_CHUNKS = 0xffffffff;
/**
 * Translation cache values: chunk number * XLATE_TAGS + tag, where tag 0
 * means "mapped, not known writable" and tag t > 0 means "writable in place
 * while the volume's share epoch maps to t".
 */
const XLATE_TAGS = 2 ** 21;
/** Freed chunks waiting for their hole punch after commit; beyond this, space is reclaimed on reuse. */
const MAX_PENDING_PUNCHES = 65536;
/** Punches running off the event loop at most; past it, a punch runs in place. */
const MAX_PUNCHING = 4096;
/** Zero chunks the frontend holds for first writes (the native table holds at most 1024). */
const RESERVE_CHUNKS = 1024;
/** Free chunks that must stay allocatable while others wait for their punch off the event loop; below, punches run here. */
const PUNCH_ROOM = 4 * RESERVE_CHUNKS;
/**
 * Holes offered past a first write or a read of an unmapped index: a
 * sequential writer's next chunks. Twice the reserve, so that when the
 * reserve runs low (half used) the holes offered still reach well past it.
 */
const HOLE_RUN = 2 * RESERVE_CHUNKS;

/**
 * The in-place write rule, and who enforces it.
 *
 * The rule lives in one place, `Pool.ownedInPlace`: a chunk may be written
 * where it is only while this volume alone holds it now and in the last
 * commit. The pool's translation cache (`xlate`) is the one JavaScript-side
 * cache of its answers. A frontend that serves I/O outside the pool (the
 * FUSE addon's native table) is a MappingListener: the pool hands it every
 * mapping it resolves (`map`, with the rule's answer), and takes mappings
 * back (`dropVolume`, `dropChunk`) before anything can make them wrong. The
 * native side only looks entries up; it never decides.
 *
 * Drops must return only once no I/O through the dropped entries is in flight.
 *
 * First writes without JavaScript: the pool tells the listener which indices
 * are holes (unmapped, `hole`) and hands it free chunks that read as zeros
 * even after a crash (`reserve`; they stay reserved in the data space map).
 * The frontend may serve a first write into a hole with a reserved chunk and
 * reports it (`taken`); the pool folds those into the maps (`fold`) before
 * anything reads or changes the volume's map and before every commit. A
 * reserved chunk no commit recorded is free after a crash, as the space map
 * never counted it. This is the only metadata change that starts outside the
 * pool, and the pool still made every decision it rests on.
 */
/**
 * A frontend that serves one filesystem volume's data outside the pool from
 * a table of its own, keyed by its files (a cowfs mount, src/fuse/file-chunks.ts).
 * It asks for mappings itself (`placeOf`) and must forget them when told,
 * as the listener must (drops return once no I/O through them is in flight).
 */
export interface VolumeWatcher {
  /** Every mapping of the volume: it gains a sharer or is deleted. */
  dropVolume(): void;
  /** The mapping at one chunk index of the volume: replaced or unmapped. */
  dropChunk(index: number): void;
  /** A fork of the volume is about to be made: what the watcher holds back (the times of writes it served) goes in first. */
  settle(): void;
  /** The pool failed: whatever the watcher serves without it must stop claiming durability. */
  failed(): void;
  /** A commit was sealed or became durable: the generation changes made from now on commit as, and the last durable one. */
  generations?(open: number, durable: number): void;
  /** The volume is short of room: give back all the watcher holds for first writes (`holdRoom`), taking back what it offered. */
  releaseRoom?(): void;
}

export interface MappingListener {
  /** Every mapping of the volume: it gains a sharer or is deleted. */
  dropVolume(id: number): void;
  /** The mapping at one chunk index: it is replaced (CoW break) or unmapped. */
  dropChunk(id: number, index: number): void;
  /**
   * Chunk `index` of volume `id` lives at `offset` of the data file;
   * `writable`: in place, per the rule. `breakable` (when not writable): a
   * write may copy it into a reserved chunk (a CoW break, reported through
   * `taken`); false for a read-only volume.
   */
  map?(id: number, index: number, offset: number, writable: boolean, breakable?: boolean): void;
  /** Why the volume must not be removed now (a frontend user holds it), or null. */
  holder?(id: number): string | null;
  /** These indices of volume `id` are unmapped: a first write there may take a reserved chunk. */
  holes?(id: number, indices: number[]): void;
  /** Free zero chunks (data file offsets) to serve first writes with; returns how many it took in. */
  reserve?(offsets: number[]): number;
  /**
   * First writes and CoW breaks served since the last call: [volume id,
   * index, data file offset, offset of the chunk it replaced (-1 for a first
   * write)] each. An id no volume has gives the chunk back (spoiled: punched).
   */
  taken?(): [number, number, number, number?][];
  /**
   * Whether a flush would have to commit (metadata changed, a commit in
   * flight, or the pool failed). While it would not, a flush is a data sync
   * and the frontend may make it itself. Said when it becomes true, and after
   * every commit; a frontend that hands over first writes (`taken`) must
   * count itself as needing a commit from then on, until told otherwise.
   */
  commitNeeded?(needed: boolean): void;
  /**
   * The map-change journal (native/src/journal.c): a mapping the pool
   * changed on the data path (offsets, -1 for none), recorded before the
   * request is answered so a successor can replay it after a kill. False
   * when the journal is full: the pool then commits instead.
   */
  journal?(id: number, index: number, offset: number, old: number): boolean;
  /**
   * Filesystem tree items put (deleted: `value` null), for the same
   * journal, as one unit a kill leaves whole or absent; with the FUSE
   * request that made them (`unique`, 0 for none). False when it is full.
   */
  journalItems?(items: readonly ItemChange[], unique: number): boolean;
  /** The journal position a commit sealed now covers (every first write folded before it). */
  journalCover?(): number;
  /** Commit `generation` covers the journal up to `covered`: said before its superblock is written. */
  journalMark?(generation: number, covered: number): void;
  /** That superblock is written: the journal can drop what it covers. */
  journalTrim?(covered: number): void;
}

/** One journal record as a successor replays it (Pool.replay). */
export interface MapChange {
  id: number;
  index: number;
  /** Data file offsets; -1 for none. */
  offset: number;
  old: number;
}

/** A filesystem tree item a killed daemon changed (put, or deleted when `value` is null), as a successor replays it. */
export interface ItemChange {
  id: number;
  key: Buffer;
  value: Buffer | null;
}

export type Replayed = MapChange | ItemChange;

/** A volume is named by its name or by its id (what the FUSE frontend has from an inode). */
export type VolumeRef = string | number;

/** Longest name the pool stores; the naming rules themselves live in src/volumes. */
const MAX_NAME_BYTES = 512;

export interface InitOptions {
  chunkSize?: number;
  /** Most bytes of data the pool may hold; 0 means as much as the disk holds. */
  capacity?: number;
}

export interface OpenOptions {
  /** Byte budget of the metadata page cache. */
  cacheBytes?: number;
  /** Entries in the in-place write translation cache. */
  xlateEntries?: number;
  /** Commit when the transaction has this many pages to write (bounds what an unflushed crash loses, and the commit log). */
  dirtyPageLimit?: number;
}

export interface ForkOptions {
  readOnly: boolean;
  size?: number;
  parentId?: number;
  origin?: string;
  labels?: Record<string, string>;
}

export interface CreateOptions {
  labels?: Record<string, string>;
  kind?: string;
  /** A filesystem volume: it gets a metadata tree, and its map holds its files' data (volume-record.ts). */
  filesystem?: boolean;
  /** What its metadata tree holds from the start (in the same commit). */
  items?: [Buffer, Buffer][];
}

export interface VolumeInfo {
  id: number;
  name: string;
  size: number;
  chunkSize: number;
  readOnly: boolean;
  origin: string;
  parentId: number;
  createdAt: number;
  allocatedBytes: number;
  labels: Record<string, string>;
  kind: string;
}

export interface PoolStats {
  uuid: string;
  generation: number;
  chunkSize: number;
  capacityBytes: number;
  usedChunks: number;
  usedBytes: number;
  /** Chunks allocatable now without growing past the capacity (Infinity if none is set). */
  freeChunks: number;
  dataHighWater: number;
  metaPages: number;
  metaHighWater: number;
  volumes: number;
  cacheBytes: number;
  cacheBudget: number;
}

/** A commit whose pages and log are written, waiting for its flushes and its superblock. */
interface SealedCommit {
  sb: Superblock;
  logPages: number[];
  dataFirst: boolean;
  sbWritten: boolean;
  /** The journal position it covers (MappingListener.journalCover). */
  covered: number;
  /** performance.now() when it was sealed. */
  sealed: number;
  /** Settles when the commit is done, or has failed. */
  done: Promise<void>;
}

export function validateChunkSize(chunkSize: number): void {
  if (!Number.isInteger(chunkSize) || chunkSize < MIN_CHUNK_SIZE || chunkSize > MAX_CHUNK_SIZE || (chunkSize & (chunkSize - 1)) !== 0) {
    fail('EINVAL', `chunk size ${chunkSize} is invalid: use a power of two from 4KiB to 1MiB`);
  }
}

export class Pool {
  readonly chunkSize: number;
  readonly uuid: string;
  readonly createdAt: number;
  readonly capacityChunks: number;
  private readonly cache: PageCache;
  private readonly trees: RadixTrees;
  private readonly btrees: BTrees;
  private readonly meta: SpaceMap;
  private readonly data: SpaceMap;
  private readonly catalog: Catalog;
  generation: number;
  private readonly metaDisk: Disk;
  private readonly dataDisk: Disk;
  private readonly xlate: LRUCache<number, number>;
  private nextXlateId = 1;
  private readonly dirtyPageLimit: number;
  /** Free chunks known to read as zeros, durably or for now. */
  private readonly zero: ZeroChunks;
  /** This transaction allocated a chunk whose lost data could show old bytes: data flush before superblock. */
  private dataFirst = false;
  /** The commit waiting for its flush (flushAsync); null when none. Event-loop only. */
  private inflight: SealedCommit | null = null;
  /** The newest commit's log pages: held free of allocation until a newer commit is durable. */
  private logPages: number[] = [];
  private pendingPunches: number[] = [];
  /** Punches running off the event loop (Disk.punchAsync), and who waits for them all (`punched`). Event-loop only. */
  private punching = 0;
  /** A data sync for punched chunks a reserve is waiting on runs (syncPunches). Event loop only. */
  private punchSync = false;
  private punchWaiters: (() => void)[] = [];
  /** What the listener was last told by commitNeeded. */
  private saidCommitNeeded = false;
  /** Zero chunks the listener holds for first writes. */
  private readonly reserve: Reserve;
  /** Volume id -> newest index of a first write folded since holes were last offered past it; at most one per record the listener holds. */
  private readonly tails = new Map<number, number>();
  /**
   * Volume id -> [first, end) of the indices last offered as holes, so the
   * requests that raced an offer (a queue's worth) do not offer it again.
   * Only for `offeredTo`; one pair per volume the listener wrote into.
   */
  private readonly offered = new Map<number, [number, number]>();
  private offeredTo: MappingListener | null = null;
  /** One chunk of memory for CoW breaks. */
  private readonly scratch: Buffer;
  private zeroBuffer: Buffer | null = null;
  private txnChanged = false;
  /** See changeCount. */
  private changes = 0;
  /** Inside forkAll/removeAll: the caller commits once at the end. */
  private batching = false;
  /** A journal replay is under way (replay() to the commit after it): freed chunks wait for that commit to be punched. */
  private replaying = false;
  /** Tree changes of the atomically() step under way, journaled at its end as one unit. */
  private itemBatch: ItemChange[] = [];
  /** Inside atomically(): commits wait; commitOwed says one is due (a full journal). */
  private atomicDepth = 0;
  private commitOwed = false;
  private failure: unknown = null;
  private closed = false;
  listener: MappingListener | null = null;
  /** Filesystem volumes' own frontends, by volume id (watch). */
  private readonly watchers = new Map<number, VolumeWatcher>();
  /** Volume id -> chunks of its room a watcher holds for first writes it may serve (holdRoom); never above what the size leaves. */
  private readonly held = new Map<number, number>();
  /**
   * Why opening took the commit before the newest, or null. After a crash
   * that is expected; without one, a page of the newest commit went bad.
   * Either way, flushes it had not answered are gone: the daemon logs it
   * and check reports it.
   */
  discardedCommit: string | null = null;
  /** Flushes from callers that can wait: grouped, with the disk waits off the event loop (flushAsync). */
  private readonly flushes: GroupSync;
  /** Flushes of one volume whose map has not changed since the last commit: data syncs only. */
  private readonly dataFlushes: GroupSync;
  private flushCommits = 0;
  private flushDataSyncs = 0;
  /** Copy-on-write breaks: writes that found their chunk shared and took a new one. */
  private cowBreaks = 0;
  private commits = 0;
  /** Told of each durable commit with the seconds from sealing it; for metrics. */
  onCommit: ((seconds: number) => void) | null = null;

  /** Formats empty disks as a pool. */
  static init(metaDisk: Disk, dataDisk: Disk, options: InitOptions = {}): void {
    const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
    validateChunkSize(chunkSize);
    const capacity = options.capacity ?? 0;
    if (!Number.isSafeInteger(capacity) || capacity < 0) fail('EINVAL', `capacity ${capacity} is invalid`);
    if (capacity > 0 && capacity < chunkSize) fail('EINVAL', `capacity must hold at least one chunk (${chunkSize} bytes)`);
    const empty = { root: 0, levels: 1 };
    const sb: Superblock = {
      generation: 1,
      chunkSize,
      capacityChunks: Math.min(MAX_CHUNKS - 1, Math.floor(capacity / chunkSize)),
      meta: { tree: empty, highWater: 2, used: 0 },
      data: { tree: empty, highWater: 1, used: 0 },
      directory: empty,
      nextVolumeId: 1,
      createdAt: Date.now(),
      uuid: crypto.randomUUID(),
      log: EMPTY_LOG,
    };
    metaDisk.write(Buffer.alloc(2 * PAGE_SIZE), 0);
    writeSuperblock(metaDisk, sb);
    metaDisk.sync();
    dataDisk.sync();
  }

  /**
   * Opens the newest commit if it is whole (its log checks out), else the
   * one before it, which was durable before the newer began; the torn
   * superblock is then overwritten at once by an empty commit, so it cannot
   * be taken for whole later. Reads the two superblocks, the log and the
   * pages the log names: nothing else is scanned or replayed.
   */
  static open(metaDisk: Disk, dataDisk: Disk, options: OpenOptions = {}, where = 'the pool'): Pool {
    const [newest, older] = readSuperblocks(metaDisk, where) as [Superblock, Superblock | undefined];
    const whole = newest.log === null ? { pages: [] } : checkCommit(metaDisk, newest.log);
    if ('pages' in whole) return new Pool(metaDisk, dataDisk, newest, options, whole.pages);
    if (older === undefined) fail('ECORRUPT', `${where}: the last commit is torn (${whole.torn}) and no earlier one remains`);
    const pool = new Pool(metaDisk, dataDisk, older, options, []);
    pool.discardedCommit = `commit ${newest.generation} was torn (${whole.torn}), as a crash while it was being flushed leaves it: opened commit ${older.generation}, the one before`;
    pool.txnChanged = true;
    pool.commit();
    return pool;
  }

  private constructor(metaDisk: Disk, dataDisk: Disk, sb: Superblock, options: OpenOptions, logPages: number[]) {
    this.metaDisk = metaDisk;
    this.dataDisk = dataDisk;
    this.chunkSize = sb.chunkSize;
    validateChunkSize(this.chunkSize);
    this.uuid = sb.uuid;
    this.createdAt = sb.createdAt;
    this.capacityChunks = sb.capacityChunks;
    this.generation = sb.generation;
    this.cache = new PageCache(metaDisk, options.cacheBytes ?? DEFAULT_CACHE_BYTES);
    this.dirtyPageLimit = options.dirtyPageLimit ?? Math.max(16, Math.floor(this.cache.budget() / PAGE_SIZE / 4));
    this.trees = new RadixTrees(this.cache);
    this.meta = new SpaceMap(this.trees, PageKind.META_SPACE, sb.meta, 2, Infinity);
    const dataLimit = sb.capacityChunks > 0 ? sb.capacityChunks + 1 : MAX_CHUNKS;
    this.data = new SpaceMap(this.trees, PageKind.DATA_SPACE, sb.data, 1, dataLimit);
    this.trees.hooks = {
      allocPage: () => this.meta.reserve(),
      confirmPage: (page) => {
        this.markChanged();
        this.meta.confirm(page);
      },
      pageCount: (page) => this.meta.count(page),
      pageCommittedCount: (page) => this.meta.committedCount(page),
      incPage: (page) => this.meta.inc(page),
      decPage: (page) => {
        const left = this.meta.dec(page);
        if (left === 0 && this.meta.committedCount(page) === 0) this.cache.forget(page);
        return left;
      },
      incChunk: (chunk) => this.data.inc(chunk),
      decChunk: (chunk) => this.releaseChunk(chunk),
    };
    this.btrees = new BTrees(this.cache, () => this.trees.hooks);
    this.xlate = new LRUCache<number, number>({ max: Math.max(16, options.xlateEntries ?? 65536) });
    this.catalog = new Catalog(this.trees, this.meta, sb.directory, sb.nextVolumeId);
    this.catalog.load(() => this.newXlateId());
    this.scratch = Buffer.alloc(this.chunkSize);
    const dataSync = (): Promise<void> => {
      this.flushDataSyncs++;
      return this.syncDataAsync();
    };
    this.flushes = new GroupSync(() => {
      this.fold();
      if (!this.hasChanges()) return dataSync();
      this.flushCommits++;
      return this.commitAsync();
    });
    this.dataFlushes = new GroupSync(dataSync);
    this.zero = new ZeroChunks(Math.max(this.data.highWater, Math.ceil(dataDisk.size() / this.chunkSize) + 1), MAX_PENDING_PUNCHES);
    this.reserve = new Reserve(this.data, this.zero, (chunk) => this.chunkOffset(chunk), RESERVE_CHUNKS);
    for (const page of logPages) this.meta.hold(page);
    this.logPages = logPages;
  }

  // ---- volumes -------------------------------------------------------------

  list(): VolumeInfo[] {
    this.foldIfOpen();
    return this.catalog.all().map((v) => this.info(v));
  }

  has(ref: VolumeRef): boolean {
    return this.lookup(ref) !== undefined;
  }

  stat(ref: VolumeRef): VolumeInfo {
    this.foldIfOpen();
    return this.info(this.volume(ref));
  }

  /**
   * fold() for list and stat, whose allocation counts should be current:
   * skipped on a closed or failed pool, which must still answer, and while
   * a commit waits for the disk (FUSE asks stat for every getattr; folding
   * then would finish the commit on the event loop).
   */
  private foldIfOpen(): void {
    if (!this.closed && this.failure === null && this.inflight === null) this.fold();
  }

  private lookup(ref: VolumeRef): Volume | undefined {
    return typeof ref === 'number' ? this.catalog.byIdGet(ref) : this.catalog.get(ref);
  }

  private volume(ref: VolumeRef): Volume {
    const v = this.lookup(ref);
    if (!v) fail('ENOENT', typeof ref === 'number' ? `no volume with id ${ref}` : `no volume or snapshot named '${ref}'`);
    return v;
  }

  createVolume(name: string, size: number, options: CreateOptions = {}): VolumeInfo {
    this.mutable();
    this.validateName(name);
    this.validateSize(size);
    this.nameFree(name);
    const tree: Tree = { root: 0, levels: levelsFor(Math.max(1, this.chunksOf(size))) };
    const v = this.catalog.add(
      {
        name,
        size,
        tree,
        readOnly: false,
        parentId: 0,
        origin: '',
        createdAt: Date.now(),
        mapped: 0,
        labels: { ...(options.labels ?? {}) },
        kind: options.kind ?? DEFAULT_KIND,
        fs: options.filesystem === true ? { root: 0, levels: 0 } : null,
      },
      this.newXlateId(),
    );
    if (v.fs !== null) for (const [k, value] of options.items ?? []) this.btrees.put(v.fs, k, value);
    this.markChanged();
    this.commit();
    return this.info(v);
  }

  /**
   * A new volume that shares every chunk of `source` as it is now: one
   * refcount on the source's root, whatever its size or history.
   */
  fork(source: string, name: string, options: ForkOptions): VolumeInfo {
    this.mutable();
    // forkAll settles every source before its batch: a settle may commit.
    if (!this.batching) this.watchers.get(this.volume(source).id)?.settle();
    const src = this.volume(source);
    this.validateName(name);
    this.nameFree(name);
    const size = options.size ?? src.size;
    this.validateSize(size);
    if (size < src.size) fail('EINVAL', `size ${size} is smaller than the source '${source}' (${src.size} bytes)`);
    this.dropVolume(src.id);
    // What the frontend served before the drop returned belongs in the copy: it was answered before the fork.
    this.fold();
    // The frontend lost every mapping of the source: its cached ones must miss, so the next access tells it again.
    src.xlateId = this.newXlateId();
    this.offered.delete(src.id);
    const tree: Tree = { ...src.tree };
    if (tree.root !== 0) this.meta.inc(tree.root);
    const fs: Tree | null = src.fs === null ? null : { ...src.fs };
    if (fs !== null && fs.root !== 0) this.meta.inc(fs.root);
    // Everything the source owned is shared from now on: no more in-place writes.
    this.shareChanged(src);
    const v = this.catalog.add(
      {
        name,
        size,
        tree,
        readOnly: options.readOnly,
        parentId: options.parentId ?? 0,
        origin: options.origin ?? source,
        createdAt: Date.now(),
        mapped: src.mapped,
        labels: { ...(options.labels ?? {}) },
        kind: src.kind,
        fs,
      },
      this.newXlateId(),
    );
    this.trees.ensureLevels(v.tree, PageKind.MAP, levelsFor(Math.max(1, this.chunksOf(size))));
    this.markChanged();
    if (!this.batching) this.commit();
    return this.info(v);
  }

  /**
   * Several forks in one metadata transaction: after a crash either all of
   * them exist or none does (a consistent group snapshot). Every fork is
   * checked before any is made; if one still fails, the ones made are
   * removed again before the commit, so nothing is half-done.
   */
  forkAll(forks: { source: string; name: string; options: ForkOptions }[]): VolumeInfo[] {
    this.mutable();
    const names = new Set<string>();
    for (const f of forks) {
      this.volume(f.source);
      this.nameFree(f.name);
      if (names.has(f.name)) fail('EEXIST', `'${f.name}' is named twice`);
      names.add(f.name);
    }
    for (const f of forks) this.watchers.get(this.volume(f.source).id)?.settle();
    const made: VolumeInfo[] = [];
    this.batching = true;
    try {
      for (const f of forks) made.push(this.fork(f.source, f.name, f.options));
    } catch (err) {
      for (const m of made) this.remove(m.name);
      throw err;
    } finally {
      this.batching = false;
    }
    this.commit();
    return made;
  }

  remove(name: string): void {
    this.mutable();
    const v = this.volume(name);
    this.refuseIfHeld(v);
    this.dropVolume(v.id);
    this.offered.delete(v.id);
    this.trees.release(v.tree);
    if (v.fs !== null) this.btrees.release(v.fs);
    this.catalog.remove(v);
    this.markChanged();
    if (!this.batching) this.commit();
  }

  /** Several removals in one metadata transaction (all names are checked first). */
  removeAll(names: string[]): void {
    this.mutable();
    for (const name of names) this.refuseIfHeld(this.volume(name));
    this.batching = true;
    try {
      for (const name of new Set(names)) this.remove(name);
    } finally {
      this.batching = false;
    }
    this.commit();
  }

  grow(name: string, size: number): VolumeInfo {
    this.mutable();
    const v = this.volume(name);
    if (v.readOnly) fail('EROFS', `'${name}' is a read-only snapshot; clone it to get a volume you can grow`);
    this.validateSize(size);
    if (size < v.size) fail('EPERM', `'${name}' is ${v.size} bytes; shrinking to ${size} is not supported`);
    if (size === v.size) return this.info(v);
    this.trees.ensureLevels(v.tree, PageKind.MAP, levelsFor(this.chunksOf(size)));
    v.size = size;
    this.catalog.touch(v);
    this.markChanged();
    this.commit();
    return this.info(v);
  }

  // ---- filesystem trees ----------------------------------------------------

  /** One entry of a filesystem volume's metadata tree (btree.ts). */
  fsGet(ref: VolumeRef, key: Buffer): Buffer | undefined {
    this.usable();
    return this.btrees.get(this.fsOf(this.volume(ref)), key);
  }

  /** Entries from <= key < to in order, until fn returns true; fn must not change the tree. */
  fsRange(ref: VolumeRef, from: Buffer, to: Buffer, fn: (key: Buffer, value: Buffer) => boolean | void): void {
    this.usable();
    this.btrees.range(this.fsOf(this.volume(ref)), from, to, fn);
  }

  /**
   * Changes to the tree join the open transaction. A namespace operation
   * made of several runs them inside atomically(), so it is whole or absent
   * after a crash.
   */
  fsPut(ref: VolumeRef, key: Buffer, value: Buffer): void {
    const v = this.fsWritable(ref);
    this.btrees.put(this.fsOf(v), key, value);
    this.catalog.touch(v);
    this.markChanged();
    this.journalItem(v, key, value);
  }

  fsDel(ref: VolumeRef, key: Buffer): boolean {
    const v = this.fsWritable(ref);
    const had = this.btrees.del(this.fsOf(v), key);
    if (had) {
      this.catalog.touch(v);
      this.markChanged();
      this.journalItem(v, key, null);
    }
    return had;
  }

  /** Records a tree change for a successor (a mount it takes over after a kill): at the end of the atomically() it is part of. */
  private journalItem(v: Volume, key: Buffer, value: Buffer | null): void {
    if (!this.listener?.journalItems) return;
    this.itemBatch.push({ id: v.id, key, value });
    if (this.atomicDepth === 0) this.journalBatch(0);
  }

  /** The tree changes of one atomic step, as one journal unit; a full journal gets a commit instead, which holds them. */
  private journalBatch(unique: number): void {
    const items = this.itemBatch;
    if (items.length === 0) return;
    this.itemBatch = [];
    if (this.listener?.journalItems?.(items, unique) !== false) return;
    if (this.atomicDepth > 0) this.commitOwed = true;
    else this.commit();
  }

  /**
   * Runs fn as one step of the transaction: nothing commits inside it (the
   * dirty-page bound and a full journal wait for its end), so a change made
   * of several calls (a filesystem's unlink: an entry, an inode, the file's
   * regions) lands whole or not at all. The bound applies when it returns.
   */
  atomically<T>(fn: () => T, request = 0): T {
    this.usable();
    this.atomicDepth++;
    try {
      return fn();
    } finally {
      this.atomicDepth--;
      // The step's tree changes reach the journal whole, named after the request (`request`: its FUSE unique) that made them.
      if (this.atomicDepth === 0) this.journalBatch(request);
      if (this.atomicDepth === 0 && this.failure === null && !this.closed) {
        if (this.commitOwed) {
          this.commitOwed = false;
          this.commit();
        } else this.maybeCommit();
      }
    }
  }

  private fsOf(v: Volume): Tree {
    if (v.fs === null) fail('EINVAL', `'${v.name}' is not a filesystem volume`);
    return v.fs;
  }

  private fsWritable(ref: VolumeRef): Volume {
    this.mutable();
    const v = this.volume(ref);
    if (v.readOnly) fail('EROFS', `'${v.name}' is a read-only snapshot`);
    return v;
  }

  // ---- data ----------------------------------------------------------------

  read(ref: VolumeRef, offset: number, length: number): Buffer {
    this.current();
    const v = this.volume(ref);
    this.checkRange(v, offset, length);
    // Every byte is written below: read from a chunk, or zero-filled.
    const out = Buffer.allocUnsafe(length);
    let firstHole = -1;
    this.forPieces(offset, length, (index, within, at, n) => {
      const chunk = this.resolve(v, index);
      if (chunk !== 0) this.dataDisk.read(out.subarray(at, at + n), this.chunkOffset(chunk) + within);
      else out.fill(0, at, at + n);
      if (chunk === 0 && firstHole < 0) firstHole = index;
    });
    if (firstHole >= 0) this.offerHoles(v, firstHole, HOLE_RUN / 16);
    return out;
  }

  write(ref: VolumeRef, offset: number, data: Buffer): void {
    this.mutable();
    const v = this.volume(ref);
    if (v.readOnly) fail('EROFS', `'${v.name}' is a read-only snapshot`);
    this.checkRange(v, offset, data.length);
    if (v.fs !== null) this.checkRoom(v, offset, data.length);
    this.forPieces(offset, data.length, (index, within, at, n) => {
      this.writeChunk(v, index, within, data.subarray(at, at + n));
    });
    this.maybeCommit();
  }

  /**
   * Maps chunk indices [to, to + count) of a filesystem volume to the chunks
   * [from, from + count) map, sharing them (a reflink: no data moves; a
   * write to either side then breaks the share). Unmapped sources unmap
   * their destination. The ranges must not overlap. Refused whole (ENOSPC)
   * when the volume would map more than its size.
   */
  shareChunks(ref: VolumeRef, from: number, to: number, count: number): void {
    this.mutable();
    const v = this.volume(ref);
    if (v.fs === null) fail('EINVAL', `'${v.name}' is not a filesystem volume`);
    if (v.readOnly) fail('EROFS', `'${v.name}' is a read-only snapshot`);
    const valid = (n: number): boolean => Number.isSafeInteger(n) && n >= 0;
    if (!valid(from) || !valid(to) || !valid(count) || Math.max(from, to) + count > FS_SPACE_CHUNKS) fail('EINVAL', `invalid chunk ranges ${from}, ${to} +${count}`);
    if (from < to + count && to < from + count) fail('EINVAL', `chunk ranges ${from} and ${to} of ${count} overlap`);
    let grows = 0;
    for (let i = 0; i < count; i++) if (this.trees.get(v.tree, from + i) !== 0 && this.trees.get(v.tree, to + i) === 0) grows++;
    if ((v.mapped + grows) * this.chunkSize > v.size) fail('ENOSPC', `'${v.name}' is full (${v.size} bytes)`);
    for (let i = 0; i < count; i++) this.shareOne(v, from + i, to + i);
    // No journal record says "shared": a successor after a kill must find the reflink in a commit.
    if (this.listener?.journal && count > 0) {
      if (this.atomicDepth > 0) this.commitOwed = true;
      else this.commit();
    } else this.maybeCommit();
  }

  private shareOne(v: Volume, from: number, to: number): void {
    const chunk = this.trees.get(v.tree, from);
    const old = this.trees.get(v.tree, to);
    if (chunk === old) return;
    if (chunk === 0) return this.unmap(v, to);
    // Neither side may be written in place any more: the frontend and the cache forget both.
    for (const index of [from, to]) {
      this.dropChunk(v, index);
      this.xlate.delete(this.xlateKey(v, index));
    }
    this.data.inc(chunk);
    this.trees.set(v.tree, PageKind.MAP, to, chunk);
    if (old !== 0) this.releaseChunk(old);
    else v.mapped++;
    this.catalog.touch(v);
    this.markChanged();
  }

  /** Unmaps whole chunks in the range and zeroes partial ones; the range reads as zeros. */
  discard(ref: VolumeRef, offset: number, length: number): void {
    this.mutable();
    const v = this.volume(ref);
    if (v.readOnly) fail('EROFS', `'${v.name}' is a read-only snapshot`);
    this.checkRange(v, offset, length);
    this.forPieces(offset, length, (index, within, _at, n) => {
      if (this.trees.get(v.tree, index) === 0) return;
      if (n === this.chunkSize || (within === 0 && index * this.chunkSize + n >= v.size)) {
        this.unmap(v, index);
      } else {
        this.writeChunk(v, index, within, Buffer.alloc(n));
      }
    });
    this.maybeCommit();
  }

  /**
   * Zeroes the range and keeps it mapped (FALLOC_FL_ZERO_RANGE: the loop
   * device sends it for a write-zeroes that asks not to unmap, as
   * mkfs.ext4 does when it zeroes its journal). A whole chunk that cannot be
   * written in place gets a fresh chunk that already reads as zeros, so no
   * data is written; later writes into it go in place, with no map change
   * for a flush to commit. Refused whole (ENOSPC) when the pool has too few
   * free chunks for it.
   */
  zeroRange(ref: VolumeRef, offset: number, length: number): void {
    this.mutable();
    const v = this.volume(ref);
    if (v.readOnly) fail('EROFS', `'${v.name}' is a read-only snapshot`);
    this.checkRange(v, offset, length);
    if (v.fs !== null) this.checkRoom(v, offset, length);
    let fresh = 0;
    this.forPieces(offset, length, (index) => {
      const chunk = this.trees.get(v.tree, index);
      if (chunk === 0 || !this.ownedInPlace(v, index, chunk)) fresh++;
    });
    if (fresh > this.data.available() + this.data.pendingFree) fail('ENOSPC', `the pool has too few free chunks to zero ${length} bytes of '${v.name}'`);
    this.forPieces(offset, length, (index, within, _at, n) => {
      this.writeChunk(v, index, within, n === this.chunkSize ? null : Buffer.alloc(n));
    });
    this.maybeCommit();
  }

  /** Every write so far durable: a commit, or a data sync when no metadata changed. */
  flush(): void {
    this.mutable();
    if (this.hasChanges()) this.commit();
    else this.syncData();
  }

  /**
   * flush() for callers that can wait (a FUSE fsync). Callers that arrive
   * while a flush runs share the next one (GroupSync), so one commit serves
   * every volume. With metadata changed since the last commit it commits
   * (commitAsync); without, only data needs to be durable (every write since
   * went in place into chunks the committed state already maps), and it
   * syncs the data file. Either way the waits for the disk run on libuv's
   * thread pool. A failed sync fails the pool: which writes reached the disk
   * is no longer known.
   */
  flushAsync(ref?: VolumeRef): Promise<void> {
    let group = this.flushes;
    try {
      this.current();
      // Only this volume's writes must be durable: with its map unchanged since the
      // last durable commit, they all went in place, whatever other volumes did.
      const v = ref === undefined ? undefined : this.volume(ref);
      if (v !== undefined && !this.catalog.uncommitted(v)) group = this.dataFlushes;
    } catch (err) {
      return Promise.reject(err);
    }
    return group.sync().catch((err: unknown) => {
      this.fail(err);
      throw err;
    });
  }

  /** Refuses all work from now on (until reopened): writes were lost, or which reached the disk is unknown. */
  fail(err: unknown): void {
    this.failure ??= err;
    this.sayCommitNeeded(true);
    for (const w of this.watchers.values()) w.failed();
  }

  /** The generation the open transaction will commit as, and the last durable one. */
  generations(): { open: number; durable: number } {
    return { open: (this.inflight?.sb.generation ?? this.generation) + 1, durable: this.generation };
  }

  private tellGenerations(open: number, durable: number): void {
    for (const w of this.watchers.values()) w.generations?.(open, durable);
  }

  /** Whether the volume changed since the last durable commit: a flush of it would commit. */
  volumeUncommitted(ref: VolumeRef): boolean {
    return this.catalog.uncommitted(this.volume(ref));
  }

  /** Flushes asked for through flushAsync, and the commits and data-only syncs made for them. */
  flushStats(): { requests: number; commits: number; dataSyncs: number } {
    return { requests: this.flushes.requests + this.dataFlushes.requests, commits: this.flushCommits, dataSyncs: this.flushDataSyncs };
  }

  /** Counts since the pool was opened, for metrics: durable commits, CoW breaks, and the metadata page cache's traffic. */
  activity(): { commits: number; cowBreaks: number; cache: { hits: number; misses: number; evictions: number } } {
    return { commits: this.commits, cowBreaks: this.cowBreaks, cache: this.cache.traffic() };
  }

  /** Why the pool refuses work (it failed, or is closed), or null while it serves. */
  get broken(): string | null {
    if (this.closed) return 'the pool is closed';
    const err = this.failure ?? this.cache.writeError;
    return err === null ? null : `the pool failed: ${err instanceof Error ? err.message : String(err)}`;
  }

  /** Metadata changed since the last commit: a flush would commit. */
  get uncommitted(): boolean {
    return this.hasChanges();
  }

  /** A commit is waiting for the disk: writes that change metadata would have to finish it first. */
  get committing(): boolean {
    return this.inflight !== null;
  }

  /** Settles once no commit is waiting for the disk. */
  async idle(): Promise<void> {
    for (let i = 0; this.inflight !== null; i++) {
      assert(i < 1000, 'a commit never settled');
      await this.inflight.done;
    }
  }

  /**
   * Writes buffered data back off the event loop (see Disk.writeBack). Long
   * writers call it between slices so dirty data never piles up: a commit's
   * data sync, which runs on the event loop, then has little to wait for.
   */
  async writeBackData(): Promise<void> {
    this.usable();
    await this.dataDisk.writeBack?.();
  }

  /** Bytes of chunks only this volume holds (walks the volume's map). */
  exclusiveBytes(ref: VolumeRef): number {
    this.current();
    const v = this.volume(ref);
    if (v.tree.root === 0) return 0;
    let chunks = 0;
    const walk = (page: number, level: number): void => {
      if (this.meta.count(page) > 1) return;
      for (const c of this.trees.children(page)) {
        if (level > 0) walk(c, level - 1);
        else if (this.data.count(c) === 1) chunks++;
      }
    };
    walk(v.tree.root, v.tree.levels - 1);
    return chunks * this.chunkSize;
  }

  /** The first mapped chunk index in [from, to) of the volume, or -1. */
  nextMapped(ref: VolumeRef, from: number, to: number): number {
    this.current();
    return this.trees.next(this.volume(ref).tree, from, to);
  }

  /** Calls fn for each mapped chunk index in [from, to) of the volume, in order; fn must not change the map. */
  forEachMapped(ref: VolumeRef, fn: (index: number) => void, from = 0, to = Infinity): void {
    this.current();
    const v = this.volume(ref);
    // A filesystem volume's map is an address space: its size bounds how much it maps, not where.
    const end = v.fs === null ? this.chunksOf(v.size) : FS_SPACE_CHUNKS;
    this.trees.forEach(v.tree, from, Math.min(to, end), (index) => fn(index));
  }

  /** What check reads: counts, trees and pages, with no way to change them. */
  inspect(): PoolView {
    this.foldIfOpen();
    return {
      chunkSize: this.chunkSize,
      meta: this.meta,
      data: this.data,
      directory: this.catalog.directory,
      volumes: () => this.catalog.all(),
      volumeById: (id) => this.catalog.byIdGet(id),
      recordChanged: (v) => this.catalog.isChanged(v),
      page: (page) => this.cache.get(page),
      fsWalk: (tree, fn) => this.btrees.walk(tree, fn),
      discardedCommit: this.discardedCommit,
    };
  }

  /** Bumped by every metadata change: a reader working in slices can tell it raced with one. */
  get changeCount(): number {
    return this.changes;
  }

  stats(): PoolStats {
    return {
      uuid: this.uuid,
      generation: this.generation,
      chunkSize: this.chunkSize,
      capacityBytes: this.capacityChunks * this.chunkSize,
      usedChunks: this.data.used,
      usedBytes: this.data.used * this.chunkSize,
      freeChunks: this.capacityChunks > 0 ? this.data.available() : Infinity,
      dataHighWater: this.data.highWater,
      metaPages: this.meta.used,
      metaHighWater: this.meta.highWater,
      volumes: this.catalog.size(),
      cacheBytes: this.cache.bytes(),
      cacheBudget: this.cache.budget(),
    };
  }

  // ---- transactions --------------------------------------------------------

  /**
   * Makes the transaction durable, waiting on the event loop. Flush order:
   * with `dataFirst`, data, then superblock and metadata; otherwise one
   * flush of each disk after everything is written (the order between the
   * two is irrelevant, so it alternates, and the crash simulation sees both).
   */
  commit(): void {
    this.mutable();
    if (!this.hasChanges()) return;
    const c = this.failing(() => this.seal());
    this.failing(() => {
      if (c.dataFirst) this.syncData();
      this.writeSuperblockOf(c);
      if (c.sb.generation % 2 === 0) this.metaDisk.sync();
      if (!c.dataFirst) this.syncData();
      if (c.sb.generation % 2 === 1) this.metaDisk.sync();
    });
    this.committed(c);
  }

  /** commit() with the waits for the disk on libuv's thread pool; see settle() for what may run meanwhile. */
  private async commitAsync(): Promise<void> {
    const c = this.failing(() => this.seal());
    let finish!: () => void;
    c.done = new Promise((resolve) => (finish = resolve));
    this.inflight = c;
    try {
      if (c.dataFirst) {
        await this.syncDataAsync();
        if (this.inflight !== c) return;
        this.failing(() => this.writeSuperblockOf(c));
        await this.syncMetaAsync();
      } else {
        this.failing(() => this.writeSuperblockOf(c));
        await Promise.all([this.syncDataAsync(), this.syncMetaAsync()]);
      }
      // settle() may have finished it meanwhile, or failed doing so.
      if (this.failure !== null) throw this.failure;
      if (this.inflight === c) {
        this.inflight = null;
        this.committed(c);
      }
    } catch (err) {
      // Even if settle() finished the commit meanwhile: its own sync may have passed only because this one took the error.
      this.fail(err);
      throw err;
    } finally {
      if (this.inflight === c) this.inflight = null;
      finish();
    }
  }

  /**
   * Finishes the commit in flight, waiting on the event loop. Everything
   * that can change metadata calls it first: the sealed commit's pages are
   * the transaction's own, which the next change would modify in place.
   * Reads and in-place writes need not: they change no page, and a chunk
   * the sealed commit maps is this volume's alone in it.
   */
  private settle(): void {
    const c = this.inflight;
    if (c === null) return;
    this.inflight = null;
    this.failing(() => {
      this.syncData();
      if (!c.sbWritten) this.writeSuperblockOf(c);
      this.metaDisk.sync();
    });
    this.committed(c);
  }

  /**
   * Once written, even before it is durable, a superblock is what a
   * successor opens after this process is killed (the host's page cache
   * outlives us), so the journal is marked before and trimmed after.
   */
  private writeSuperblockOf(c: SealedCommit): void {
    this.listener?.journalMark?.(c.sb.generation, c.covered);
    writeSuperblock(this.metaDisk, c.sb);
    c.sbWritten = true;
    this.listener?.journalTrim?.(c.covered);
  }

  /** Writes the transaction's pages and log, and builds the superblock that will name them. */
  private seal(): SealedCommit {
    this.catalog.persist();
    this.cache.flush();
    if (this.cache.writeError) throw this.cache.writeError;
    const written = this.cache.takeWritten();
    const pages: number[] = [];
    for (let i = logPagesFor(written.size); i > 0; i--) pages.push(this.meta.reserve());
    const log = writeLog(this.metaDisk, written, pages);
    const sb: Superblock = {
      generation: this.generation + 1,
      chunkSize: this.chunkSize,
      capacityChunks: this.capacityChunks,
      meta: this.meta.state(),
      data: this.data.state(),
      directory: { ...this.catalog.directory },
      nextVolumeId: this.catalog.nextId,
      createdAt: this.createdAt,
      uuid: this.uuid,
      log,
    };
    const covered = this.listener?.journalCover?.() ?? 0;
    const c: SealedCommit = { sb, logPages: pages, dataFirst: this.dataFirst, sbWritten: false, covered, done: Promise.resolve(), sealed: performance.now() };
    this.dataFirst = false;
    // Changes from here on belong to the next generation.
    this.tellGenerations(sb.generation + 1, this.generation);
    return c;
  }

  /** The superblock naming `c` is durable: its state is now where a crash returns. */
  private committed(c: SealedCommit): void {
    this.generation = c.sb.generation;
    this.replaying = false;
    this.btrees.committed();
    this.changes++;
    this.commits++;
    this.onCommit?.((performance.now() - c.sealed) / 1000);
    this.meta.committedNow();
    this.data.committedNow();
    this.catalog.committedNow();
    for (const page of this.logPages) this.meta.release(page);
    this.logPages = c.logPages;
    this.txnChanged = false;
    this.punchFreed();
    // Always said, not only on a change: the listener may have set it itself (a drain of first writes).
    this.tellCommitNeeded();
    this.tellGenerations(this.generation + 1, this.generation);
  }

  /**
   * Runs a step of a commit. If it throws, the committed state on disk is
   * intact, but this process can no longer tell which of its pages made it;
   * reopening is the way back.
   */
  private failing<T>(step: () => T): T {
    try {
      return step();
    } catch (err) {
      this.fail(err);
      if (isNoSpace(err)) throw new CowvolError('ENOSPC', 'the disk under the pool is full: metadata could not be committed; free space and reopen the pool');
      throw err;
    }
  }

  private syncData(): void {
    const ticket = this.zero.syncStart();
    this.dataDisk.sync();
    this.zero.syncDone(ticket);
  }

  private async syncDataAsync(): Promise<void> {
    const ticket = this.zero.syncStart();
    if (this.dataDisk.writeBack) await this.dataDisk.writeBack();
    else this.dataDisk.sync();
    this.zero.syncDone(ticket);
  }

  private async syncMetaAsync(): Promise<void> {
    if (this.metaDisk.writeBack) await this.metaDisk.writeBack();
    else this.metaDisk.sync();
  }

  close(): void {
    if (this.closed) return;
    try {
      if (this.failure === null) this.commit();
    } finally {
      this.closed = true;
      this.metaDisk.close();
      this.dataDisk.close();
    }
  }

  // ---- internals -----------------------------------------------------------

  private markChanged(): void {
    this.txnChanged = true;
    this.changes++;
    if (!this.saidCommitNeeded) this.sayCommitNeeded(true);
  }

  /** Tells the listener whether a flush would have to commit (MappingListener.commitNeeded). */
  private sayCommitNeeded(needed: boolean): void {
    this.saidCommitNeeded = needed;
    this.listener?.commitNeeded?.(needed);
  }

  /** The listener has just been attached, or wants the state again. */
  tellCommitNeeded(): void {
    this.sayCommitNeeded(this.failure !== null || this.closed || this.inflight !== null || this.hasChanges());
  }

  /** Metadata changed since the last commit. */
  private hasChanges(): boolean {
    return this.txnChanged || this.catalog.hasChanges();
  }

  /**
   * Where chunk `index` of a volume lives in the data file, and whether a
   * write may go there in place now (the rule); null when it is unmapped.
   * For a frontend with a table of its own (a VolumeWatcher).
   */
  placeOf(ref: VolumeRef, index: number): { offset: number; writable: boolean } | null {
    const v = this.volume(ref);
    const chunk = this.resolve(v, index);
    if (chunk === 0) return null;
    const entry = this.xlate.get(this.xlateKey(v, index));
    const writable = !v.readOnly && entry !== undefined && entry % XLATE_TAGS === this.writableTag(v);
    return { offset: this.chunkOffset(chunk), writable };
  }

  /**
   * Gives a filesystem volume's drops to `watcher` (as well as to the
   * listener) until the returned function is called. One per volume.
   */
  watch(ref: VolumeRef, watcher: VolumeWatcher): () => void {
    const v = this.volume(ref);
    if (v.fs === null) fail('EINVAL', `'${v.name}' is not a filesystem volume`);
    if (this.watchers.has(v.id)) fail('EBUSY', `'${v.name}' is watched already`);
    this.watchers.set(v.id, watcher);
    return () => {
      if (this.watchers.get(v.id) !== watcher) return;
      this.watchers.delete(v.id);
      this.held.delete(v.id);
    };
  }

  private dropVolume(id: number): void {
    this.listener?.dropVolume(id);
    this.watchers.get(id)?.dropVolume();
  }

  /** The listener holds block volumes' chunks only (tellMap), a watcher a filesystem's: each drop goes to the one that may hold it (an unlink drops a chunk per file). */
  private dropChunk(v: Volume, index: number): void {
    if (v.fs === null) this.listener?.dropChunk(v.id, index);
    else this.watchers.get(v.id)?.dropChunk(index);
  }

  /** The listener serves block volumes only: a filesystem's chunks are its files', which a watcher places itself. */
  private tellMap(v: Volume, index: number, offset: number, writable: boolean, breakable?: boolean): void {
    if (v.fs === null) this.listener?.map?.(v.id, index, offset, writable, breakable);
  }

  /**
   * The chunk at `index` (0: unmapped), through the translation cache. A
   * miss asks the tree and the in-place rule once and tells the listener, so
   * the native table can serve the chunk from then on.
   */
  private resolve(v: Volume, index: number): number {
    const key = this.xlateKey(v, index);
    const entry = this.xlate.get(key);
    if (entry !== undefined) return Math.floor(entry / XLATE_TAGS);
    const chunk = this.trees.get(v.tree, index);
    if (chunk === 0) return 0;
    const writable = !v.readOnly && this.ownedInPlace(v, index, chunk);
    this.xlate.set(key, chunk * XLATE_TAGS + (writable ? this.writableTag(v) : 0));
    this.tellMap(v, index, this.chunkOffset(chunk), writable, !v.readOnly);
    return chunk;
  }

  /** Writes `piece` at `within` of chunk `index`; a null piece zeroes the whole chunk (zeroRange). */
  private writeChunk(v: Volume, index: number, within: number, piece: Buffer | null): void {
    const key = this.xlateKey(v, index);
    const tag = this.writableTag(v);
    const entry = this.xlate.get(key);
    if (entry !== undefined && entry % XLATE_TAGS === tag) {
      // Here on the slow path, the native table had lost the entry: give it back.
      const chunk = Math.floor(entry / XLATE_TAGS);
      this.dataWrite(piece ?? this.zeros(), this.chunkOffset(chunk) + within);
      this.tellMap(v, index, this.chunkOffset(chunk), true);
      return;
    }
    // A cached entry still names the mapped chunk; only its writability is stale.
    let current = entry !== undefined ? Math.floor(entry / XLATE_TAGS) : this.trees.get(v.tree, index);
    let inPlace = current !== 0 && this.ownedInPlace(v, index, current);
    if (this.listener?.holes && !inPlace) {
      // The frontend may hold this index as a hole or as a chunk it breaks itself, and this request may
      // have raced a first write or a break it served: take the entry back (waiting for I/O through it),
      // then fold what it took meanwhile, so the map below is the one the frontend left.
      this.dropChunk(v, index);
      this.fold();
      current = this.trees.get(v.tree, index);
      inPlace = current !== 0 && this.ownedInPlace(v, index, current);
    }
    if (inPlace) {
      this.xlate.set(key, current * XLATE_TAGS + tag);
      this.dataWrite(piece ?? this.zeros(), this.chunkOffset(current) + within);
      this.tellMap(v, index, this.chunkOffset(current), true);
      return;
    }
    // A new chunk: first write to this index, or a CoW break.
    const fresh = this.allocChunk();
    if (current !== 0 && piece !== null) this.cowBreaks++;
    const zeroed = this.zero.reads(fresh);
    // Lost data in the fresh chunk must read as what the index held before (zeros), or for a
    // zeroed chunk as what it was given: the copy or the punch must be durable before the map.
    if ((current !== 0 && piece !== null) || !this.zero.has(fresh)) this.dataFirst = true;
    try {
      const at = this.chunkOffset(fresh);
      if (piece === null) {
        if (!zeroed) this.dataDisk.punch(at, this.chunkSize);
      } else if (piece.length === this.chunkSize) {
        this.dataWrite(piece, at);
      } else if (current !== 0) {
        // CoW break: old chunk + new bytes, written as one chunk. (On ext4
        // copy_file_range took 200 us per 64 KiB here; read + write, 30.)
        const whole = this.scratch;
        this.dataDisk.read(whole, this.chunkOffset(current));
        piece.copy(whole, within);
        this.dataWrite(whole, at);
      } else {
        if (!zeroed) this.dataDisk.punch(at, this.chunkSize);
        this.dataWrite(piece, at + within);
      }
    } catch (err) {
      this.data.unreserve(fresh);
      if (isNoSpace(err)) fail('ENOSPC', 'the disk under the pool is full');
      throw err;
    }
    this.data.confirm(fresh);
    this.zero.taken(fresh);
    this.markChanged();
    if (current !== 0) this.dropChunk(v, index);
    const old = this.trees.set(v.tree, PageKind.MAP, index, fresh);
    assert(old === current, `map of ${v.name} changed under a write at chunk ${index}`);
    if (old !== 0) this.releaseChunk(old);
    else v.mapped++;
    this.catalog.touch(v);
    this.journal(v, index, fresh, old);
    this.xlate.set(key, fresh * XLATE_TAGS + tag);
    // Alone in a fresh chunk, behind freshly shadowed pages: writable in place by the rule.
    this.tellMap(v, index, this.chunkOffset(fresh), true);
    // A first write may start a sequential writer; zeroing a range says nothing of what comes next.
    if (current === 0 && piece !== null) this.offerHoles(v, index + 1, HOLE_RUN);
  }

  /**
   * In place is safe only when this volume alone holds the chunk now, and the
   * committed state (where a crash returns) either does not hold the chunk at
   * all or holds it only as this volume's chunk at this same index. Without
   * the second half, a write after deleting a snapshot (uncommitted) could
   * change that snapshot's data if the machine then lost power.
   */
  private ownedInPlace(v: Volume, index: number, chunk: number): boolean {
    if (this.data.count(chunk) !== 1) return false;
    for (const page of this.trees.path(v.tree, index)) if (this.meta.count(page) !== 1) return false;
    const before = this.data.committedCount(chunk);
    if (before === 0) return true;
    if (before !== 1 || v.committedTree === null) return false;
    if (this.trees.get(v.committedTree, index) !== chunk) return false;
    for (const page of this.trees.path(v.committedTree, index)) if (this.meta.committedCount(page) !== 1) return false;
    return true;
  }

  private unmap(v: Volume, index: number): void {
    this.dropChunk(v, index);
    // A break the frontend made before the drop reached it is folded first, so its chunk is the one released.
    if (this.listener?.taken) this.fold();
    this.xlate.delete(this.xlateKey(v, index));
    const old = this.trees.set(v.tree, PageKind.MAP, index, 0);
    if (old === 0) return;
    this.releaseChunk(old);
    v.mapped--;
    this.catalog.touch(v);
    this.markChanged();
    this.journal(v, index, 0, old);
  }

  /** Records a data-path mapping change for a successor; a full journal gets a commit instead, which holds the change. */
  private journal(v: Volume, index: number, chunk: number, old: number): void {
    const listener = this.listener;
    if (!listener?.journal) return;
    const offsetOf = (c: number): number => (c === 0 ? -1 : this.chunkOffset(c));
    if (listener.journal(v.id, index, offsetOf(chunk), offsetOf(old))) return;
    if (this.atomicDepth > 0) this.commitOwed = true;
    else this.commit();
  }

  private allocChunk(): number {
    // Space freed earlier in this transaction becomes usable at commit.
    if (this.data.available() <= 0 && this.data.pendingFree > 0 && this.atomicDepth === 0) this.commit();
    return this.data.reserve();
  }

  private releaseChunk(chunk: number): void {
    if (this.data.dec(chunk) > 0) return;
    // A replay may map a chunk again that its journal freed (the killed daemon reused it): punched after the commit, if still free.
    if (this.data.committedCount(chunk) === 0 && !this.replaying) {
      // Written and freed within one transaction (a file created and deleted between commits): no commit waits for it.
      this.punchRun(chunk, 1);
    } else if (this.pendingPunches.length < MAX_PENDING_PUNCHES) {
      this.pendingPunches.push(chunk);
    }
  }

  private punchFreed(): void {
    // A replay frees a chunk again after mapping it again: each is punched once.
    const chunks = [...new Set(this.pendingPunches)].filter((c) => this.data.count(c) === 0);
    this.pendingPunches = [];
    this.punchRuns(chunks);
  }

  /** Punches free chunks, adjacent ones in one call: deleting a volume frees long runs of them. */
  private punchRuns(free: number[]): void {
    const chunks = [...free].sort((a, b) => a - b);
    let i = 0;
    while (i < chunks.length) {
      const first = chunks[i] as number;
      let n = 1;
      while (i + n < chunks.length && chunks[i + n] === first + n) n++;
      this.punchRun(first, n);
      i += n;
    }
  }

  /**
   * Punches a run of chunks free in both states, off the event loop when
   * the disk can and enough other space stays allocatable: the chunks are
   * held out of allocation until the punch is done (a chunk written first
   * would be punched after), and only then count as zeros. A punch that
   * fails leaves them free and unpunched, as on a filesystem without hole
   * punching; one that fails for another reason fails the pool, as here.
   */
  private punchRun(first: number, n: number): void {
    const disk = this.dataDisk;
    if (disk.punchAsync === undefined || this.punching >= MAX_PUNCHING || this.data.available() < n + PUNCH_ROOM) {
      this.punch(first, n);
      return;
    }
    for (let c = first; c < first + n; c++) this.data.hold(c);
    this.punching++;
    disk.punchAsync(this.chunkOffset(first), n * this.chunkSize).then(
      () => this.punchDone(first, n, null),
      (err: unknown) => this.punchDone(first, n, err),
    );
  }

  private punchDone(first: number, n: number, err: unknown): void {
    this.punching--;
    if (!this.closed) {
      if (err === null) this.zero.punchedNow(first, n);
      for (let c = first; c < first + n; c++) this.data.release(c);
      if (err !== null && (err as { code?: string }).code !== 'EOPNOTSUPP') this.fail(err);
    }
    if (this.punching === 0) for (const wake of this.punchWaiters.splice(0)) wake();
  }

  /** Settles once no punch runs off the event loop (space given back to the filesystem is then visible in its counts). */
  punched(): Promise<void> {
    if (this.punching === 0) return Promise.resolve();
    return new Promise((resolve) => this.punchWaiters.push(resolve));
  }

  /** Space reclaim is best effort: a filesystem without hole punching still works. */
  private punch(chunk: number, count = 1): void {
    try {
      this.dataDisk.punch(this.chunkOffset(chunk), count * this.chunkSize);
      this.zero.punchedNow(chunk, count);
    } catch (err) {
      if ((err as { code?: string }).code !== 'EOPNOTSUPP') throw err;
    }
  }

  /** A chunk of zeros for zeroRange's in-place writes, made on first use and never written to. */
  private zeros(): Buffer {
    this.zeroBuffer ??= Buffer.alloc(this.chunkSize);
    return this.zeroBuffer;
  }

  private dataWrite(piece: Buffer, position: number): void {
    try {
      this.dataDisk.write(piece, position);
    } catch (err) {
      if (isNoSpace(err)) fail('ENOSPC', 'the disk under the pool is full');
      throw err;
    }
  }

  private maybeCommit(): void {
    if (this.atomicDepth === 0 && this.cache.pendingCount() >= this.dirtyPageLimit) this.commit();
  }

  private forPieces(offset: number, length: number, fn: (index: number, within: number, at: number, n: number) => void): void {
    let at = 0;
    while (at < length) {
      const pos = offset + at;
      const index = Math.floor(pos / this.chunkSize);
      const within = pos - index * this.chunkSize;
      const n = Math.min(this.chunkSize - within, length - at);
      fn(index, within, at, n);
      at += n;
    }
  }

  private chunkOffset(chunk: number): number {
    return (chunk - 1) * this.chunkSize;
  }

  /** The chunk at data file `offset`; 0 (none) for -1, as journal records and takes say "nothing". */
  private chunkAt(offset: number): number {
    return offset < 0 ? 0 : offset / this.chunkSize + 1;
  }

  private chunksOf(size: number): number {
    return Math.ceil(size / this.chunkSize);
  }

  private xlateKey(v: Volume, index: number): number {
    return v.xlateId * 0x100000000 + index;
  }

  /** The tag that marks a cached chunk of `v` as writable in place now. */
  private writableTag(v: Volume): number {
    return (v.shareEpoch % (XLATE_TAGS - 1)) + 1;
  }

  /** `v` gained a sharer: every cached "writable" entry of it goes stale. */
  private shareChanged(v: Volume): void {
    v.shareEpoch++;
    // Tags wrap; an entry left from a full cycle ago must not look current.
    if (v.shareEpoch % (XLATE_TAGS - 1) === 0) this.xlate.clear();
  }

  private newXlateId(): number {
    if (this.nextXlateId >= 1 << 20) {
      // Key space exhausted: start over with an empty cache.
      this.xlate.clear();
      this.nextXlateId = 1;
      for (const v of this.catalog?.all() ?? []) v.xlateId = this.nextXlateId++;
    }
    return this.nextXlateId++;
  }

  private checkRange(v: Volume, offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      fail('EINVAL', `invalid range ${offset}+${length}`);
    }
    const end = v.fs === null ? v.size : FS_SPACE_CHUNKS * this.chunkSize;
    if (offset + length > end) fail('EFBIG', `range ${offset}+${length} is past the end of '${v.name}' (${end} bytes)`);
  }

  /**
   * A filesystem volume may map at most `size` bytes of chunks: a write
   * that would map more is refused whole (ENOSPC), before anything changes.
   */
  private checkRoom(v: Volume, offset: number, length: number): void {
    let fresh = 0;
    this.forPieces(offset, length, (index) => {
      if (this.trees.get(v.tree, index) === 0) fresh++;
    });
    this.needRoom(v, fresh);
  }

  /** ENOSPC unless `fresh` more chunks fit the volume's size; room a watcher holds is taken back first if that makes them fit. */
  private needRoom(v: Volume, fresh: number): void {
    if (fresh === 0 || this.fits(v, fresh)) return;
    this.watchers.get(v.id)?.releaseRoom?.();
    if (!this.fits(v, fresh)) fail('ENOSPC', `'${v.name}' is full (${v.size} bytes)`);
  }

  /** Whether `more` chunks fit a filesystem volume's size beside those mapped and those its watcher holds. */
  private fits(v: Volume, more: number): boolean {
    return (v.mapped + (this.held.get(v.id) ?? 0) + more) * this.chunkSize <= v.size;
  }

  /**
   * A filesystem volume's room for `chunks` more chunks: ENOSPC (changing
   * nothing) when they would not fit its size, after the room its watcher
   * holds for first writes is given back.
   */
  roomFor(ref: VolumeRef, chunks: number): void {
    this.needRoom(this.volume(ref), chunks);
  }

  /**
   * Sets aside room for `chunks` first writes a watcher may serve without
   * us (holes it offers): room checks count it as mapped until it is given
   * back (negative `chunks`). False, holding nothing, when it does not fit.
   */
  holdRoom(ref: VolumeRef, chunks: number): boolean {
    const v = this.volume(ref);
    const now = this.held.get(v.id) ?? 0;
    assert(now + chunks >= 0, `${v.name} gives back room it does not hold`);
    if (chunks > 0 && !this.fits(v, chunks)) return false;
    if (now + chunks === 0) this.held.delete(v.id);
    else this.held.set(v.id, now + chunks);
    return true;
  }

  private validateSize(size: number): void {
    if (!Number.isSafeInteger(size) || size <= 0 || size % VOLUME_ALIGN !== 0) {
      fail('EINVAL', `size ${size} is invalid: use a positive multiple of 4KiB`);
    }
    const chunks = this.chunksOf(size);
    if (chunks > MAX_CHUNKS || chunks > capacity(MAX_LEVELS)) {
      fail('EINVAL', `size ${size} is too large for chunk size ${this.chunkSize}`);
    }
  }

  private refuseIfHeld(v: Volume): void {
    const holder = this.listener?.holder?.(v.id) ?? null;
    if (holder !== null) fail('EBUSY', `'${v.name}' is in use (${holder}); release it first`);
  }

  private validateName(name: string): void {
    if (name === '' || Buffer.byteLength(name) > MAX_NAME_BYTES) fail('EINVAL', `invalid name '${name}'`);
  }

  private nameFree(name: string): void {
    if (this.catalog.get(name)) fail('EEXIST', `'${name}' already exists`);
  }

  /** usable(), and no commit in flight: for everything that may change metadata. */
  private mutable(): void {
    this.usable();
    this.settle();
    this.fold();
  }

  /** usable(), with the maps as the frontend has written them: for everything that reads a map. */
  private current(): void {
    this.usable();
    this.fold();
  }

  /**
   * Applies the journal a killed daemon left (oldest first) on top of the
   * commit this pool opened: the mappings it changed and answered for,
   * whose data is in the host's page cache, and its filesystems' tree
   * changes. A mapping the opened commit already holds is skipped; one that
   * does not follow from the map is refused before anything changes
   * (ECORRUPT). Commits unless told not to (the caller has more to place:
   * `replayTake`). Returns how many records changed something.
   */
  replay(changes: readonly Replayed[], commit = true): number {
    this.mutable();
    const todo = this.replayPlan(changes);
    // Only a change brings the commit that ends this; an empty replay must not hold punches back until some later one.
    if (todo.length > 0) this.replaying = true;
    for (const c of todo) {
      if ('key' in c) this.replayItem(c);
      else this.applyMap(this.volume(c.id), c.index, this.chunkAt(c.offset));
    }
    if (todo.length > 0) {
      // Their data is in the page cache, not known to be on the disk.
      this.dataFirst = true;
      this.markChanged();
      if (commit) this.commit();
    }
    return todo.length;
  }

  /** The records that change something, each mapping checked against the map as the ones before it leave it. */
  private replayPlan(changes: readonly Replayed[]): Replayed[] {
    const now = new Map<string, number>();
    const todo: Replayed[] = [];
    for (const c of changes) {
      const v = this.lookup(c.id);
      if (v === undefined || v.readOnly) continue;
      if ('key' in c) {
        if (v.fs !== null) todo.push(c);
        continue;
      }
      if (c.index >= (v.fs === null ? this.chunksOf(v.size) : FS_SPACE_CHUNKS)) continue;
      const key = `${c.id}:${c.index}`;
      const cur = now.get(key) ?? this.trees.get(v.tree, c.index);
      if (cur === this.chunkAt(c.offset)) continue;
      if (cur !== this.chunkAt(c.old)) fail('ECORRUPT', `journal: chunk ${c.index} of ${v.name} maps ${cur}, a record expected ${this.chunkAt(c.old)}`);
      now.set(key, this.chunkAt(c.offset));
      todo.push(c);
    }
    return todo;
  }

  private replayItem(c: ItemChange): void {
    const v = this.volume(c.id);
    if (c.value === null) this.btrees.del(this.fsOf(v), c.key);
    else this.btrees.put(this.fsOf(v), c.key, c.value);
    this.catalog.touch(v);
  }

  /**
   * A first write a killed daemon's addon made into a filesystem's file
   * and no fold placed: its reserved chunk at `offset`, mapped at `index`
   * (where the file's region puts it now). Part of a replay; the caller
   * commits. False if the index is mapped already. With `oldOffset`, a CoW
   * break: false unless the index still maps that chunk, which it replaces.
   */
  replayTake(ref: VolumeRef, index: number, offset: number, oldOffset = -1): boolean {
    this.mutable();
    const v = this.volume(ref);
    assert(v.fs !== null && !v.readOnly && index < FS_SPACE_CHUNKS, `replayTake into ${v.name}`);
    if (this.trees.get(v.tree, index) !== this.chunkAt(oldOffset)) return false;
    this.replaying = true;
    this.applyMap(v, index, this.chunkAt(offset));
    this.dataFirst = true;
    this.markChanged();
    return true;
  }

  /** Maps `chunk` (0: none) at `index`, as the journal says a killed daemon did. */
  private applyMap(v: Volume, index: number, chunk: number): void {
    if (chunk !== 0) {
      this.data.hold(chunk);
      this.data.confirm(chunk);
      this.zero.taken(chunk);
      v.mapped++;
    }
    const old = this.trees.set(v.tree, PageKind.MAP, index, chunk);
    if (old !== 0) {
      this.releaseChunk(old);
      v.mapped--;
    }
    this.xlate.delete(this.xlateKey(v, index));
    this.catalog.touch(v);
  }

  // ---- first writes served by the frontend ----------------------------------

  /**
   * Folds the first writes the listener served from reserved chunks into
   * the volumes' maps: a metadata change, committed with the next commit.
   */
  fold(): void {
    const taken = this.listener?.taken?.();
    if (taken === undefined || taken.length === 0) return;
    this.settle();
    for (const [id, index, offset, old] of taken) {
      this.foldOne(id, index, offset, old ?? -1);
      this.tails.set(id, Math.max(index, this.tails.get(id) ?? 0));
    }
  }

  /**
   * The listener's reserve runs low (it asks before it is out): fold what it
   * took, top the reserve up, and offer holes past each volume's newest first
   * write since the last offer, so a sequential writer goes on without a trip
   * here. The tails outlive the fold that found them: any request may fold
   * first. Waits for a commit in flight rather than finish it on the event loop.
   */
  replenish(): void {
    if (this.closed || this.failure !== null) return;
    if (this.inflight !== null) {
      void this.idle().then(() => this.replenish());
      return;
    }
    this.fold();
    this.topUp();
    const tails = [...this.tails];
    this.tails.clear();
    for (const [id, index] of tails) {
      const v = this.lookup(id);
      if (v !== undefined) this.offerHoles(v, index + 1, HOLE_RUN);
    }
  }

  /**
   * A reserve of zero chunks for a watcher that serves first writes itself
   * (reserve.ts), of at most `limit`: empty until `topUpReserve`.
   */
  openReserve(limit: number): Reserve {
    return new Reserve(this.data, this.zero, (chunk) => this.chunkOffset(chunk), limit);
  }

  /** Hands a watcher's reserve to `give` up to its limit, as the listener's (topUp). */
  topUpReserve(reserve: Reserve, give: (offsets: number[]) => number): void {
    if (this.closed || this.failure !== null) return;
    this.refill(reserve, give);
  }

  /**
   * Tops a reserve up; chunks freed and punched since the last data sync
   * cannot go in yet (zero-chunks.ts). Without a sync for them, every
   * top-up until the next commit met the same ones again and handed none,
   * and first writes went the slow way: after a round of deletes, a
   * cowfs create cost a third more.
   */
  private refill(reserve: Reserve, give: (offsets: number[]) => number): void {
    const { punch, waiting } = reserve.topUp(give);
    this.punchRuns(punch);
    if (waiting > 0) this.syncPunches();
  }

  /** One data sync at a time, off the event loop, that makes the punches done before it durable (a commit's sync does too). */
  private syncPunches(): void {
    if (this.punchSync || this.closed || this.failure !== null) return;
    this.punchSync = true;
    this.syncDataAsync().then(
      () => (this.punchSync = false),
      (err: unknown) => {
        this.punchSync = false;
        this.fail(err);
      },
    );
  }

  /**
   * A first write a watcher served from its reserve, at data file `offset`:
   * mapped at `index` of the volume (a metadata change, committed with the
   * next commit), or given back and punched when `index` is null (the file
   * it was for is gone). With `oldOffset`, a CoW break: the copy replaces
   * the chunk there.
   */
  foldTake(reserve: Reserve, ref: VolumeRef, index: number | null, offset: number, oldOffset = -1): void {
    this.mutable();
    const v = this.volume(ref);
    if (index === null) {
      const chunk = reserve.take(offset);
      this.data.unreserve(chunk);
      this.punch(chunk);
      return;
    }
    this.foldOne(v.id, index, offset, oldOffset, reserve);
    // The addon's record names the file's chunk; the index it landed at is ours to record.
    this.journal(v, index, this.chunkAt(offset), this.chunkAt(oldOffset));
  }

  /** One first write (`oldOffset` -1) or CoW break the frontend served, into the volume's map. */
  private foldOne(id: number, index: number, offset: number, oldOffset: number, reserve = this.reserve): void {
    const chunk = reserve.take(offset);
    const v = this.lookup(id);
    if (v === undefined) {
      // Deleted between its last fold and its drop (or spoiled by a failed copy): free again, and no longer zero.
      this.data.unreserve(chunk);
      this.punch(chunk);
      return;
    }
    const end = v.fs === null ? this.chunksOf(v.size) : FS_SPACE_CHUNKS;
    assert(!v.readOnly && index < end, `the frontend wrote chunk ${index} outside ${v.name}`);
    this.data.confirm(chunk);
    const expected = this.chunkAt(oldOffset);
    const old = this.trees.set(v.tree, PageKind.MAP, index, chunk);
    assert(old === expected, `chunk ${index} of ${v.name} was ${old}, not ${expected}, under the frontend's take`);
    if (old === 0) {
      v.mapped++;
    } else {
      // A CoW break: as writeChunk's own, the copy must be durable before a superblock maps it.
      this.releaseChunk(old);
      this.xlate.delete(this.xlateKey(v, index));
      this.dataFirst = true;
      this.cowBreaks++;
    }
    this.catalog.touch(v);
    this.markChanged();
  }

  /** Tops the listener's reserve up (reserve.ts); near full, every chunk goes through allocChunk, which can commit to free space. */
  private topUp(): void {
    const listener = this.listener;
    if (!listener?.reserve) return;
    this.refill(this.reserve, (offsets) => listener.reserve?.(offsets) ?? 0);
  }

  /**
   * Tells the listener which of the `run` indices from `from` are unmapped,
   * past what it was offered last if `from` falls in that.
   */
  private offerHoles(v: Volume, from: number, run: number): void {
    const listener = this.listener;
    if (!listener?.holes || v.readOnly || v.fs !== null) return;
    this.topUp();
    if (this.reserve.size === 0) return;
    if (this.offeredTo !== listener) {
      this.offered.clear();
      this.offeredTo = listener;
    }
    const last = this.offered.get(v.id);
    const start = last !== undefined && from >= last[0] && from < last[1] ? last[1] : from;
    const end = Math.min(this.chunksOf(v.size), from + run);
    if (start >= end) return;
    this.offered.set(v.id, [start === from ? from : (last as [number, number])[0], end]);
    const holes: number[] = [];
    for (let i = start; i < end; ) {
      const mapped = this.trees.next(v.tree, i, end);
      const stop = mapped < 0 ? end : mapped;
      while (i < stop) holes.push(i++);
      i = stop + 1;
    }
    if (holes.length > 0) listener.holes(v.id, holes);
  }

  /** The listener is going away: its reserved chunks are free again (call fold first). */
  dropReserve(): void {
    this.reserve.drop();
  }

  private usable(): void {
    if (this.closed) fail('EIO', 'the pool is closed');
    if (this.failure !== null) fail('EIO', `the pool failed earlier (${(this.failure as Error).message}); reopen it`);
    if (this.cache.writeError !== null) {
      const err = this.cache.writeError;
      this.fail(err);
      fail('EIO', `a metadata write failed (${(err as Error).message}); reopen the pool`);
    }
  }

  private info(v: Volume): VolumeInfo {
    return {
      id: v.id,
      name: v.name,
      size: v.size,
      chunkSize: this.chunkSize,
      readOnly: v.readOnly,
      origin: v.origin,
      parentId: v.parentId,
      createdAt: v.createdAt,
      allocatedBytes: v.mapped * this.chunkSize,
      labels: { ...v.labels },
      kind: v.kind,
    };
  }
}

/** A count space as check sees it. */
export interface SpaceView {
  readonly base: number;
  readonly highWater: number;
  readonly used: number;
  readonly tree: Tree;
  count(n: number): number;
}

/** The pool as check sees it: read-only, and only what a recount needs. */
export interface PoolView {
  chunkSize: number;
  meta: SpaceView;
  data: SpaceView;
  directory: Tree;
  volumes(): readonly Readonly<Volume>[];
  volumeById(id: number): Readonly<Volume> | undefined;
  /** The record changed in the open transaction (its page is not written yet). */
  recordChanged(v: Readonly<Volume>): boolean;
  /** A metadata page, checksummed on the way in (throws ECORRUPT). */
  page(page: number): Buffer;
  /** A filesystem tree's pages, parents first; fn says whether to go below a page. */
  fsWalk(tree: Tree, fn: (page: number, level: number, children: number[], entries: number) => boolean): void;
  /** See Pool.discardedCommit. */
  discardedCommit: string | null;
}
