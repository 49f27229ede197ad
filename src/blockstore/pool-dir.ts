/**
 * A pool on a directory: `cowvol.meta` (pages), `cowvol.data` (chunks) and
 * `cowvol.lock`, an flock held while a process has the pool open. The
 * kernel drops the lock when its holder dies, so kill -9 never leaves the
 * pool locked; the file names the last holder's PID for error messages.
 */
import fs from 'node:fs';
import path from 'node:path';

import { CowvolError, fail } from '../errors.js';
import { FileDisk } from './file-disk.js';
import { native } from '../native.js';
import { type InitOptions, type OpenOptions, Pool, type PoolStats } from './pool.js';

export const DEFAULT_POOL_DIR = '/var/lib/cowvol';
const META = 'cowvol.meta';
const DATA = 'cowvol.data';
const LOCK = 'cowvol.lock';

/** --pool beats $COWVOL_POOL beats the default. */
export function resolvePoolDir(flag?: string): string {
  return path.resolve(flag ?? process.env.COWVOL_POOL ?? DEFAULT_POOL_DIR);
}

/** The data file, for frontends that do their own I/O on mapped chunks. */
export function dataFilePath(dir: string): string {
  return path.join(dir, DATA);
}

/** Bytes free on the filesystem under the pool directory: what a pool without a capacity can still take. */
export function hostFreeBytes(dir: string): number {
  const st = fs.statfsSync(dir);
  return st.bavail * st.bsize;
}

/** What the pool can still allocate: within its capacity (if it has one), and no more than the host filesystem has free. */
export function poolFreeBytes(stats: PoolStats, hostFree: number): number {
  return stats.capacityBytes > 0 ? Math.min(stats.freeChunks * stats.chunkSize, hostFree) : hostFree;
}

export function isPoolDir(dir: string): boolean {
  return fs.existsSync(path.join(dir, META));
}

function lock(dir: string): number {
  const file = path.join(dir, LOCK);
  const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
  if (!native.tryLock(fd)) {
    const holder = fs.readFileSync(file, 'utf8').trim() || 'unknown';
    fs.closeSync(fd);
    fail('EBUSY', `pool ${dir} is in use by process ${holder}`);
  }
  fs.ftruncateSync(fd, 0);
  fs.writeSync(fd, `${process.pid}\n`, 0);
  return fd;
}

export function initPoolDir(dir: string, options: InitOptions = {}): void {
  if (fs.existsSync(dir) && !fs.statSync(dir).isDirectory()) fail('EINVAL', `${dir} exists and is not a directory`);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const fd = lock(dir);
  try {
    if (isPoolDir(dir)) fail('EEXIST', `a pool already exists in ${dir}`);
    const metaPath = path.join(dir, META);
    const dataPath = path.join(dir, DATA);
    // Data first, metadata last: a pool exists only once its superblock does.
    const dataDisk = new FileDisk(dataPath, { create: true });
    const metaDisk = new FileDisk(`${metaPath}.new`, { create: true });
    try {
      Pool.init(metaDisk, dataDisk, options);
    } catch (err) {
      fs.rmSync(`${metaPath}.new`, { force: true });
      fs.rmSync(dataPath, { force: true });
      throw err;
    } finally {
      metaDisk.close();
      dataDisk.close();
    }
    fs.renameSync(`${metaPath}.new`, metaPath);
    const dirFd = fs.openSync(dir, 'r');
    fs.fsyncSync(dirFd);
    fs.closeSync(dirFd);
  } finally {
    fs.closeSync(fd);
  }
}

export class PoolDir {
  readonly dir: string;
  readonly pool: Pool;
  private lockFd: number;

  private constructor(dir: string, pool: Pool, lockFd: number) {
    this.dir = dir;
    this.pool = pool;
    this.lockFd = lockFd;
  }

  static open(dir: string, options: OpenOptions = {}): PoolDir {
    if (!fs.existsSync(dir)) fail('ENOTPOOL', `${dir} does not exist: run 'cowvol pool init --pool ${dir}' first`);
    if (!isPoolDir(dir)) fail('ENOTPOOL', `${dir} is not a cowvol pool: run 'cowvol pool init --pool ${dir}' first`);
    const fd = lock(dir);
    let metaDisk: FileDisk | null = null;
    let dataDisk: FileDisk | null = null;
    try {
      metaDisk = new FileDisk(path.join(dir, META));
      dataDisk = new FileDisk(path.join(dir, DATA));
      return new PoolDir(dir, Pool.open(metaDisk, dataDisk, options, dir), fd);
    } catch (err) {
      metaDisk?.close();
      dataDisk?.close();
      fs.closeSync(fd);
      if (err instanceof CowvolError) throw err;
      const code = (err as { code?: string }).code;
      if (code === 'ENOENT') fail('ENOTPOOL', `${dir} is missing pool files: it is not a complete cowvol pool`);
      throw err;
    }
  }

  close(): void {
    if (this.lockFd < 0) return;
    try {
      this.pool.close();
    } finally {
      fs.closeSync(this.lockFd);
      this.lockFd = -1;
    }
  }
}
