/**
 * `cowvol serve`: the node daemon. Holds the pool, mounts the block-file
 * frontend at MOUNT (default /run/cowvol), answers the admin socket and
 * (optionally) CSI, commits in the background, and on SIGTERM or SIGINT
 * stops taking requests, drains, commits, unmounts and exits 0. A mount left
 * by a killed daemon is detached before mounting.
 */
import fs from 'node:fs';
import type net from 'node:net';

import { fail } from '../errors.js';
import { PoolDir, dataFilePath, hostFreeBytes } from '../blockstore/pool-dir.js';
import type { Pool } from '../blockstore/pool.js';
import { BlockFiles, blockFilePath } from '../fuse/block-files.js';
import { adminSocketPath, startAdminServer } from '../admin/server.js';
import { type CsiServer, startCsiServer } from '../csi/server.js';
import type { DriverContext } from '../csi/driver.js';
import { PathPolicy } from '../csi/paths.js';
import { repairAfterRestart } from '../csi/repair.js';
import { listLoops } from '../host/loop.js';
import { abortFuseConnection, fuseConnectionOf } from '../host/fusectl.js';
import { detach, isMountPoint } from '../host/mounts.js';
import { type Logger, createLogger } from '../log.js';
import { Volumes } from '../volumes/volumes.js';
import { readRunFile, writeRunFile } from './run-file.js';

export const DEFAULT_MOUNT = '/run/cowvol';
/** Bounds what a crash can lose of metadata changes nobody flushed. */
const COMMIT_INTERVAL_MS = 5000;
/** How long stop waits for the block files to drain before cutting the FUSE connection. */
const DRAIN_MS = 3000;

export interface ServeOptions {
  poolDir: string;
  mount: string;
  logLevel: string;
  cacheBytes?: number;
  csi?: CsiOptions;
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
  stop(reason: string): Promise<void>;
  /** Settles when the daemon answers on every socket (or failed to start part of it). */
  started: Promise<void>;
}

/** What a running daemon holds, for starting and stopping it. */
interface Parts {
  opts: ServeOptions;
  log: Logger;
  handle: PoolDir;
  volumes: Volumes;
  files: BlockFiles;
  dataFd: number;
  connection: number;
  admin: net.Server;
  socket: string;
  timer: NodeJS.Timeout;
  csi: CsiServer | null;
  ready: boolean;
}

export function serve(opts: ServeOptions): Daemon {
  const log = createLogger(opts.logLevel);
  const handle = PoolDir.open(opts.poolDir, opts.cacheBytes === undefined ? {} : { cacheBytes: opts.cacheBytes });
  if (handle.pool.discardedCommit !== null) log.warn({ pool: opts.poolDir }, handle.pool.discardedCommit);
  const { files, dataFd } = mountBlockFiles(opts, handle, log);
  const connection = fuseConnectionOf(opts.mount);
  // Who mounted before us (read before this daemon records itself): its loop devices are stale now.
  const previous = readRunFile(opts.poolDir);
  writeRunFile(opts.poolDir, { mount: opts.mount, pid: process.pid });
  const flusher = files.ioFlusherErrno();
  if (flusher !== 0) {
    // EPERM without CAP_SYS_RESOURCE: works, but memory pressure on a loop device over us can deadlock.
    log.warn({ errno: flusher }, 'could not mark the serving threads PR_SET_IO_FLUSHER (needs CAP_SYS_RESOURCE)');
  }
  const volumes = new Volumes(handle.pool);
  const socket = adminSocketPath(opts.poolDir);
  const parts: Parts = {
    opts,
    log,
    handle,
    volumes,
    files,
    dataFd,
    connection,
    admin: startAdminServer(socket, { volumes, poolDir: opts.poolDir }, log),
    socket,
    timer: backgroundCommit(handle.pool, log),
    csi: null,
    ready: false,
  };
  const started = startServices(parts, previous?.mount ?? opts.mount);
  let stopping: Promise<void> | null = null;
  const stop = (reason: string): Promise<void> => (stopping ??= stopDaemon(parts, started, reason));
  return { log, stop, started };
}

function mountBlockFiles(opts: ServeOptions, handle: PoolDir, log: Logger): { files: BlockFiles; dataFd: number } {
  let dataFd = -1;
  try {
    // Before touching the directory: a dead daemon's mount fails every access with ENOTCONN.
    if (isMountPoint(opts.mount)) {
      log.warn({ mount: opts.mount }, 'detaching a mount left by an earlier daemon');
      detach(opts.mount);
    }
    if (fs.existsSync(opts.mount) && !fs.statSync(opts.mount).isDirectory()) fail('EINVAL', `mount point ${opts.mount} is not a directory`);
    fs.mkdirSync(opts.mount, { recursive: true });
    dataFd = fs.openSync(dataFilePath(opts.poolDir), 'r+');
    const files = new BlockFiles(handle.pool, {
      mountpoint: opts.mount,
      dataFd,
      tableSlots: 1 << 18,
      options: 'fsname=cowvol,subtype=cowvol,allow_other,default_permissions',
      hostFree: () => hostFreeBytes(opts.poolDir),
      onError: (err, req) => log.error({ err, op: req.op, ino: req.ino }, 'request failed'),
      // A loop device over a volume (a CSI stage, or one made by hand) keeps it from deletion.
      holderOf: (file) => {
        const loop = listLoops().find((l) => l.backFile === file);
        return loop ? `loop device ${loop.name}` : null;
      },
    });
    return { files, dataFd };
  } catch (err) {
    // Give the pool back (commit, unlock) before reporting.
    if (dataFd >= 0) fs.closeSync(dataFd);
    handle.close();
    throw err;
  }
}

/** Joins the flushes' group commit, so its waits for the disk stay off the event loop too. */
function backgroundCommit(pool: Pool, log: Logger): NodeJS.Timeout {
  return setInterval(() => {
    if (!pool.uncommitted) return;
    pool.flushAsync().catch((err: unknown) => log.error({ err }, 'background commit failed'));
  }, COMMIT_INTERVAL_MS);
}

/** The admin socket listening, then CSI (answering "not ready" while stages a previous daemon left are rebuilt). */
async function startServices(p: Parts, previousMount: string): Promise<void> {
  await new Promise<void>((resolve) => p.admin.once('listening', () => resolve()));
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
    };
    p.csi = await startCsiServer(ctx, csiOpts.endpoint, () => p.ready);
    const repaired = await repairAfterRestart(ctx, previousMount);
    if (repaired > 0) p.log.warn({ repaired }, 'stages rebuilt after a restart');
  }
  p.ready = true;
  const pool = p.handle.pool;
  p.log.info({ pool: p.opts.poolDir, mount: p.opts.mount, socket: p.socket, volumes: pool.stats().volumes, csi: csiOpts?.endpoint }, 'serving');
  const list = pool.list().map((v) => blockFilePath(p.opts.mount, v.name, v.readOnly));
  process.stdout.write(`cowvol: serving ${p.opts.poolDir} at ${p.opts.mount}${list.length > 0 ? `:\n  ${list.join('\n  ')}` : ''}\n`);
}

async function stopDaemon(p: Parts, started: Promise<void>, reason: string): Promise<void> {
  p.log.info({ reason }, 'stopping: draining requests');
  p.ready = false;
  await started.catch(() => undefined);
  clearInterval(p.timer);
  await new Promise<void>((resolve) => p.admin.close(() => resolve()));
  fs.rmSync(p.socket, { force: true });
  const stats = p.files.stats();
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
  p.log.info({ stats }, 'stopped cleanly');
}
