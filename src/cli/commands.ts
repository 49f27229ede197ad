/**
 * The CLI's commands: how each turns parsed arguments into one admin
 * operation (src/admin/protocol.ts) and how it prints that operation's
 * result, as text for a person or, with --json, as the value itself. Where
 * the operation runs (in the daemon, or here on a pool this process opened)
 * is main.ts's business; the rules are the volume service's.
 */
import path from 'node:path';

import { fail } from '../errors.js';
import type { ArgsOf, OpName, PoolSummary, ResultOf } from '../admin/protocol.js';
import type { VolumeView } from '../volumes/volumes.js';
import { formatSize, parseSize } from '../size.js';
import type { Parsed } from './args.js';

export interface Output {
  text: string;
  json: unknown;
  /** Non-zero when the command ran but found something wrong (check). */
  exitCode?: number;
}

export interface Command<K extends OpName = OpName> {
  usage: string;
  /** Flags that take a value, besides --pool and --cache-size. */
  values?: string[];
  /** Flags that take none, besides --json. */
  switches?: string[];
  op: K;
  args(p: Parsed): ArgsOf<K>;
  format(result: ResultOf<K>, args: ArgsOf<K>): Output;
  /** The label of the progress bar, for long operations. */
  progress?(args: ArgsOf<K>): string;
}

/** Keeps each command's types tied together, then lets the table hold them side by side. */
function command<K extends OpName>(c: Command<K>): Command {
  return c as unknown as Command;
}

function arg(p: Parsed, i: number, what: string): string {
  const value = p.positional[i];
  if (value === undefined) fail('EINVAL', `missing ${what}: see 'cowvol help'`);
  return value;
}

function noExtra(p: Parsed, n: number): void {
  const extra = p.positional[n];
  if (extra !== undefined) fail('EINVAL', `unexpected argument '${extra}': see 'cowvol help'`);
}

function sizeFlag(p: Parsed, required: true): number;
function sizeFlag(p: Parsed, required: false): number | undefined;
function sizeFlag(p: Parsed, required: boolean): number | undefined {
  const v = p.flags.get('size');
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

/** What --json shows of a volume or snapshot. */
export function volumeJson(v: VolumeView, exclusive?: number): Record<string, unknown> {
  return {
    name: v.name,
    kind: v.kind,
    size: v.size,
    chunkSize: v.chunkSize,
    allocatedBytes: v.allocatedBytes,
    ...(exclusive === undefined ? {} : { exclusiveBytes: exclusive }),
    snapshotCount: v.snapshotCount,
    origin: v.origin || null,
    readOnly: v.readOnly,
    createdAt: new Date(v.createdAt).toISOString(),
    ...(v.group === null ? {} : { group: v.group }),
  };
}

function poolText(s: PoolSummary): string {
  return [
    `pool        ${s.pool}`,
    `uuid        ${s.uuid}`,
    `chunk size  ${formatSize(s.chunkSize)}`,
    `capacity    ${s.capacityBytes !== null ? formatSize(s.capacityBytes) : 'the disk under the pool'}`,
    `used        ${formatSize(s.usedBytes)}`,
    `free        ${formatSize(s.freeBytes)}`,
    `volumes     ${s.volumes}`,
    `snapshots   ${s.snapshots}`,
    `metadata    ${s.metadataPages} pages (${formatSize(s.metadataPages * 4096)})`,
    `generation  ${s.generation}`,
    `daemon      ${s.pid !== null ? `pid ${s.pid}${s.keeperPid !== null ? `, keeper pid ${s.keeperPid}` : ', no keeper'}` : 'none (opened by this command)'}`,
    ...(s.pid !== null ? [`metrics     ${s.metricsAddress !== null ? `http://${s.metricsAddress}/metrics` : 'off'}`] : []),
  ].join('\n');
}

const none = (p: Parsed): Record<string, never> => {
  noExtra(p, 0);
  return {};
};

const one = (what: string) => (p: Parsed): { name: string } => {
  const name = arg(p, 0, what);
  noExtra(p, 1);
  return { name };
};

export const COMMANDS: Record<string, Command> = {
  'pool show': command({ usage: 'pool show', op: 'pool.show', args: none, format: (s) => ({ text: poolText(s), json: s }) }),
  'volume create': command({
    usage: 'volume create NAME --size SIZE [--kind block|fs]   (fs: a cowfs filesystem, served with cowvol mount)',
    values: ['size', 'kind'],
    op: 'volume.create',
    args: (p) => {
      const kind = p.flags.get('kind');
      return { ...one('NAME')(p), size: sizeFlag(p, true), ...(typeof kind === 'string' ? { kind } : {}) };
    },
    format: (v) => ({ text: `created ${v.kind === 'fs' ? 'filesystem ' : ''}volume ${v.name} (${formatSize(v.size)})`, json: volumeJson(v) }),
  }),
  'volume list': command({
    usage: 'volume list',
    op: 'volume.list',
    args: none,
    format: (vols) => ({
      text: vols.length === 0 ? 'no volumes' : table(['NAME', 'KIND', 'SIZE', 'ALLOCATED', 'SNAPSHOTS', 'ORIGIN'], vols.map((v) => [v.name, v.kind, formatSize(v.size), formatSize(v.allocatedBytes), String(v.snapshotCount), v.origin || '-'])),
      json: vols.map((v) => volumeJson(v)),
    }),
  }),
  'volume show': command({
    usage: 'volume show NAME',
    op: 'volume.show',
    args: one('NAME'),
    format: (v) => {
      const json = volumeJson(v, v.exclusiveBytes);
      const text = Object.entries(json)
        .map(([k, val]) => `${k.padEnd(15)} ${typeof val === 'number' && /Bytes|size|Size/.test(k) ? `${formatSize(val)} (${val})` : String(val ?? '-')}`)
        .join('\n');
      return { text, json };
    },
  }),
  'volume grow': command({
    usage: 'volume grow NAME --size SIZE',
    values: ['size'],
    op: 'volume.grow',
    args: (p) => ({ ...one('NAME')(p), size: sizeFlag(p, true) }),
    format: (v) => ({ text: `volume ${v.name} is now ${formatSize(v.size)}`, json: volumeJson(v) }),
  }),
  'volume delete': command({ usage: 'volume delete NAME', op: 'volume.delete', args: one('NAME'), format: (r) => ({ text: `deleted volume ${r.deleted}`, json: r }) }),
  'snapshot create': command({ usage: 'snapshot create VOL@SNAP', op: 'snapshot.create', args: one('VOL@SNAP'), format: (s) => ({ text: `created snapshot ${s.name}`, json: volumeJson(s) }) }),
  'snapshot list': command({
    usage: 'snapshot list [VOL]',
    op: 'snapshot.list',
    args: (p) => {
      noExtra(p, 1);
      const volume = p.positional[0];
      return volume === undefined ? {} : { volume };
    },
    format: (snaps) => ({
      text: snaps.length === 0 ? 'no snapshots' : table(['NAME', 'SIZE', 'ALLOCATED', 'CREATED'], snaps.map((s) => [s.name, formatSize(s.size), formatSize(s.allocatedBytes), new Date(s.createdAt).toISOString()])),
      json: snaps.map((s) => volumeJson(s)),
    }),
  }),
  'snapshot delete': command({ usage: 'snapshot delete VOL@SNAP', op: 'snapshot.delete', args: one('VOL@SNAP'), format: (r) => ({ text: `deleted snapshot ${r.deleted}`, json: r }) }),
  'group create': command({
    usage: 'group create GROUP VOL [VOL...]   (snapshots VOL@GROUP of every VOL at one instant)',
    op: 'group.create',
    args: (p) => {
      const name = arg(p, 0, 'GROUP');
      arg(p, 1, 'VOL');
      return { name, volumes: p.positional.slice(1) };
    },
    format: (made) => ({ text: `created group snapshot: ${made.map((m) => m.name).join(', ')}`, json: made.map((m) => volumeJson(m)) }),
  }),
  'group delete': command({ usage: 'group delete GROUP', op: 'group.delete', args: one('GROUP'), format: (r) => ({ text: `deleted ${r.deleted.join(', ')}`, json: r }) }),
  clone: command({
    usage: 'clone SOURCE NEWVOL [--size SIZE]   (SOURCE: VOL or VOL@SNAP)',
    values: ['size'],
    op: 'clone',
    args: (p) => {
      const source = arg(p, 0, 'SOURCE');
      const name = arg(p, 1, 'NEWVOL');
      noExtra(p, 2);
      const size = sizeFlag(p, false);
      return size === undefined ? { source, name } : { source, name, size };
    },
    format: (v, a) => ({ text: `cloned ${a.source} to ${v.name} (${formatSize(v.size)})`, json: volumeJson(v) }),
  }),
  import: command({
    usage: 'import FILE VOL',
    op: 'import',
    args: (p) => {
      const file = path.resolve(arg(p, 0, 'FILE'));
      const volume = arg(p, 1, 'VOL');
      noExtra(p, 2);
      return { file, volume };
    },
    progress: (a) => `import ${a.volume}`,
    format: (r, a) => ({ text: `imported ${formatSize(r.bytes)} into ${a.volume} (${formatSize(r.writtenBytes)} of data)`, json: { volume: a.volume, ...r } }),
  }),
  export: command({
    usage: 'export SOURCE FILE',
    op: 'export',
    args: (p) => {
      const source = arg(p, 0, 'SOURCE');
      const file = path.resolve(arg(p, 1, 'FILE'));
      noExtra(p, 2);
      return { source, file };
    },
    progress: (a) => `export ${a.source}`,
    format: (r, a) => ({ text: `exported ${a.source} to ${a.file} (${formatSize(r.bytes)}, ${formatSize(r.dataBytes)} of data)`, json: { source: a.source, file: a.file, ...r } }),
  }),
  check: command({
    usage: 'check',
    op: 'check',
    args: none,
    progress: () => 'check',
    format: (report) => {
      const summary = `${report.volumes} volumes and snapshots, ${report.pagesChecked} pages, ${report.chunksReferenced} chunks`;
      return {
        text: [
          report.ok ? `clean: ${summary}` : `${report.problems.length} problems found (${summary}):`,
          ...report.problems.map((p) => `  ${p}`),
          ...report.notes.map((n) => `note: ${n}`),
        ].join('\n'),
        json: report,
        exitCode: report.ok ? 0 : 1,
      };
    },
  }),
  mount: command({
    usage: 'mount SOURCE DIR [--read-only]   (serves a filesystem volume, or VOL@SNAP read-only, at DIR through the daemon)',
    switches: ['read-only'],
    op: 'mount',
    args: (p) => {
      const source = arg(p, 0, 'SOURCE');
      const dir = path.resolve(arg(p, 1, 'DIR'));
      noExtra(p, 2);
      return { source, dir, readOnly: p.flags.has('read-only') };
    },
    format: (m) => ({ text: `mounted ${m.source} at ${m.dir}${m.readOnly ? ' (read-only)' : ''}`, json: m }),
  }),
  unmount: command({
    usage: 'unmount DIR',
    op: 'unmount',
    args: (p) => {
      const dir = path.resolve(arg(p, 0, 'DIR'));
      noExtra(p, 1);
      return { dir };
    },
    format: (r) => ({ text: `unmounted ${r.unmounted}`, json: r }),
  }),
  mounts: command({
    usage: 'mounts   (the cowfs mounts the daemon serves)',
    op: 'mount.list',
    args: none,
    format: (list) => ({ text: list.length === 0 ? 'no cowfs mounts' : table(['SOURCE', 'DIR', 'MODE'], list.map((m) => [m.source, m.dir, m.readOnly ? 'ro' : 'rw'])), json: list }),
  }),
  demo: command({
    usage: 'demo   (init a pool if needed, then create, import, snapshot and clone a volume)',
    op: 'demo',
    args: none,
    progress: () => 'import demo',
    format: (r) => ({ text: r.lines.join('\n'), json: r }),
  }),
};
