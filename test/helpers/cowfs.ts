/**
 * A cowfs volume served in the test's own process (src/fuse/cowfs-mount.ts
 * over a pool directory), so a test reads the mount's counters directly.
 * Every access to the mount must then be asynchronous (fs.promises, child
 * processes): the test's event loop is the one that answers it.
 */
import fs from 'node:fs';
import path from 'node:path';

import { type Test } from 'tap';

import { PoolDir, dataFilePath, initPoolDir } from '../../src/blockstore/pool-dir.js';
import { CowfsMount } from '../../src/fuse/cowfs-mount.js';
import { Volumes } from '../../src/volumes/volumes.js';
import { tmpDir } from './pools.js';

export interface Served {
  handle: PoolDir;
  volumes: Volumes;
  mount: CowfsMount;
  dir: string;
  /** Unmounts and mounts the volume again (a new session, as after a remount), replacing `mount`. */
  remount(): Promise<void>;
  close(): Promise<void>;
}

export interface ServeOptions {
  tableSlots?: number;
  stampMs?: number;
  /** Of the volume, bytes; 256 MiB unless set. */
  size?: number;
  /** The process's shared FUSE threads, if this is its first cowfs mount (CowfsMountOptions.threads). */
  threads?: number;
}

/** Volume `v` of a fresh pool, mounted at a new directory; all of it goes when the test ends. */
export async function serveInProcess(t: Test, prefix: string, opts: ServeOptions = {}): Promise<Served> {
  const root = tmpDir(prefix);
  // Another user reaches the mount through it (the capability case of cowfs-data-path).
  fs.chmodSync(root, 0o755);
  initPoolDir(path.join(root, 'pool'));
  const handle = PoolDir.open(path.join(root, 'pool'));
  const volumes = new Volumes(handle.pool);
  volumes.create('v', { size: opts.size ?? 256 * 1024 * 1024, kind: 'fs' });
  const dir = path.join(root, 'mnt');
  fs.mkdirSync(dir);
  const dataFd = fs.openSync(dataFilePath(path.join(root, 'pool')), 'r+');
  const mountIt = (): CowfsMount => new CowfsMount(handle.pool, 'v', dir, { dataFd, tableSlots: opts.tableSlots, stampMs: opts.stampMs, threads: opts.threads });
  let closed = false;
  const served: Served = {
    handle,
    volumes,
    mount: mountIt(),
    dir,
    async remount() {
      await served.mount.close();
      served.mount = mountIt();
    },
    async close() {
      if (closed) return;
      closed = true;
      await served.mount.close();
      fs.closeSync(dataFd);
      handle.close();
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
  t.teardown(() => served.close());
  return served;
}

/** Polls `done` every millisecond until it holds; the bound (about 20 s) only stops a test whose event never came. */
async function until(done: () => boolean): Promise<void> {
  for (let i = 0; i < 20_000 && !done(); i++) await new Promise((resolve) => setTimeout(resolve, 1));
}

/**
 * Waits until the mount has handed at least `count` requests to JavaScript in
 * all, and returns the count then. The kernel sends a RELEASE in the
 * background after the close that caused it, so a test that counts it waits
 * on the counter itself.
 */
export async function slowRequestsReach(mount: CowfsMount, count: number): Promise<number> {
  await until(() => mount.stats().slowRequests >= count);
  return mount.stats().slowRequests;
}

/**
 * Waits until every handle opened through the mount but `stillOpen` has been
 * released, so a count read after it holds each close's RELEASE (which the
 * kernel sends in the background, after close returned).
 */
export async function allReleased(mount: CowfsMount, stillOpen = 0): Promise<void> {
  await until(() => mount.fs.openFiles().reduce((sum, [, count]) => sum + count, 0) <= stillOpen);
}
