/**
 * `cowvol serve`: the node daemon. Holds the pool, mounts the block-file
 * frontend at MOUNT (default /run/cowvol), answers the admin socket and
 * (optionally) CSI, and commits in the background.
 *
 * Restarts are invisible to I/O: the first daemon starts a keeper
 * (keeper.ts) that holds the FUSE connection. On SIGTERM or SIGINT the
 * daemon stops taking requests, lets the ones it serves finish, commits and
 * hands the live connection to the keeper; requests arriving meanwhile wait
 * in the kernel, and the next `cowvol serve` takes the connection over
 * instead of mounting. The cowfs mounts (fs-mounts.ts) are detached and
 * handed over the same way, beside it (handed-mounts.ts). Stopping for good
 * is `cowvol stop` (drain, commit, unmount, keeper gone), or a keeper whose
 * grace passed with no successor.
 * With --handover-grace 0 there is no keeper and SIGTERM stops for good. A
 * mount left by a killed daemon is detached before mounting.
 */
import fs from 'node:fs';
import type net from 'node:net';
import path from 'node:path';

import { fail } from '../errors.js';
import { PoolDir, dataFilePath, hostFreeBytes } from '../blockstore/pool-dir.js';
import type { Pool } from '../blockstore/pool.js';
import { BlockFiles, blockFilePath } from '../fuse/block-files.js';
import { journalRecords } from '../fuse/journal-records.js';
import { replayJournal } from './journal-replay.js';
import { adminSocketPath, closeAdminServer, startAdminServer } from '../admin/server.js';
import { type CsiServer, startCsiServer } from '../csi/server.js';
import type { DriverContext } from '../csi/driver.js';
import { PathPolicy } from '../csi/paths.js';
import { repairAfterRestart } from '../csi/repair.js';
import { listLoops } from '../host/loop.js';
import { abortFuseConnection, fuseConnectionOf } from '../host/fusectl.js';
import { detach, isMountPoint } from '../host/mounts.js';
import { type Logger, createLogger } from '../log.js';
import { Volumes } from '../volumes/volumes.js';
import { DEFAULT_GRACE_SECONDS, type Inheritance, type KeeperLink, handOver, hold, holdAgain, inherit, release, startKeeper } from './keeper.js';
import { native } from '../native.js';
import { forget, fromListenFds, store, storeMounts } from './fd-store.js';
import { FsMounts } from './fs-mounts.js';
import { type HandedMount, handedFds, liveFds, mountsFromFds } from './handed-mounts.js';
import { OpenCounts } from './open-counts.js';
import { Notifier } from './notify.js';
import { readRunFile, writeRunFile } from './run-file.js';
import { COUNTED_VOLUMES, Metrics } from './metrics.js';
import { DEFAULT_METRICS_ADDRESS, type MetricsAddress, type MetricsEndpoint, parseMetricsAddress, startMetricsEndpoint } from './metrics-endpoint.js';

export const DEFAULT_MOUNT = '/run/cowvol';
/** Bounds what a crash can lose of metadata changes nobody flushed (--commit-interval). */
export const DEFAULT_COMMIT_SECONDS = 5;
/** Records in the map-change journal (32 bytes each): a commit comes at half full. */
const JOURNAL_RECORDS = 1 << 18;
/** How long stop waits for the block files to drain before cutting the FUSE connection. */
const DRAIN_MS = 3000;
/** How long /healthz waits for a listing of the mount before it calls the daemon unwell. */
const HEALTH_WAIT_MS = 5000;

export interface ServeOptions {
  poolDir: string;
  mount: string;
  logLevel: string;
  cacheBytes?: number;
  csi?: CsiOptions;
  /** Seconds a keeper holds the mount for the next daemon after a SIGTERM; 0: no keeper, SIGTERM unmounts. */
  handoverGrace?: number;
  /** systemd's fd store holds the connection between daemons instead of a keeper (fd-store.ts). */
  fdStore?: boolean;
  /** Where /metrics and /healthz answer; null: nowhere, and nothing is counted per volume. Default 127.0.0.1:9464. */
  metricsAddress?: MetricsAddress | null;
  /** FUSE threads every cowfs mount shares (default DEFAULT_FS_THREADS). */
  fsThreads?: number;
  /** Seconds between background commits of what nobody flushed (default DEFAULT_COMMIT_SECONDS). */
  commitSeconds?: number;
}

export interface CsiOptions {
  endpoint: string;
  nodeId: string;
  kubeletDir: string;
  driverName: string;
  maxVolumesPerNode: number;
}

export interface Daemon {
  log: Logger;
  /** Hands the mount to the keeper if there is one, unless `forGood`: then drains, unmounts and lets the keeper go. */
  stop(reason: string, forGood?: boolean): Promise<void>;
  /** Settles when the daemon answers on every socket (or failed to start part of it). */
  started: Promise<void>;
  /** Settles when a stop, however asked for, has finished. */
  ended: Promise<void>;
}

/** What a running daemon holds, for starting and stopping it. */
interface Parts {
  opts: ServeOptions;
  log: Logger;
  handle: PoolDir;
  volumes: Volumes;
  files: BlockFiles;
  /** The cowfs mounts (`cowvol mount`). */
  mounts: FsMounts;
  dataFd: number;
  connection: number;
  admin: net.Server;
  socket: string;
  timer: NodeJS.Timeout;
  csi: CsiServer | null;
  ready: boolean;
  /** The keeper, once this daemon owns its connection; null without one. */
  link: KeeperLink | null;
  /** Our map-change journal, a memfd the keeper also holds. */
  journalFd: number;
  /** The cowfs mounts' open counts, which the keeper also holds; null without a holder. */
  openCounts: OpenCounts | null;
  /** The last update of what the holder keeps (keepConnection), so updates go in order. */
  keeping: Promise<void>;
  /** A stop began: the holder hears nothing more but the hand-over itself. */
  stopping: boolean;
  /** systemd's notify socket, when it started us. */
  notifier: Notifier;
  /** Null when --metrics-address none. */
  metrics: Metrics | null;
  /** Where /metrics listens, once it does. */
  endpoint: MetricsEndpoint | null;
}

export function serve(opts: ServeOptions): Daemon {
  const log = createLogger(opts.logLevel);
  const open = (): PoolDir => PoolDir.open(opts.poolDir, opts.cacheBytes === undefined ? {} : { cacheBytes: opts.cacheBytes });
  const box: PoolBox = { handle: open(), open, lastDone: new Map() };
  if (box.handle.pool.discardedCommit !== null) log.warn({ pool: opts.poolDir }, box.handle.pool.discardedCommit);
  // Who mounted before us (read before this daemon records itself): its loop devices are stale now, unless we take its connection over.
  const previous = readRunFile(opts.poolDir);
  const inherited = opts.fdStore ? fromStore(box, log) : replayIfKilled(inheritConnection(opts, box.handle, previous?.keeperPid ?? 0), box, log);
  const handle = box.handle;
  const journalFd = native.journalCreate(JOURNAL_RECORDS);
  // With a holder between daemons, the cowfs mounts go to it as they are made, so a kill hands them on too.
  const openCounts = opts.fdStore || (opts.handoverGrace ?? DEFAULT_GRACE_SECONDS) > 0 ? OpenCounts.create() : null;
  let mountsChanged = (): void => {};
  const mounts = new FsMounts(handle.pool, opts.poolDir, opts.mount, log, {
    threads: opts.fsThreads,
    journalFd: openCounts === null ? undefined : journalFd,
    openCounts: openCounts ?? undefined,
    onChange: () => mountsChanged(),
    dieBeforeAnswer: process.env.COWVOL_TEST_DIE_BEFORE_ANSWER,
  });
  const { files, dataFd } = mountBlockFiles(opts, handle, log, inherited, journalFd, mounts);
  if (inherited !== null) fs.closeSync(inherited.journalFd);
  const handed = inherited === null ? [] : mountsFromFds(inherited.extra, (why) => log.error({ why }, 'the handed-over cowfs mounts are unreadable: mounting them afresh'));
  const connection = fuseConnectionOf(opts.mount);
  writeRunFile(opts.poolDir, { mount: opts.mount, pid: process.pid, keeperPid: inherited?.link?.pid });
  if (inherited !== null) log.info({ mount: opts.mount, keeper: inherited.link?.pid ?? 'fd store' }, 'took the mount over from the previous daemon');
  const flusher = files.ioFlusherErrno();
  if (flusher !== 0) {
    // EPERM without CAP_SYS_RESOURCE: works, but memory pressure on a loop device over us can deadlock.
    log.warn({ errno: flusher }, 'could not mark the serving threads PR_SET_IO_FLUSHER (needs CAP_SYS_RESOURCE)');
  }
  const volumes = new Volumes(handle.pool, mounts);
  const socket = adminSocketPath(opts.poolDir);
  let stopping: Promise<void> | null = null;
  const daemonInfo = {
    pid: process.pid,
    keeperPid: (): number | null => parts.link?.pid ?? null,
    metricsAddress: (): string | null => parts.endpoint?.address ?? null,
    stop: (): void => void stop('cowvol stop', true),
    mounts,
  };
  const parts: Parts = {
    opts,
    log,
    handle,
    volumes,
    files,
    mounts,
    dataFd,
    connection,
    admin: startAdminServer(socket, { volumes, poolDir: opts.poolDir, daemon: daemonInfo }, log),
    socket,
    timer: backgroundCommit(handle.pool, log, (opts.commitSeconds ?? DEFAULT_COMMIT_SECONDS) * 1000),
    csi: null,
    ready: false,
    link: inherited?.link ?? null,
    journalFd,
    openCounts,
    keeping: Promise.resolve(),
    stopping: false,
    notifier: new Notifier(),
    metrics: metricsAddressOf(opts) === null ? null : new Metrics({ pool: handle.pool, files, hostFree: () => hostFreeBytes(opts.poolDir), fsMounts: () => mounts.counters() }),
    endpoint: null,
  };
  mountsChanged = () => {
    if (parts.link !== null || parts.opts.fdStore) keepAgain(parts);
  };
  const started = startServices(parts, inherited !== null ? null : (previous?.mount ?? opts.mount), handed, box.lastDone);
  let end: (p: Promise<void>) => void = () => {};
  const ended = new Promise<void>((resolve) => (end = resolve));
  const stop = (reason: string, forGood = false): Promise<void> => {
    if (stopping === null) {
      stopping = stopDaemon(parts, started, reason, forGood);
      end(stopping);
    }
    return stopping;
  };
  return { log, stop, started, ended };
}

function metricsAddressOf(opts: ServeOptions): MetricsAddress | null {
  return opts.metricsAddress === undefined ? parseMetricsAddress(DEFAULT_METRICS_ADDRESS) : opts.metricsAddress;
}

/** The connection a previous daemon handed to the keeper, if it is for our mount point; the pool is closed on refusal. */
function inheritConnection(opts: ServeOptions, handle: PoolDir, keeperPid: number): Inheritance | null {
  if ((opts.handoverGrace ?? DEFAULT_GRACE_SECONDS) <= 0) return null;
  try {
    const got = inherit(opts.poolDir, keeperPid);
    if (got !== null && got.mount !== opts.mount) {
      handOver(got.link, got.mount, got.handover, got.journalFd, got.extra);
      for (const fd of [got.handover.fd, got.journalFd, ...got.extra]) fs.closeSync(fd);
      fail('EINVAL', `the previous daemon's mount is at ${got.mount}: serve with --mount ${got.mount}, or run 'cowvol stop' first`);
    }
    return got;
  } catch (err) {
    handle.close();
    throw err;
  }
}

/**
 * After a kill, the previous daemon's journal says which mappings it changed
 * and answered for since its last commit: replay them onto the commit we
 * opened, then take the connection over. If the journal cannot say (it does
 * not reach back to that commit), let the connection fail as without a keeper.
 */
function replayIfKilled(got: Inheritance | null, box: PoolBox, log: Logger): Taken | null {
  if (got === null || !got.killed) return got;
  return replayed(got, box, log);
}

/** The pool this daemon serves, and how to open it again (a replay that failed half way leaves its copy unusable). */
interface PoolBox {
  handle: PoolDir;
  open: () => PoolDir;
  /** From the replay: per filesystem volume, the last cowfs request the killed daemon journaled. */
  lastDone: Map<number, number>;
}

/** What systemd's fd store passed us, its journal replayed (a clean stop left nothing past its last commit). */
function fromStore(box: PoolBox, log: Logger): Taken | null {
  const got = fromListenFds();
  return got === null ? null : replayed({ ...got, link: null }, box, log);
}

/** `got` with its journal replayed onto the pool; or, if that fails, nothing: its holder lets go and its fds close. */
function replayed(got: Taken, box: PoolBox, log: Logger): Taken | null {
  if (replayOnto(got.journalFd, box, log)) return got;
  if (got.link !== null) release(got.link);
  for (const fd of [got.handover.fd, got.journalFd, ...got.extra]) fs.closeSync(fd);
  return null;
}

function replayOnto(journalFd: number, box: PoolBox, log: Logger): boolean {
  try {
    const records = journalRecords(journalFd, box.handle.pool.stats().generation);
    if (records === null) fail('ECORRUPT', 'its journal does not reach back to the commit the pool opened');
    const { applied, lastDone } = replayJournal(box.handle.pool, records);
    box.lastDone = lastDone;
    log.warn({ applied, records: records.length }, 'replayed the previous daemon\'s journal');
    return true;
  } catch (err) {
    log.error({ err }, 'could not take the mount over: mounting afresh');
    // Refused part way (a file's takes, after the mappings): what the pool holds in memory is half a replay.
    if (box.handle.pool.uncommitted) {
      box.handle.pool.fail(err);
      box.handle.close();
      box.handle = box.open();
    }
    return false;
  }
}

/** A connection this daemon takes over, from the keeper (with its link) or from systemd's fd store. */
type Taken = Omit<Inheritance, 'link' | 'killed'> & { link: KeeperLink | null };

function mountBlockFiles(opts: ServeOptions, handle: PoolDir, log: Logger, inherited: Taken | null, journalFd: number, mounts: FsMounts): { files: BlockFiles; dataFd: number } {
  let dataFd = -1;
  try {
    // A mount taken over is ours and not served yet: any look at it would wait for us.
    if (inherited === null) prepareMountPoint(opts.mount, log);
    dataFd = fs.openSync(dataFilePath(opts.poolDir), 'r+');
    const files = new BlockFiles(handle.pool, {
      mountpoint: opts.mount,
      dataFd,
      tableSlots: 1 << 18,
      options: 'fsname=cowvol,subtype=cowvol,allow_other,default_permissions',
      takeover: inherited?.handover,
      journalFd,
      otherCover: () => mounts.journalCover(),
      countVolumes: metricsAddressOf(opts) === null ? undefined : COUNTED_VOLUMES,
      hostFree: () => hostFreeBytes(opts.poolDir),
      onError: (err, req) => log.error({ err, op: req.op, ino: req.ino }, 'request failed'),
      // A loop device over a volume (a CSI stage, or one made by hand), or a cowfs mount of it, keeps it from deletion.
      holderOf: (file, id) => {
        const mounted = mounts.holder(id);
        if (mounted !== null) return mounted;
        const loop = listLoops().find((l) => l.backFile === file);
        return loop ? `loop device ${loop.name}` : null;
      },
    });
    return { files, dataFd };
  } catch (err) {
    // Give the pool back (commit, unlock) before reporting; the keeper learns we failed when our link closes.
    if (dataFd >= 0) fs.closeSync(dataFd);
    if (inherited?.link) fs.closeSync(inherited.link.sock);
    handle.close();
    throw err;
  }
}

function prepareMountPoint(mount: string, log: Logger): void {
  // Before touching the directory: a dead daemon's mount fails every access with ENOTCONN.
  if (isMountPoint(mount)) {
    log.warn({ mount }, 'detaching a mount left by an earlier daemon');
    detach(mount);
  }
  if (fs.existsSync(mount) && !fs.statSync(mount).isDirectory()) fail('EINVAL', `mount point ${mount} is not a directory`);
  fs.mkdirSync(mount, { recursive: true });
}

/** Joins the flushes' group commit, so its waits for the disk stay off the event loop too. */
function backgroundCommit(pool: Pool, log: Logger, ms: number): NodeJS.Timeout {
  return setInterval(() => {
    if (!pool.uncommitted) return;
    pool.flushAsync().catch((err: unknown) => log.error({ err }, 'background commit failed'));
  }, ms);
}

/**
 * Gives whoever holds the connection between daemons (systemd's fd store,
 * or the keeper, started here if none runs) a duplicate of it, its INIT and
 * our journal. Without either (--handover-grace 0), nothing.
 */
async function keepConnection(p: Parts, mountsOnly = false): Promise<void> {
  const socket = p.opts.fdStore ? p.notifier.socket : null;
  const grace = p.opts.handoverGrace ?? DEFAULT_GRACE_SECONDS;
  if (socket === null && grace <= 0) return;
  if (socket === null && p.link === null) await startKeeper(p.opts.poolDir, grace);
  const h = await p.files.connectionWithInit();
  const live = p.openCounts === null ? [] : await p.mounts.liveMounts();
  const extra = p.openCounts === null ? [] : liveFds(live, p.openCounts.fd);
  try {
    if (socket !== null) {
      // The store keeps each fd by name: only the cowfs mounts' change when they do.
      if (!mountsOnly) store(socket, p.opts.mount, h, p.journalFd);
      storeMounts(socket, extra, true);
    } else if (p.link === null) p.link = hold(p.opts.poolDir, p.opts.mount, h, p.journalFd, extra);
    else holdAgain(p.link, p.opts.mount, h, p.journalFd, extra);
  } finally {
    // The record memfd is ours to close; the open counts stay ours.
    for (const fd of [h.fd, ...live.map((m) => m.handover.fd), ...extra.slice(0, 1)]) fs.closeSync(fd);
  }
  if (p.link !== null) writeRunFile(p.opts.poolDir, { mount: p.opts.mount, pid: process.pid, keeperPid: p.link.pid });
}

/** The cowfs mounts changed: the holder gets everything again, after any update under way. */
function keepAgain(p: Parts): void {
  p.keeping = p.keeping.then(
    () => (p.stopping ? undefined : keepConnection(p, true)),
    () => undefined,
  );
  p.keeping.catch((err: unknown) => p.log.error({ err }, 'could not give the keeper the cowfs mounts: a kill now ends their connections'));
}

/** The admin socket listening, then the cowfs mounts (`handed`: taken over), then CSI (answering "not ready" while stages a previous daemon left are rebuilt). */
async function startServices(p: Parts, previousMount: string | null, handed: HandedMount[], lastDone: ReadonlyMap<number, number>): Promise<void> {
  await new Promise<void>((resolve) => p.admin.once('listening', () => resolve()));
  p.keeping = keepConnection(p);
  await p.keeping;
  await p.mounts.restore(handed, lastDone);
  await startMetrics(p);
  const csiOpts = p.opts.csi;
  if (csiOpts) {
    const ctx: DriverContext = {
      volumes: p.volumes,
      ioErrors: (id: number) => p.files.errorCount(id),
      mount: p.opts.mount,
      nodeId: csiOpts.nodeId,
      driverName: csiOpts.driverName,
      kubelet: new PathPolicy(csiOpts.kubeletDir),
      maxVolumesPerNode: csiOpts.maxVolumesPerNode,
      hostFree: () => hostFreeBytes(p.opts.poolDir),
      log: p.log,
      observe: p.metrics === null ? undefined : p.metrics.observeCsi.bind(p.metrics),
      mounts: p.mounts,
    };
    p.csi = await startCsiServer(ctx, csiOpts.endpoint, () => p.ready);
    // After a takeover the kernel kept every loop device and mount working: nothing to repair.
    const repaired = previousMount === null ? 0 : await repairAfterRestart(ctx, previousMount);
    if (repaired > 0) p.log.warn({ repaired }, 'stages rebuilt after a restart');
  }
  p.ready = true;
  const pool = p.handle.pool;
  p.log.info({ pool: p.opts.poolDir, mount: p.opts.mount, socket: p.socket, volumes: pool.stats().volumes, csi: csiOpts?.endpoint }, 'serving');
  // Filesystem volumes are no block files: `cowvol mounts` lists where they are served.
  const list = pool.list().filter((v) => v.kind !== 'fs').map((v) => blockFilePath(p.opts.mount, v.name, v.readOnly));
  p.notifier.ready(`serving ${pool.stats().volumes} volumes and snapshots at ${p.opts.mount}${csiOpts ? `, CSI on ${csiOpts.endpoint}` : ''}`);
  p.notifier.startWatchdog(p.opts.mount);
  process.stdout.write(`cowvol: serving ${p.opts.poolDir} at ${p.opts.mount}${list.length > 0 ? `:\n  ${list.join('\n  ')}` : ''}\n`);
}

/** /metrics and /healthz; a failure to listen is logged and the daemon serves on without them. */
async function startMetrics(p: Parts): Promise<void> {
  const at = metricsAddressOf(p.opts);
  if (at === null || p.metrics === null) return;
  try {
    p.endpoint = await startMetricsEndpoint(at, p.metrics, () => health(p), p.log);
  } catch (err) {
    p.log.error({ err, address: `${at.host}:${at.port}` }, 'metrics endpoint could not listen: serving without it');
  }
}

/** Null when the daemon serves, or why not: still starting or stopping, the pool failed, or the mount does not answer. */
async function health(p: Parts): Promise<string | null> {
  if (!p.ready) return 'starting or stopping';
  const broken = p.handle.pool.broken;
  if (broken !== null) return broken;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<string>((resolve) => (timer = setTimeout(() => resolve(`the mount ${p.opts.mount} did not answer within ${HEALTH_WAIT_MS / 1000} s`), HEALTH_WAIT_MS)));
  const listed = fs.promises.readdir(path.join(p.opts.mount, 'block')).then(
    () => null,
    (err: unknown) => `the mount ${p.opts.mount} does not answer: ${err instanceof Error ? err.message : String(err)}`,
  );
  try {
    return await Promise.race([listed, late]);
  } finally {
    clearTimeout(timer);
  }
}

async function stopDaemon(p: Parts, started: Promise<void>, reason: string, forGood: boolean): Promise<void> {
  const link = forGood ? null : p.link;
  const handingOver = link !== null || (!forGood && p.opts.fdStore === true);
  p.log.info({ reason }, handingOver ? 'stopping: handing the mount over' : 'stopping: draining requests');
  p.notifier.stopping(handingOver ? 'handing the mount over' : 'draining, then unmounting');
  p.ready = false;
  p.stopping = true;
  await started.catch(() => undefined);
  // An update of the holder under way lands before the hand-over, never after it.
  await p.keeping.catch(() => undefined);
  clearInterval(p.timer);
  await p.endpoint?.close();
  await closeAdminServer(p.admin);
  fs.rmSync(p.socket, { force: true });
  // The cowfs mounts go with the block files' connection; stopping for good, they are unmounted (their record stays for the next daemon).
  const handed = handingOver ? await p.mounts.detachAll() : [];
  if (!handingOver) await p.mounts.closeAll();
  const stats = p.files.stats();
  if (handingOver) {
    const handover = await p.files.detach();
    if (p.csi !== null) await p.csi.close();
    // Closed (its last commit, cowfs stamps included, was made at the detach) before the keeper hears of it: the next daemon must find the pool unlocked.
    p.handle.close();
    fs.closeSync(p.dataFd);
    const extra = handedFds(handed);
    try {
      // In the fd store already: the connection, the journal (whose last mark is that commit) and the record; the cowfs mounts join them.
      if (link !== null) handOver(link, p.opts.mount, handover, p.journalFd, extra);
      else if (p.notifier.socket !== null) storeMounts(p.notifier.socket, extra);
    } finally {
      for (const fd of [handover.fd, p.journalFd, ...extra]) fs.closeSync(fd);
      p.openCounts?.close();
    }
    p.log.info({ stats, keeper: link?.pid ?? 'fd store', cowfs: handed.length }, 'handed the mount over');
    return;
  }
  // Loop devices over the block files keep the connection open after the
  // unmount; once queued requests had their time, cut it (see repair.ts).
  const cut = setTimeout(() => {
    if (abortFuseConnection(p.connection)) p.log.warn({ connection: p.connection }, 'FUSE connection still in use (loop devices): aborted it');
  }, DRAIN_MS);
  await p.files.close();
  clearTimeout(cut);
  // Closed last: while draining, Probe says not ready and other CSI calls get UNAVAILABLE.
  if (p.csi !== null) await p.csi.close();
  p.handle.close();
  fs.closeSync(p.dataFd);
  fs.closeSync(p.journalFd);
  p.openCounts?.close();
  if (p.link !== null) release(p.link);
  if (p.opts.fdStore && p.notifier.socket !== null) forget(p.notifier.socket);
  p.log.info({ stats }, 'stopped cleanly');
}
