/**
 * The CLI's commands, each a function from parsed arguments to an Output:
 * the text a person reads and the value `--json` prints. They open the pool
 * directly (holding its lock for the command's duration).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { fail } from '../errors.js';
import { checkPool } from '../blockstore/check.js';
import { PoolDir, initPoolDir, isPoolDir } from '../blockstore/pool-dir.js';
import type { Pool, VolumeInfo } from '../blockstore/pool.js';
import { cloneVolume, createSnapshot, deleteSnapshot, deleteVolume, listSnapshots, snapshotCount } from '../snapshots/snapshots.js';
import type { Parsed } from './args.js';
import { exportImage, importImage } from './image.js';
import { Progress } from './progress.js';
import { formatSize, parseSize } from './size.js';

export interface Output {
  text: string;
  json: unknown;
  /** Non-zero when the command ran but found something wrong (check). */
  exitCode?: number;
}

export interface Context {
  args: Parsed;
  poolDir: string;
  /** The daemon's open pool, when the command arrived over the admin API. */
  pool?: Pool;
}

function withPool<T>(ctx: Context, fn: (pool: Pool) => T): T {
  if (ctx.pool) return fn(ctx.pool);
  const cache = ctx.args.flags.get('cache-size');
  const handle = PoolDir.open(ctx.poolDir, cache === undefined ? {} : { cacheBytes: parseSize(String(cache), 'cache size') });
  try {
    return fn(handle.pool);
  } finally {
    handle.close();
  }
}

function arg(ctx: Context, i: number, what: string): string {
  const value = ctx.args.positional[i];
  if (value === undefined) fail('EINVAL', `missing ${what}: see 'cowvol help'`);
  return value;
}

function noExtra(ctx: Context, n: number): void {
  const extra = ctx.args.positional[n];
  if (extra !== undefined) fail('EINVAL', `unexpected argument '${extra}': see 'cowvol help'`);
}

function sizeFlag(ctx: Context, required: true): number;
function sizeFlag(ctx: Context, required: false): number | undefined;
function sizeFlag(ctx: Context, required: boolean): number | undefined {
  const v = ctx.args.flags.get('size');
  if (v === undefined) {
    if (required) fail('EINVAL', 'missing --size SIZE (e.g. --size 10G)');
    return undefined;
  }
  return parseSize(String(v));
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

function volumeJson(pool: Pool, v: VolumeInfo, exclusive?: number): Record<string, unknown> {
  return {
    name: v.name,
    size: v.size,
    chunkSize: v.chunkSize,
    allocatedBytes: v.allocatedBytes,
    ...(exclusive === undefined ? {} : { exclusiveBytes: exclusive }),
    snapshotCount: v.readOnly ? 0 : snapshotCount(pool, v.id),
    origin: v.origin || null,
    readOnly: v.readOnly,
    createdAt: new Date(v.createdAt).toISOString(),
  };
}

export function poolInit(ctx: Context): Output {
  noExtra(ctx, 0);
  if (ctx.pool) fail('EEXIST', `a pool already exists in ${ctx.poolDir}`);
  const chunk = ctx.args.flags.get('chunk-size');
  const capacity = ctx.args.flags.get('capacity');
  initPoolDir(ctx.poolDir, {
    chunkSize: chunk === undefined ? undefined : parseSize(String(chunk), 'chunk size'),
    capacity: capacity === undefined ? undefined : parseSize(String(capacity), 'capacity'),
  });
  return withPool(ctx, (pool) => ({
    text: `initialized pool ${ctx.poolDir} (chunk size ${formatSize(pool.chunkSize)})`,
    json: { pool: ctx.poolDir, chunkSize: pool.chunkSize, uuid: pool.uuid },
  }));
}

export function poolShow(ctx: Context): Output {
  noExtra(ctx, 0);
  return withPool(ctx, (pool) => {
    const s = pool.stats();
    const st = fs.statfsSync(ctx.poolDir);
    const hostFree = st.bavail * st.bsize;
    const capFree = s.capacityBytes > 0 ? s.freeChunks * s.chunkSize : Infinity;
    const free = Math.min(capFree, hostFree);
    const all = pool.list();
    const json = {
      pool: ctx.poolDir,
      uuid: s.uuid,
      chunkSize: s.chunkSize,
      capacityBytes: s.capacityBytes > 0 ? s.capacityBytes : null,
      usedBytes: s.usedBytes,
      freeBytes: free,
      volumes: all.filter((v) => !v.readOnly).length,
      snapshots: all.filter((v) => v.readOnly).length,
      metadataPages: s.metaPages,
      generation: s.generation,
    };
    const text = [
      `pool        ${ctx.poolDir}`,
      `uuid        ${s.uuid}`,
      `chunk size  ${formatSize(s.chunkSize)}`,
      `capacity    ${s.capacityBytes > 0 ? formatSize(s.capacityBytes) : 'the disk under the pool'}`,
      `used        ${formatSize(s.usedBytes)}`,
      `free        ${formatSize(free)}`,
      `volumes     ${json.volumes}`,
      `snapshots   ${json.snapshots}`,
      `metadata    ${s.metaPages} pages (${formatSize(s.metaPages * 4096)})`,
      `generation  ${s.generation}`,
    ].join('\n');
    return { text, json };
  });
}

export function volumeCreate(ctx: Context): Output {
  const name = arg(ctx, 0, 'NAME');
  noExtra(ctx, 1);
  const size = sizeFlag(ctx, true);
  return withPool(ctx, (pool) => {
    const v = pool.createVolume(name, size);
    return { text: `created volume ${v.name} (${formatSize(v.size)})`, json: volumeJson(pool, v) };
  });
}

export function volumeList(ctx: Context): Output {
  noExtra(ctx, 0);
  return withPool(ctx, (pool) => {
    const vols = pool.list().filter((v) => !v.readOnly);
    const rows = vols.map((v) => [v.name, formatSize(v.size), formatSize(v.allocatedBytes), String(snapshotCount(pool, v.id)), v.origin || '-']);
    return {
      text: vols.length === 0 ? 'no volumes' : table(['NAME', 'SIZE', 'ALLOCATED', 'SNAPSHOTS', 'ORIGIN'], rows),
      json: vols.map((v) => volumeJson(pool, v)),
    };
  });
}

export function volumeShow(ctx: Context): Output {
  const name = arg(ctx, 0, 'NAME');
  noExtra(ctx, 1);
  return withPool(ctx, (pool) => {
    const v = pool.stat(name);
    const json = volumeJson(pool, v, pool.exclusiveBytes(name));
    const text = Object.entries(json)
      .map(([k, val]) => `${k.padEnd(15)} ${typeof val === 'number' && /Bytes|size|Size/.test(k) ? `${formatSize(val)} (${val})` : String(val ?? '-')}`)
      .join('\n');
    return { text, json };
  });
}

export function volumeGrow(ctx: Context): Output {
  const name = arg(ctx, 0, 'NAME');
  noExtra(ctx, 1);
  const size = sizeFlag(ctx, true);
  return withPool(ctx, (pool) => {
    const v = pool.grow(name, size);
    return { text: `volume ${name} is now ${formatSize(v.size)}`, json: volumeJson(pool, v) };
  });
}

export function volumeDelete(ctx: Context): Output {
  const name = arg(ctx, 0, 'NAME');
  noExtra(ctx, 1);
  return withPool(ctx, (pool) => {
    deleteVolume(pool, name);
    return { text: `deleted volume ${name}`, json: { deleted: name } };
  });
}

export function snapshotCreate(ctx: Context): Output {
  const name = arg(ctx, 0, 'VOL@SNAP');
  noExtra(ctx, 1);
  return withPool(ctx, (pool) => {
    const s = createSnapshot(pool, name);
    return { text: `created snapshot ${s.name}`, json: volumeJson(pool, s) };
  });
}

export function snapshotList(ctx: Context): Output {
  const vol = ctx.args.positional[0];
  noExtra(ctx, 1);
  return withPool(ctx, (pool) => {
    const snaps = listSnapshots(pool, vol);
    const rows = snaps.map((s) => [s.name, formatSize(s.size), formatSize(s.allocatedBytes), new Date(s.createdAt).toISOString()]);
    return {
      text: snaps.length === 0 ? 'no snapshots' : table(['NAME', 'SIZE', 'ALLOCATED', 'CREATED'], rows),
      json: snaps.map((s) => volumeJson(pool, s)),
    };
  });
}

export function snapshotDelete(ctx: Context): Output {
  const name = arg(ctx, 0, 'VOL@SNAP');
  noExtra(ctx, 1);
  return withPool(ctx, (pool) => {
    deleteSnapshot(pool, name);
    return { text: `deleted snapshot ${name}`, json: { deleted: name } };
  });
}

export function clone(ctx: Context): Output {
  const source = arg(ctx, 0, 'SOURCE');
  const name = arg(ctx, 1, 'NEWVOL');
  noExtra(ctx, 2);
  const size = sizeFlag(ctx, false);
  return withPool(ctx, (pool) => {
    const v = cloneVolume(pool, source, name, size);
    return { text: `cloned ${source} to ${v.name} (${formatSize(v.size)})`, json: volumeJson(pool, v) };
  });
}

export function importCmd(ctx: Context): Output {
  const file = arg(ctx, 0, 'FILE');
  const vol = arg(ctx, 1, 'VOL');
  noExtra(ctx, 2);
  return withPool(ctx, (pool) => {
    const r = importImage(pool, file, vol);
    return { text: `imported ${formatSize(r.bytes)} into ${vol} (${formatSize(r.writtenBytes)} of data)`, json: { volume: vol, ...r } };
  });
}

export function exportCmd(ctx: Context): Output {
  const source = arg(ctx, 0, 'SOURCE');
  const file = arg(ctx, 1, 'FILE');
  noExtra(ctx, 2);
  return withPool(ctx, (pool) => {
    const r = exportImage(pool, source, file);
    return { text: `exported ${source} to ${file} (${formatSize(r.bytes)}, ${formatSize(r.dataBytes)} of data)`, json: { source, file, ...r } };
  });
}

export function check(ctx: Context): Output {
  noExtra(ctx, 0);
  return withPool(ctx, (pool) => {
    const progress = new Progress('check');
    const report = checkPool(pool, (done, total) => progress.update(done, total));
    progress.done();
    const summary = `${report.volumes} volumes and snapshots, ${report.pagesChecked} pages, ${report.chunksReferenced} chunks`;
    return {
      text: report.ok ? `clean: ${summary}` : [`${report.problems.length} problems found (${summary}):`, ...report.problems.map((p) => `  ${p}`)].join('\n'),
      json: report,
      exitCode: report.ok ? 0 : 1,
    };
  });
}

/** The walk-through the README starts with: idempotent, so it can be rerun. */
export function demo(ctx: Context): Output {
  noExtra(ctx, 0);
  const lines: string[] = [];
  if (!ctx.pool && !isPoolDir(ctx.poolDir)) {
    initPoolDir(ctx.poolDir);
    lines.push(`initialized pool ${ctx.poolDir}`);
  }
  withPool(ctx, (pool) => {
    if (!pool.has('demo')) {
      pool.createVolume('demo', 1 << 30);
      lines.push('created volume demo (1 GiB)');
      const image = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'cowvol-demo-')), 'image.raw');
      // 8 MiB image: text at the start, zeros in the middle, data at the end.
      const buf = Buffer.alloc(8 << 20);
      buf.write('hello from cowvol\n', 0);
      buf.fill('cowvol', 6 << 20);
      fs.writeFileSync(image, buf);
      const r = importImage(pool, image, 'demo');
      fs.rmSync(path.dirname(image), { recursive: true, force: true });
      lines.push(`imported an 8 MiB image into demo (${formatSize(r.writtenBytes)} allocated, zeros left sparse)`);
    }
    if (!pool.has('demo@first')) {
      createSnapshot(pool, 'demo@first');
      lines.push('snapshotted demo as demo@first');
    }
    if (!pool.has('demo-clone')) {
      cloneVolume(pool, 'demo@first', 'demo-clone', 2 * 2 ** 30);
      pool.write('demo-clone', 0, Buffer.from('hello from the clone\n'));
      pool.flush();
      lines.push('cloned demo@first to demo-clone (2 GiB) and wrote to the clone');
    }
    lines.push(`demo reads:       ${JSON.stringify(pool.read('demo', 0, 18).toString())}`);
    lines.push(`demo-clone reads: ${JSON.stringify(pool.read('demo-clone', 0, 21).toString())}`);
  });
  lines.push('', '$ cowvol volume list', volumeList({ ...ctx, args: { positional: [], flags: new Map() } }).text);
  return { text: lines.join('\n'), json: { pool: ctx.poolDir } };
}
