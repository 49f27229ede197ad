/** Small constructors for pools on memory disks and on temporary directories. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { MemoryDisk } from '../../src/blockstore/memory-disk.js';
import { type InitOptions, type OpenOptions, Pool } from '../../src/blockstore/pool.js';

export interface MemoryPool {
  pool: Pool;
  meta: MemoryDisk;
  data: MemoryDisk;
  reopen(options?: OpenOptions): Pool;
}

export function memoryPool(init: InitOptions = {}, options: OpenOptions = {}): MemoryPool {
  const meta = new MemoryDisk();
  const data = new MemoryDisk();
  Pool.init(meta, data, init);
  const mp: MemoryPool = {
    pool: Pool.open(meta, data, options),
    meta,
    data,
    reopen(o = options) {
      mp.pool.close();
      mp.pool = Pool.open(meta, data, o);
      return mp.pool;
    },
  };
  return mp;
}

export function tmpDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `cowvol-${prefix}-`));
}

export function fill(n: number, byte: number): Buffer {
  return Buffer.alloc(n, byte);
}
