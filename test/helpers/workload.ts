/**
 * Random workloads for the pool, shared by the model test and the crash
 * test: an op generator driven by a seeded PRNG, the op's effect on a plain
 * in-memory model, and its application to a real Pool.
 */
import { Prng } from '../../src/blockstore/prng.js';
import type { Pool } from '../../src/blockstore/pool.js';
import { CowvolError } from '../../src/errors.js';

export interface ModelVolume {
  name: string;
  data: Buffer;
  readOnly: boolean;
}

export type Op =
  | { kind: 'create'; name: string; size: number }
  | { kind: 'write'; name: string; offset: number; data: Buffer }
  /** keep: zero the range and keep it mapped (pool.zeroRange, FALLOC_FL_ZERO_RANGE) rather than unmap it. */
  | { kind: 'discard'; name: string; offset: number; length: number; keep: boolean }
  | { kind: 'grow'; name: string; size: number }
  | { kind: 'snapshot'; name: string; snap: string }
  | { kind: 'clone'; source: string; name: string; size: number }
  | { kind: 'delete'; name: string }
  | { kind: 'flush' }
  | { kind: 'bad'; what: 'write-snapshot' | 'shrink' | 'duplicate' | 'past-end'; name: string };

export class Model {
  readonly volumes = new Map<string, ModelVolume>();
  private counter = 0;

  freshName(prefix: string): string {
    return `${prefix}${this.counter++}`;
  }

  writable(): ModelVolume[] {
    return [...this.volumes.values()].filter((v) => !v.readOnly);
  }

  apply(op: Op): void {
    switch (op.kind) {
      case 'create':
        this.volumes.set(op.name, { name: op.name, data: Buffer.alloc(op.size), readOnly: false });
        break;
      case 'write':
        op.data.copy(this.get(op.name).data, op.offset);
        break;
      case 'discard':
        this.get(op.name).data.fill(0, op.offset, op.offset + op.length);
        break;
      case 'grow': {
        const v = this.get(op.name);
        const data = Buffer.alloc(op.size);
        v.data.copy(data);
        v.data = data;
        break;
      }
      case 'snapshot':
        this.volumes.set(`${op.name}@${op.snap}`, { name: `${op.name}@${op.snap}`, data: Buffer.from(this.get(op.name).data), readOnly: true });
        break;
      case 'clone': {
        const data = Buffer.alloc(op.size);
        this.get(op.source).data.copy(data);
        this.volumes.set(op.name, { name: op.name, data, readOnly: false });
        break;
      }
      case 'delete':
        this.volumes.delete(op.name);
        break;
      case 'flush':
      case 'bad':
        break;
    }
  }

  get(name: string): ModelVolume {
    const v = this.volumes.get(name);
    if (!v) throw new Error(`model has no ${name}`);
    return v;
  }
}

export interface WorkloadShape {
  chunkSize: number;
  /** Largest volume, in chunks. */
  maxChunks: number;
  /** Writes and discards start and end on multiples of this (1 = any byte). */
  align?: number;
}

function randomSize(rng: Prng, shape: WorkloadShape): number {
  const chunks = rng.chance(0.1) ? shape.maxChunks : 1 + rng.int(Math.min(48, shape.maxChunks));
  const bytes = chunks * shape.chunkSize - (rng.chance(0.3) ? 4096 * rng.int(shape.chunkSize / 4096) : 0);
  return Math.max(4096, bytes);
}

/** A range inside the volume: mostly sector-aligned, sometimes not, sometimes across chunks. */
function randomRange(rng: Prng, size: number, chunkSize: number, minAlign = 1): { offset: number; length: number } {
  const align = Math.max(minAlign, rng.chance(0.8) ? 512 : 1);
  const maxLen = rng.chance(0.2) ? chunkSize * 3 : rng.chance(0.5) ? chunkSize : 4096;
  const length = Math.max(align, Math.floor((1 + rng.int(maxLen)) / align) * align);
  const len = Math.min(length, size);
  const offset = Math.floor(rng.int(size - len + 1) / align) * align;
  return { offset, length: len };
}

export function nextOp(rng: Prng, model: Model, shape: WorkloadShape): Op {
  const writable = model.writable();
  const all = [...model.volumes.values()];
  const roll = rng.int(100);
  if (writable.length === 0 || (roll < 6 && model.volumes.size < 12)) {
    return { kind: 'create', name: model.freshName('v'), size: randomSize(rng, shape) };
  }
  const v = rng.pick(writable);
  if (roll < 50) {
    const { offset, length } = randomRange(rng, v.data.length, shape.chunkSize, shape.align);
    return { kind: 'write', name: v.name, offset, data: rng.fill(Buffer.alloc(length)) };
  }
  if (roll < 58) {
    const { offset, length } = randomRange(rng, v.data.length, shape.chunkSize, shape.align);
    // The roll picks unmapping or zeroing in place, so seeds that drew no discard draw the same ops as before.
    return { kind: 'discard', name: v.name, offset, length, keep: roll >= 54 };
  }
  if (roll < 62) return { kind: 'grow', name: v.name, size: v.data.length + 4096 * (1 + rng.int(shape.chunkSize / 1024)) };
  if (roll < 70 && model.volumes.size < 16) return { kind: 'snapshot', name: v.name, snap: model.freshName('s') };
  if (roll < 76 && model.volumes.size < 16) {
    const src = rng.pick(all);
    const size = src.data.length + (rng.chance(0.3) ? 4096 * rng.int(8) : 0);
    return { kind: 'clone', source: src.name, name: model.freshName('c'), size };
  }
  if (roll < 82) return { kind: 'delete', name: rng.pick(all).name };
  if (roll < 92) return { kind: 'flush' };
  const snaps = all.filter((x) => x.readOnly);
  const bad = rng.pick(['write-snapshot', 'shrink', 'duplicate', 'past-end'] as const);
  if (bad === 'write-snapshot' && snaps.length > 0) return { kind: 'bad', what: bad, name: rng.pick(snaps).name };
  return { kind: 'bad', what: bad === 'write-snapshot' ? 'past-end' : bad, name: v.name };
}

const expectedCode = { 'write-snapshot': 'EROFS', shrink: 'EPERM', duplicate: 'EEXIST', 'past-end': 'EFBIG' } as const;

export function applyToPool(pool: Pool, op: Op): void {
  switch (op.kind) {
    case 'create':
      pool.createVolume(op.name, op.size);
      return;
    case 'write':
      pool.write(op.name, op.offset, op.data);
      return;
    case 'discard':
      if (op.keep) pool.zeroRange(op.name, op.offset, op.length);
      else pool.discard(op.name, op.offset, op.length);
      return;
    case 'grow':
      pool.grow(op.name, op.size);
      return;
    case 'snapshot':
      pool.fork(op.name, `${op.name}@${op.snap}`, { readOnly: true, parentId: pool.stat(op.name).id });
      return;
    case 'clone':
      pool.fork(op.source, op.name, { readOnly: false, size: op.size });
      return;
    case 'delete':
      pool.remove(op.name);
      return;
    case 'flush':
      pool.flush();
      return;
    case 'bad': {
      const size = pool.stat(op.name).size;
      const attempt = (): void => {
        if (op.what === 'write-snapshot') pool.write(op.name, 0, Buffer.alloc(512, 1));
        else if (op.what === 'shrink') pool.grow(op.name, size - 4096 > 0 ? size - 4096 : 0);
        else if (op.what === 'duplicate') pool.createVolume(op.name, 4096);
        else pool.write(op.name, size - 512, Buffer.alloc(1024, 1));
      };
      try {
        attempt();
      } catch (err) {
        const want = op.what === 'shrink' && size <= 4096 ? 'EINVAL' : expectedCode[op.what];
        if (err instanceof CowvolError && err.code === want) return;
        throw err;
      }
      throw new Error(`bad op ${op.what} on ${op.name} was accepted`);
    }
  }
}

export function describe(op: Op): string {
  switch (op.kind) {
    case 'write':
      return `write ${op.name} ${op.offset}+${op.data.length}`;
    case 'discard':
      return `${op.keep ? 'zero' : 'discard'} ${op.name} ${op.offset}+${op.length}`;
    default:
      return JSON.stringify(op);
  }
}
