/**
 * The admin operations, each a typed call into the volume service. The
 * daemon runs them for the socket; the CLI runs the very same functions on
 * a pool it opened itself when no daemon holds it. Arguments arrive as JSON,
 * so each is checked for its type before use (EINVAL, nothing changed).
 *
 * Long operations (import, export, check) run in slices and report progress
 * through `progress`; see src/volumes/slices.ts.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { fail } from '../errors.js';
import { type CheckReport, checkPool, checkSteps } from '../blockstore/check.js';
import { checkFilesystem } from '../cowfs/fs-check.js';
import { hostFreeBytes, poolFreeBytes } from '../blockstore/pool-dir.js';
import type { Pool } from '../blockstore/pool.js';
import { formatSize } from '../size.js';
import { exportImage, importImage } from '../volumes/image.js';
import { type ProgressFn, yieldSlice } from '../volumes/slices.js';
import type { Volumes } from '../volumes/volumes.js';
import type { MountService } from '../fuse/cowfs-mount.js';
import type { ArgsOf, OpName, Operations, PoolSummary, ResultOf } from './protocol.js';

export interface OpContext {
  volumes: Volumes;
  poolDir: string;
  /** The daemon running the operation; absent when the CLI runs it on a pool it opened. */
  daemon?: DaemonInfo;
}

export interface DaemonInfo {
  pid: number;
  keeperPid(): number | null;
  /** Where /metrics answers (HOST:PORT), or null when it does not. */
  metricsAddress(): string | null;
  /** Starts stopping for good (drain, commit, unmount, keeper gone); the reply goes out first. */
  stop(): void;
  /** The cowfs mounts it serves. */
  mounts: MountService;
}

type Impl<K extends OpName> = (ctx: OpContext, args: ArgsOf<K>, progress: ProgressFn) => Promise<ResultOf<K>> | ResultOf<K>;

const OPERATIONS: { [K in OpName]: { args: ArgSpec; run: Impl<K> } } = {
  'pool.show': { args: {}, run: (ctx) => poolSummary(ctx) },
  'volume.create': { args: { name: 'string', size: 'number', kind: 'string?' }, run: (ctx, a) => ctx.volumes.create(a.name, { size: a.size, kind: a.kind }) },
  'volume.list': { args: {}, run: (ctx) => ctx.volumes.list() },
  'volume.show': { args: { name: 'string' }, run: (ctx, a) => ({ ...ctx.volumes.get(a.name), exclusiveBytes: ctx.volumes.exclusiveBytes(a.name) }) },
  'volume.grow': { args: { name: 'string', size: 'number' }, run: (ctx, a) => ctx.volumes.grow(a.name, a.size) },
  'volume.delete': {
    args: { name: 'string' },
    run: (ctx, a) => {
      ctx.volumes.delete(a.name);
      return { deleted: a.name };
    },
  },
  'snapshot.create': { args: { name: 'string' }, run: (ctx, a) => ctx.volumes.snapshotLive(a.name) },
  'snapshot.list': { args: { volume: 'string?' }, run: (ctx, a) => ctx.volumes.listSnapshots(a.volume) },
  'snapshot.delete': {
    args: { name: 'string' },
    run: (ctx, a) => {
      ctx.volumes.deleteSnapshot(a.name);
      return { deleted: a.name };
    },
  },
  'group.create': { args: { name: 'string', volumes: 'string[]' }, run: (ctx, a) => ctx.volumes.createGroupLive(a.name, a.volumes) },
  'group.delete': { args: { name: 'string' }, run: (ctx, a) => ({ deleted: ctx.volumes.deleteGroup(a.name) }) },
  clone: { args: { source: 'string', name: 'string', size: 'number?' }, run: (ctx, a) => ctx.volumes.cloneLive(a.source, a.name, { size: a.size }) },
  import: { args: { file: 'string', volume: 'string' }, run: (ctx, a, p) => importImage(ctx.volumes.pool, absolute(a.file), a.volume, p) },
  export: { args: { source: 'string', file: 'string' }, run: (ctx, a, p) => exportImage(ctx.volumes.pool, a.source, absolute(a.file), p) },
  check: { args: {}, run: (ctx, _a, p) => checkInSlices(ctx.volumes.pool, p) },
  demo: { args: {}, run: (ctx, _a, p) => demo(ctx, p) },
  'daemon.stop': { args: {}, run: (ctx) => stopDaemon(ctx) },
  mount: { args: { source: 'string', dir: 'string', readOnly: 'boolean?' }, run: (ctx, a) => mounts(ctx).mount(a.source, absolute(a.dir), a.readOnly === true) },
  unmount: {
    args: { dir: 'string' },
    run: async (ctx, a) => {
      await mounts(ctx).unmount(absolute(a.dir));
      return { unmounted: a.dir };
    },
  },
  'mount.list': { args: {}, run: (ctx) => mounts(ctx).list() },
};

/** Mounts live in a daemon: a CLI on its own has no process to serve them. */
function mounts(ctx: OpContext): MountService {
  if (ctx.daemon === undefined) fail('ENXIO', "no daemon serves this pool: start 'cowvol serve' first, it serves the mounts");
  return ctx.daemon.mounts;
}

function stopDaemon(ctx: OpContext): { pid: number; keeperPid: number | null } {
  if (ctx.daemon === undefined) fail('ENXIO', 'no daemon serves this pool');
  const answer = { pid: ctx.daemon.pid, keeperPid: ctx.daemon.keeperPid() };
  // After this reply: stopping closes the admin socket, which waits for this connection.
  setImmediate(() => ctx.daemon?.stop());
  return answer;
}

export function isOpName(op: string): op is OpName {
  return Object.hasOwn(OPERATIONS, op);
}

/** Runs one operation with arguments as they came off the wire. */
export async function runOperation<K extends OpName>(ctx: OpContext, op: K, args: unknown, progress: ProgressFn = () => {}): Promise<Operations[K][1]> {
  const spec = OPERATIONS[op];
  const checked = checkArgs(op, spec.args, args) as ArgsOf<K>;
  return await (spec.run as Impl<K>)(ctx, checked, progress);
}

// ---- argument checking -------------------------------------------------------------

type ArgType = 'string' | 'number' | 'string[]' | 'string?' | 'number?' | 'boolean?';
type ArgSpec = Record<string, ArgType>;

function checkArgs(op: string, spec: ArgSpec, args: unknown): Record<string, unknown> {
  if (typeof args !== 'object' || args === null || Array.isArray(args)) fail('EINVAL', `${op}: args must be an object`);
  const given = args as Record<string, unknown>;
  for (const key of Object.keys(given)) if (!(key in spec)) fail('EINVAL', `${op}: unknown argument '${key}'`);
  for (const [key, type] of Object.entries(spec)) {
    const v = given[key];
    if (v === undefined && type.endsWith('?')) continue;
    const ok = type.startsWith('string[]') ? Array.isArray(v) && v.every((x) => typeof x === 'string') : typeof v === type.replace('?', '');
    if (!ok) fail('EINVAL', `${op}: argument '${key}' must be a ${type.replace('?', '')}`);
  }
  return given;
}

/** The daemon runs elsewhere: a relative path would name another file. */
function absolute(file: string): string {
  if (!path.isAbsolute(file)) fail('EINVAL', `${file}: give an absolute path`);
  return file;
}

// ---- the operations that are more than one call -------------------------------------

function poolSummary(ctx: OpContext): PoolSummary {
  const pool = ctx.volumes.pool;
  const s = pool.stats();
  const all = pool.list();
  return {
    pool: ctx.poolDir,
    uuid: s.uuid,
    chunkSize: s.chunkSize,
    capacityBytes: s.capacityBytes > 0 ? s.capacityBytes : null,
    usedBytes: s.usedBytes,
    freeBytes: poolFreeBytes(s, hostFreeBytes(ctx.poolDir)),
    volumes: all.filter((v) => !v.readOnly).length,
    snapshots: all.filter((v) => v.readOnly).length,
    metadataPages: s.metaPages,
    generation: s.generation,
    pid: ctx.daemon?.pid ?? null,
    keeperPid: ctx.daemon?.keeperPid() ?? null,
    metricsAddress: ctx.daemon?.metricsAddress() ?? null,
  };
}

/** Passes that may race with a metadata change before check finishes in one go. */
const CHECK_ATTEMPTS = 3;

/**
 * Check, a volume per slice. A metadata change between slices (a write that
 * allocated, a commit) makes the counts of that pass meaningless, so the pass
 * starts over; after CHECK_ATTEMPTS such passes the last one runs without
 * yielding, which FUSE waits for.
 */
async function checkInSlices(pool: Pool, progress: ProgressFn): Promise<CheckReport> {
  for (let attempt = 0; attempt < CHECK_ATTEMPTS; attempt++) {
    const start = pool.changeCount;
    const steps = checkSteps(pool.inspect());
    for (;;) {
      const r = steps.next();
      if (r.done === true) return withFilesystems(pool, r.value);
      progress(r.value.done, r.value.total);
      await yieldSlice();
      if (pool.changeCount !== start) break;
    }
  }
  return withFilesystems(pool, checkPool(pool, progress));
}

/** The pool's report with each filesystem volume's own check (cowfs/fs-check.ts) added, once the pool itself is sound. */
function withFilesystems(pool: Pool, report: CheckReport): CheckReport {
  if (!report.ok) return report;
  const problems = pool
    .list()
    .filter((v) => v.kind === 'fs')
    .flatMap((v) => checkFilesystem(pool, v.id));
  return { ...report, ok: problems.length === 0, problems };
}

/** The walk-through the README starts with: idempotent, so it can be rerun. */
async function demo(ctx: OpContext, progress: ProgressFn): Promise<{ lines: string[] }> {
  const { volumes } = ctx;
  const pool = volumes.pool;
  const lines: string[] = [];
  if (volumes.find('demo') === undefined) {
    volumes.create('demo', { size: 1 << 30 });
    lines.push('created volume demo (1 GiB)');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cowvol-demo-'));
    const image = path.join(dir, 'image.raw');
    // 8 MiB image: text at the start, zeros in the middle, data at the end.
    const buf = Buffer.alloc(8 << 20);
    buf.write('hello from cowvol\n', 0);
    buf.fill('cowvol', 6 << 20);
    fs.writeFileSync(image, buf);
    const r = await importImage(pool, image, 'demo', progress);
    fs.rmSync(dir, { recursive: true, force: true });
    lines.push(`imported an 8 MiB image into demo (${formatSize(r.writtenBytes)} allocated, zeros left sparse)`);
  }
  if (volumes.find('demo@first') === undefined) {
    volumes.createSnapshot('demo@first');
    lines.push('snapshotted demo as demo@first');
  }
  if (volumes.find('demo-clone') === undefined) {
    volumes.clone('demo@first', 'demo-clone', { size: 2 * 2 ** 30 });
    pool.write('demo-clone', 0, Buffer.from('hello from the clone\n'));
    pool.flush();
    lines.push('cloned demo@first to demo-clone (2 GiB) and wrote to the clone');
  }
  lines.push(`demo reads:       ${JSON.stringify(pool.read('demo', 0, 18).toString())}`);
  lines.push(`demo-clone reads: ${JSON.stringify(pool.read('demo-clone', 0, 21).toString())}`);
  return { lines };
}
