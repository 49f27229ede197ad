/**
 * `cowvol serve`: the node daemon. Holds the pool, mounts the block-file
 * frontend at MOUNT (default /run/cowvol), commits in the background, and
 * on SIGTERM or SIGINT stops taking requests, drains, commits, unmounts and
 * exits 0. A mount left by a killed daemon is detached before mounting.
 */
import fs from 'node:fs';

import { fail } from '../errors.js';
import { PoolDir, dataFilePath } from '../blockstore/pool-dir.js';
import type { Pool } from '../blockstore/pool.js';
import { BlockFiles, blockFilePath } from '../fuse/block-files.js';
import { type CsiServer, startCsiServer } from '../csi/server.js';
import { PathPolicy } from '../csi/paths.js';
import { repairAfterRestart } from '../csi/repair.js';
import { listLoops } from '../csi/host/loop.js';
import { abortFuseConnection, fuseConnectionOf } from './fusectl.js';
import { readRunFile, writeRunFile } from './run-file.js';
import { type CommandResult, adminSocketPath, startAdminServer } from './admin.js';
import { type Logger, createLogger } from './log.js';
import { detach, isMountPoint } from './mounts.js';

export const DEFAULT_MOUNT = '/run/cowvol';
/** Bounds what a crash can lose of metadata changes nobody flushed. */
const COMMIT_INTERVAL_MS = 5000;

export interface ServeOptions {
  /** Runs one CLI command against the open pool (the admin API's work). */
  execute: (argv: string[], host: { pool: Pool; poolDir: string }) => CommandResult;
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

/** How long stop waits for the block files to drain before cutting the FUSE connection. */
const DRAIN_MS = 3000;

export interface Daemon {
  log: Logger;
  stop(reason: string): Promise<void>;
  /** Settles when the daemon answers on every socket (or failed to start part of it). */
  started: Promise<void>;
}

export function serve(opts: ServeOptions): Daemon {
  const log = createLogger(opts.logLevel);
  const handle = PoolDir.open(opts.poolDir, opts.cacheBytes === undefined ? {} : { cacheBytes: opts.cacheBytes });
  const pool = handle.pool;
  /** Bytes free on the filesystem under the pool: what a pool without a capacity can still take. */
  const hostFree = (): number => {
    const st = fs.statfsSync(opts.poolDir);
    return st.bavail * st.bsize;
  };
  let dataFd = -1;
  let files: BlockFiles;
  try {
    // Before touching the directory: a dead daemon's mount fails every access with ENOTCONN.
    if (isMountPoint(opts.mount)) {
      log.warn({ mount: opts.mount }, 'detaching a mount left by an earlier daemon');
      detach(opts.mount);
    }
    if (fs.existsSync(opts.mount) && !fs.statSync(opts.mount).isDirectory()) fail('EINVAL', `mount point ${opts.mount} is not a directory`);
    fs.mkdirSync(opts.mount, { recursive: true });
    dataFd = fs.openSync(dataFilePath(opts.poolDir), 'r+');
    files = new BlockFiles(pool, {
      mountpoint: opts.mount,
      dataFd,
      tableSlots: 1 << 18,
      options: 'fsname=cowvol,subtype=cowvol,allow_other,default_permissions',
      hostFree,
      onError: (err, req) => log.error({ err, op: req.op, ino: req.ino }, 'request failed'),
      // A loop device over a volume (a CSI stage, or one made by hand) keeps it from deletion.
      holderOf: (file) => {
        const loop = listLoops().find((l) => l.backFile === file);
        return loop ? `loop device ${loop.name}` : null;
      },
    });
  } catch (err) {
    // Give the pool back (commit, unlock) before reporting.
    if (dataFd >= 0) fs.closeSync(dataFd);
    handle.close();
    throw err;
  }
  const connection = fuseConnectionOf(opts.mount);
  // Who mounted before us (read before this daemon records itself): its loop devices are stale now.
  const previous = readRunFile(opts.poolDir);
  writeRunFile(opts.poolDir, { mount: opts.mount, pid: process.pid });
  const flusher = files.ioFlusherErrno();
  if (flusher !== 0) {
    // EPERM without CAP_SYS_RESOURCE: works, but memory pressure on a loop device over us can deadlock.
    log.warn({ errno: flusher }, 'could not mark the serving threads PR_SET_IO_FLUSHER (needs CAP_SYS_RESOURCE)');
  }
  const timer = setInterval(() => {
    try {
      pool.commit();
    } catch (err) {
      log.error({ err }, 'background commit failed');
    }
  }, COMMIT_INTERVAL_MS);
  const socket = adminSocketPath(opts.poolDir);
  const admin = startAdminServer(socket, (argv) => opts.execute(argv, { pool, poolDir: opts.poolDir }), log);
  let csi: CsiServer | null = null;
  let ready = false;
  const csiOpts = opts.csi;
  const started = (async () => {
    await new Promise<void>((resolve) => admin.once('listening', () => resolve()));
    if (csiOpts) {
      const ctx = {
        pool,
        ioErrors: (id: number) => files.errorCount(id),
        mount: opts.mount,
        nodeId: csiOpts.nodeId,
        driverName: csiOpts.driverName,
        kubelet: new PathPolicy(csiOpts.kubeletDir),
        maxVolumesPerNode: csiOpts.maxVolumesPerNode,
        hostFree,
        log,
      };
      // Answering (Probe says not ready) while stages a previous daemon left are rebuilt.
      csi = await startCsiServer(ctx, csiOpts.endpoint, () => ready);
      const repaired = await repairAfterRestart(ctx, previous?.mount ?? opts.mount);
      if (repaired > 0) log.warn({ repaired }, 'stages rebuilt after a restart');
    }
    ready = true;
    log.info({ pool: opts.poolDir, mount: opts.mount, socket, volumes: pool.stats().volumes, csi: csiOpts?.endpoint }, 'serving');
    const list = pool.list().map((v) => blockFilePath(opts.mount, v.name, v.readOnly));
    process.stdout.write(`cowvol: serving ${opts.poolDir} at ${opts.mount}${list.length > 0 ? `:\n  ${list.join('\n  ')}` : ''}\n`);
  })();

  let stopping: Promise<void> | null = null;
  const stop = (reason: string): Promise<void> => {
    stopping ??= (async () => {
      log.info({ reason }, 'stopping: draining requests');
      ready = false;
      await started.catch(() => undefined);
      clearInterval(timer);
      await new Promise<void>((resolve) => admin.close(() => resolve()));
      fs.rmSync(socket, { force: true });
      const stats = files.stats();
      // Loop devices over the block files keep the connection open after the
      // unmount; once queued requests had their time, cut it (see repair.ts).
      const cut = setTimeout(() => {
        if (abortFuseConnection(connection)) log.warn({ connection }, 'FUSE connection still in use (loop devices): aborted it');
      }, DRAIN_MS);
      await files.close();
      clearTimeout(cut);
      // Closed last: while draining, Probe says not ready and other CSI calls get UNAVAILABLE.
      if (csi !== null) await (csi as CsiServer).close();
      handle.close();
      fs.closeSync(dataFd);
      log.info({ stats }, 'stopped cleanly');
    })();
    return stopping;
  };
  return { log, stop, started };
}
