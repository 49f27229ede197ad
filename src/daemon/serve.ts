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
import { BlockFiles } from '../fuse/block-files.js';
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
}

export interface Daemon {
  log: Logger;
  stop(reason: string): Promise<void>;
}

export function serve(opts: ServeOptions): Daemon {
  const log = createLogger(opts.logLevel);
  const handle = PoolDir.open(opts.poolDir, opts.cacheBytes === undefined ? {} : { cacheBytes: opts.cacheBytes });
  const pool = handle.pool;
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
      hostFree: () => {
        const st = fs.statfsSync(opts.poolDir);
        return st.bavail * st.bsize;
      },
      onError: (err, req) => log.error({ err, op: req.op, ino: req.ino }, 'request failed'),
    });
  } catch (err) {
    // Give the pool back (commit, unlock) before reporting.
    if (dataFd >= 0) fs.closeSync(dataFd);
    handle.close();
    throw err;
  }
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
  admin.once('listening', () => {
    log.info({ pool: opts.poolDir, mount: opts.mount, socket, volumes: pool.stats().volumes }, 'serving');
    const files = pool.list().map((v) => `${opts.mount}/${v.readOnly ? 'snapshots' : 'block'}/${v.name}`);
    process.stdout.write(`cowvol: serving ${opts.poolDir} at ${opts.mount}${files.length > 0 ? `:\n  ${files.join('\n  ')}` : ''}\n`);
  });

  let stopping: Promise<void> | null = null;
  const stop = (reason: string): Promise<void> => {
    stopping ??= (async () => {
      log.info({ reason }, 'stopping: draining requests');
      clearInterval(timer);
      await new Promise<void>((resolve) => admin.close(() => resolve()));
      fs.rmSync(socket, { force: true });
      const stats = files.stats();
      await files.close();
      handle.close();
      fs.closeSync(dataFd);
      log.info({ stats }, 'stopped cleanly');
    })();
    return stopping;
  };
  return { log, stop };
}
