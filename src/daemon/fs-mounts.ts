/**
 * The cowfs mounts a daemon serves (`cowvol mount SOURCE DIR`), and their
 * record, POOL/cowvol.mounts, so the next daemon serves them again (after
 * a restart, a stop, or a reboot: like fstab, the record stays until
 * `cowvol unmount`).
 *
 * A restart hands the mounts over as it does the block files: a stopping
 * daemon detaches them (`detachAll`), a serving one keeps its holder up to
 * date with them (`liveMounts`, for a kill -9), and the next one takes
 * their live connections over (`restore` with what was handed), so
 * processes holding files open in them, and binds of them, carry on. A
 * mount that was not handed over (`cowvol stop`, more than
 * HANDED_MOUNTS_MAX, open counts that overflowed) is mounted afresh at the
 * same place and its binds made again: processes with files open in it
 * see errors across that restart.
 *
 * Writes acknowledged to processes may sit in the kernel's page cache (the
 * mounts run with the writeback cache): `flush` pushes them into the pool
 * before a snapshot or clone of the volume (Volumes calls it as its
 * HeldWrites), and unmounts flush first.
 *
 * The daemon must never look into a path it serves itself (its only
 * JavaScript thread would wait for itself), so a mount point under one of
 * its own mounts is refused before anything touches it, and flushes run
 * off the event loop (native syncFilesystem).
 */
import fs from 'node:fs';
import path from 'node:path';

import type { Pool } from '../blockstore/pool.js';
import { dataFilePath } from '../blockstore/pool-dir.js';
import { CowvolError, fail } from '../errors.js';
import { CowfsMount, type Detached, type MountService, type MountView, mountsOfVolume } from '../fuse/cowfs-mount.js';
import { bindMount } from '../host/filesystem.js';
import { abortFuseConnection, connectionOfEntry } from '../host/fusectl.js';
import { detach, isMountPoint } from '../host/mounts.js';
import type { Logger } from '../log.js';
import { native } from '../native.js';
import type { HeldWrites } from '../volumes/volumes.js';
import { HANDED_MOUNTS_MAX, type HandedMount, type LiveMount } from './handed-mounts.js';
import type { OpenCounts, OpenRegion } from './open-counts.js';

const RECORD = 'cowvol.mounts';
/**
 * FUSE threads all cowfs mounts share (native/src/fs_workers.c): they serve
 * file data in place and wait for the event loop for the rest, so a few
 * serve many mounts; set once per daemon.
 */
export const DEFAULT_FS_THREADS = 4;

export interface FsMountsOptions {
  /** FUSE threads every mount shares (DEFAULT_FS_THREADS). */
  threads?: number;
  /** Chunk table entries per mount (CowfsMountOptions.tableSlots). */
  tableSlots?: number;
  /** The daemon's kill -9 journal, and the open counts beside it: with both, a kill hands the mounts on too. */
  journalFd?: number;
  openCounts?: OpenCounts;
  /** The set of mounts changed (or their connections became known): the holder needs `liveMounts` again. */
  onChange?: () => void;
  /** Tests only: CowfsMountOptions.dieBeforeAnswer. */
  dieBeforeAnswer?: string;
}

/** A cowfs mount's counters: what the addon served itself, and what went to JavaScript (CowfsMount.stats). */
export type MountCounters = { source: string; dir: string } & ReturnType<CowfsMount['stats']>;

interface Live {
  view: MountView;
  volumeId: number;
  mount: CowfsMount;
  /** Its region of the open counts; null without them (or with every region in use): a kill then ends its connection. */
  region: OpenRegion | null;
}

/** How long an unmounted cowfs mount may wait for the files still open in it before its connection is cut. */
const DRAIN_MS = 3000;

function recordFile(poolDir: string): string {
  return path.join(poolDir, RECORD);
}

/** The cowfs mounts POOL/cowvol.mounts lists (none if it is missing; `onDamage` hears of a damaged one). */
export function recordedMounts(poolDir: string, onDamage: (err: unknown) => void = () => {}): MountView[] {
  let text: string;
  try {
    text = fs.readFileSync(recordFile(poolDir), 'utf8');
  } catch {
    return [];
  }
  try {
    const list = JSON.parse(text) as unknown;
    if (!Array.isArray(list)) throw new Error('not a list');
    return list.filter((m): m is MountView => typeof m === 'object' && m !== null && typeof (m as MountView).source === 'string' && typeof (m as MountView).dir === 'string').map((m) => ({ source: m.source, dir: m.dir, readOnly: m.readOnly === true }));
  } catch (err) {
    onDamage(err);
    return [];
  }
}

/**
 * After a keeper let go of what a stopped daemon handed it (`cowvol stop`
 * with no daemon serving), the cowfs connections it held are dead: their
 * mount points go too, lazily, so a stop leaves nothing mounted. The record
 * stays, for the next daemon.
 */
export function detachDeadMounts(poolDir: string): void {
  for (const m of recordedMounts(poolDir)) if (isMountPoint(m.dir)) detach(m.dir);
}

export class FsMounts implements MountService, HeldWrites {
  /** By mount point. Lock: event loop only. */
  private readonly live = new Map<string, Live>();
  /** The pool's data file, for the mounts' native data path; opened with the first mount, closed with the last. */
  private dataFd = -1;

  constructor(
    private readonly pool: Pool,
    private readonly poolDir: string,
    /** Where the block files are mounted: no cowfs mount goes under it. */
    private readonly blockMount: string,
    private readonly log: Logger,
    private readonly opts: FsMountsOptions = {},
  ) {}

  async mount(source: string, dir: string, readOnly: boolean): Promise<MountView> {
    const v = this.pool.stat(source);
    if (v.kind !== 'fs') fail('EINVAL', `'${source}' is a ${v.kind} volume: it is served as a block file under ${this.blockMount}; mount a filesystem volume (volume create --kind fs)`);
    const at = path.resolve(dir);
    if (this.live.has(at)) fail('EBUSY', `${at} is already a cowfs mount of '${this.live.get(at)?.view.source}'`);
    this.refuseOwnPath(at);
    // Asynchronous: the directory may be a bind of one of our own mounts, which only this thread answers.
    const st = await fs.promises.stat(at).catch(() => null);
    if (st === null) fail('ENOENT', `${at} does not exist: make the directory first`);
    if (!st.isDirectory()) fail('ENOTDIR', `${at} is not a directory`);
    // Again: another mount may have been made while the stat was away.
    if (this.live.has(at)) fail('EBUSY', `${at} is already a cowfs mount of '${this.live.get(at)?.view.source}'`);
    // One mount per volume: its open files (which keep unlinked files alive) are counted per mount. Share it with a bind.
    const other = [...this.live.values()].find((l) => l.volumeId === v.id);
    if (other !== undefined) fail('EBUSY', `'${v.name}' is already mounted at ${other.view.dir}: bind-mount that directory to share it`);
    const view: MountView = { source: v.name, dir: at, readOnly: readOnly || v.readOnly };
    this.start(view, v.id);
    this.save();
    this.opts.onChange?.();
    return view;
  }

  async unmount(dir: string): Promise<void> {
    const at = path.resolve(dir);
    const live = this.live.get(at);
    if (live === undefined) fail('ENOENT', `${at} is not a cowfs mount this daemon serves`);
    // As umount answers for a busy ext4: the processes keep their files, the caller learns why.
    const open = live.mount.fs.openFiles().length;
    if (open > 0) fail('EBUSY', `${at} has ${open} file${open === 1 ? '' : 's'} open: close ${open === 1 ? 'it' : 'them'} first`);
    // Before the mount goes: with no file open, nothing can dirty it again.
    await this.flushMount(live);
    this.live.delete(at);
    this.save();
    await this.close(live);
    this.closeDataFile();
    this.opts.onChange?.();
  }

  /** The oldest journal seq a mount's addon holds unfolded; Infinity for none. */
  journalCover(): number {
    let cover = Infinity;
    for (const l of this.live.values()) cover = Math.min(cover, l.mount.journalCover());
    return cover;
  }

  /**
   * What a holder needs to hand every mount with open counts on after a
   * kill: a duplicate of each connection (the caller closes them) with the
   * kernel's INIT, which comes a moment after the mount.
   */
  async liveMounts(): Promise<LiveMount[]> {
    const out: LiveMount[] = [];
    for (const l of [...this.live.values()].slice(0, HANDED_MOUNTS_MAX)) {
      if (l.region === null) continue;
      const handover = await l.mount.connectionWithInit().catch(() => null);
      if (handover !== null) out.push({ view: l.view, handover, region: l.region.index });
    }
    return out;
  }

  /** What the page cache holds for these volumes' writable mounts reaches the pool. */
  async flush(volumes: string[]): Promise<void> {
    const names = new Set(volumes);
    const live = [...this.live.values()].filter((l) => names.has(l.view.source) && !l.view.readOnly);
    await Promise.all(live.map((l) => this.flushMount(l)));
  }

  /**
   * A write the pool refused while flushing (ENOSPC on a full volume) is
   * the writer's error, which its fsync or close reports as on ext4: here it
   * is logged, and the snapshot or unmount goes on with what the pool holds.
   */
  private async flushMount(l: Live): Promise<void> {
    if (l.view.readOnly) return;
    try {
      await native.syncFilesystem(l.view.dir);
    } catch (err) {
      this.log.warn({ err, dir: l.view.dir }, 'the kernel could not write some cached pages of a cowfs mount back');
    }
  }

  list(): MountView[] {
    return [...this.live.values()].map((l) => ({ ...l.view })).sort((a, b) => (a.dir < b.dir ? -1 : 1));
  }

  /** Each mount's counters since it was mounted or taken over (src/daemon/metrics.ts reports them). */
  counters(): MountCounters[] {
    return [...this.live.values()].map((l) => ({ source: l.view.source, dir: l.view.dir, ...l.mount.stats() }));
  }

  /** Why the volume must not be deleted now (it is mounted), or null. */
  holder(volumeId: number): string | null {
    for (const l of this.live.values()) if (l.volumeId === volumeId) return `mounted at ${l.view.dir}`;
    return null;
  }

  /**
   * Serves what the record lists. A mount the previous daemon handed over
   * is taken over as it is, binds and open files included. Any other was
   * cut with its daemon: it is mounted afresh, and its binds (CSI
   * publishes), which died with the old connection, are made again with
   * their read-only flags. What cannot be mounted any more is logged and
   * dropped from the record.
   */
  async restore(handed: readonly HandedMount[] = [], lastDone: ReadonlyMap<number, number> = new Map()): Promise<void> {
    const byDir = new Map(handed.map((h) => [h.view.dir, h]));
    // After a kill: the last request of each volume the journal says was done, for the resends the kernel makes.
    for (const h of handed) if (h.resent !== undefined && this.pool.has(h.view.source)) h.resent.done = lastDone.get(this.pool.stat(h.view.source).id) ?? 0;
    for (const view of this.load()) {
      const taken = byDir.get(view.dir);
      byDir.delete(view.dir);
      if (taken !== undefined && this.takeOver(view, taken)) continue;
      try {
        // What an earlier daemon left is dead (ENOTCONN) and must go before anything looks at it.
        const binds = mountsOfVolume(this.pool, view.source).filter((m) => m.mountPoint !== view.dir);
        for (const b of [...binds].reverse()) detach(b.mountPoint);
        if (isMountPoint(view.dir)) detach(view.dir);
        if (!this.pool.has(view.source)) fail('ENOENT', `'${view.source}' no longer exists`);
        this.start(view, this.pool.stat(view.source).id);
        for (const b of binds) await bindMount(view.dir, b.mountPoint, b.readOnly);
        if (binds.length > 0) this.log.warn({ source: view.source, binds: binds.map((b) => b.mountPoint) }, 'binds of a cowfs mount made again');
      } catch (err) {
        this.log.error({ err, source: view.source, dir: view.dir }, 'could not serve a recorded cowfs mount again');
      }
    }
    // Handed over but no longer recorded: nobody will serve it, so the kernel may as well learn it now.
    for (const left of byDir.values()) {
      fs.closeSync(left.handover.fd);
      this.log.warn({ source: left.view.source, dir: left.view.dir }, 'a handed-over cowfs mount is not in the record: let go');
    }
    this.save();
    this.opts.onChange?.();
  }

  /**
   * Stops serving every mount without unmounting it, up to
   * HANDED_MOUNTS_MAX (the rest are unmounted), and returns what the next
   * daemon needs to take each over; the record stays. The caller owns the
   * returned fds.
   */
  async detachAll(): Promise<HandedMount[]> {
    const all = [...this.live.values()];
    this.live.clear();
    const handed = all.slice(0, HANDED_MOUNTS_MAX);
    const rest = all.slice(HANDED_MOUNTS_MAX);
    if (rest.length > 0) this.log.warn({ mounts: rest.map((l) => l.view.dir) }, `more than ${HANDED_MOUNTS_MAX} cowfs mounts: these are unmounted, not handed over`);
    const [detached] = await Promise.all([Promise.allSettled(handed.map((l) => l.mount.detach())), Promise.all(rest.map((l) => this.close(l)))]);
    for (const l of handed) l.region?.close();
    this.closeDataFile();
    const out: HandedMount[] = [];
    detached.forEach((d, i) => {
      const view = (handed[i] as Live).view;
      // Not handed over, its connection ends with this daemon: the next one mounts it afresh.
      if (d.status === 'rejected') this.log.error({ err: d.reason, dir: view.dir }, 'could not detach a cowfs mount');
      else out.push({ view, ...d.value });
    });
    return out;
  }

  /** Unmounts every cowfs mount; the record stays for the next daemon. */
  async closeAll(): Promise<void> {
    const all = [...this.live.values()];
    await Promise.all(all.map((l) => this.flushMount(l)));
    this.live.clear();
    await Promise.all(all.map((l) => this.close(l)));
    this.closeDataFile();
  }

  private dataFile(): number {
    if (this.dataFd < 0) this.dataFd = fs.openSync(dataFilePath(this.poolDir), 'r+');
    return this.dataFd;
  }

  private closeDataFile(): void {
    if (this.dataFd >= 0 && this.live.size === 0) {
      fs.closeSync(this.dataFd);
      this.dataFd = -1;
    }
  }

  /**
   * Unmounts; binds of the mount (CSI publishes) would keep its connection
   * open for as long as they live, so then the connection is aborted too:
   * the binds fail (ENOTCONN) until a daemon serves the mount again and
   * restore() binds them afresh. (unmount refuses to get here with binds:
   * CSI unpublishes first.)
   */
  private async close(l: Live): Promise<void> {
    l.region?.close();
    const all = mountsOfVolume(this.pool, l.view.source);
    const own = all.find((m) => m.mountPoint === l.view.dir);
    const binds = all.filter((m) => m !== own);
    const connection = own === undefined ? -1 : connectionOfEntry(own);
    const closed = l.mount.close();
    if (binds.length > 0 && connection >= 0 && abortFuseConnection(connection)) this.log.warn({ dir: l.view.dir, binds: binds.map((b) => b.mountPoint) }, 'cut a cowfs connection its binds held');
    // A file a process keeps open holds the connection past the unmount too: once the requests under way had their time, cut it.
    const cut = setTimeout(() => {
      if (connection >= 0 && abortFuseConnection(connection)) this.log.warn({ dir: l.view.dir }, 'cut a cowfs connection that open files held');
    }, DRAIN_MS);
    try {
      await closed;
    } finally {
      clearTimeout(cut);
    }
  }

  /**
   * Serves a connection the previous daemon handed over for this recorded
   * mount. False when it cannot (the volume went, or the record moved on):
   * the connection is let go, which the kernel takes for a dead server, and
   * the mount is made afresh like one that was not handed over.
   */
  private takeOver(view: MountView, taken: HandedMount): boolean {
    try {
      if (taken.view.source !== view.source || !this.pool.has(view.source)) fail('ENOENT', `'${view.source}' is not what was handed over`);
      this.start(view, this.pool.stat(view.source).id, taken);
      return true;
    } catch (err) {
      fs.closeSync(taken.handover.fd);
      this.log.error({ err, source: view.source, dir: view.dir }, 'could not take a cowfs mount over: mounting it afresh');
      return false;
    }
  }

  private start(view: MountView, volumeId: number, takeover?: Detached): void {
    const region = this.opts.journalFd === undefined ? null : (this.opts.openCounts?.region() ?? null);
    try {
      const mount = new CowfsMount(this.pool, view.source, view.dir, {
        readOnly: view.readOnly,
        threads: this.opts.threads ?? DEFAULT_FS_THREADS,
        dataFd: this.dataFile(),
        tableSlots: this.opts.tableSlots,
        onError: (err, op) => this.log.error({ err, op, dir: view.dir }, 'cowfs request failed'),
        takeover,
        journalFd: this.opts.journalFd,
        openCounts: region ?? undefined,
        dieBeforeAnswer: this.opts.dieBeforeAnswer,
      });
      this.live.set(view.dir, { view, volumeId, mount, region });
      if (mount.dirtyLimitsKept !== null) this.log.warn({ dir: view.dir, why: mount.dirtyLimitsKept }, "a cowfs mount keeps the kernel's FUSE limit on dirty pages: buffered writes wait for writeback sooner");
      this.log.info({ source: view.source, dir: view.dir, readOnly: view.readOnly, takenOver: takeover !== undefined }, takeover ? 'cowfs mount taken over' : 'cowfs mounted');
    } catch (err) {
      region?.close();
      if (err instanceof CowvolError) throw err;
      fail('EIO', `mounting ${view.source} at ${view.dir} failed: ${(err as Error).message}`);
    }
  }

  private refuseOwnPath(at: string): void {
    const under = (root: string): boolean => at === root || at.startsWith(`${root}/`);
    const own = [this.blockMount, ...this.live.keys()].find(under);
    if (own !== undefined) fail('EINVAL', `${at} lies in ${own}, which this daemon serves: pick a directory outside it`);
  }

  private file(): string {
    return recordFile(this.poolDir);
  }

  private load(): MountView[] {
    return recordedMounts(this.poolDir, (err) => this.log.error({ err, file: this.file() }, 'the mount record is damaged: serving no cowfs mounts from it'));
  }

  /** Written whole and renamed into place, so a crash leaves the old record or the new. */
  private save(): void {
    const tmp = `${this.file()}.tmp`;
    fs.writeFileSync(tmp, `${JSON.stringify(this.list(), null, 1)}\n`, { mode: 0o600 });
    fs.renameSync(tmp, this.file());
  }
}
