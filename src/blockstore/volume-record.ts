/**
 * A volume's (or snapshot's) record: name, size, chunk-map root and lineage.
 * Each record is one RECORD page holding a length-prefixed JSON body, so new
 * fields can be added without a format change.
 */
import { CowvolError } from '../errors.js';
import { HEADER_SIZE, PAGE_SIZE, PageKind, newPage } from './page.js';
import type { Tree } from './radix-tree.js';

export interface VolumeRecord {
  id: number;
  name: string;
  size: number;
  tree: Tree;
  readOnly: boolean;
  /** For a snapshot: the id of the volume it was taken of. */
  parentId: number;
  /** What it was cloned or snapshotted from, by name at that time ('' for none). */
  origin: string;
  createdAt: number;
  /** Chunks mapped in the tree, kept so that listing never walks a tree. */
  mapped: number;
  /** Small string facts a frontend keeps with the volume (the CSI name, a group); fixed at creation. */
  labels: Record<string, string>;
  /**
   * What the volume's map holds, as src/volumes names it ('block' for a raw
   * disk); the pool keeps it and forks copy it, but never reads it.
   */
  kind: string;
  /**
   * A filesystem volume's metadata tree (btree.ts), null for a raw disk.
   * Its chunk map is then the address space of its files' data, not a disk
   * of `size` bytes: `size` bounds what the map may hold.
   */
  fs: Tree | null;
}

/** A record as the pool holds it in memory. */
export interface Volume extends VolumeRecord {
  /** The record page the committed state (or this transaction) wrote; 0 if none yet. */
  page: number;
  /** The tree as of the last commit, or null if the volume is newer than that. */
  committedTree: Tree | null;
  /** Key space of this volume in the translation cache, fixed while the pool is open. */
  xlateId: number;
  /** Bumped whenever the volume gains a sharer (snapshot, clone). */
  shareEpoch: number;
}

const BODY = HEADER_SIZE + 4;
/** Records written before kinds existed are block volumes; block records leave the field out. */
export const DEFAULT_KIND = 'block';

export function encodeRecord(r: VolumeRecord): Buffer {
  const body = Buffer.from(
    JSON.stringify({
      id: r.id,
      name: r.name,
      size: r.size,
      root: r.tree.root,
      levels: r.tree.levels,
      readOnly: r.readOnly,
      parentId: r.parentId,
      origin: r.origin,
      createdAt: r.createdAt,
      mapped: r.mapped,
      ...(Object.keys(r.labels).length > 0 ? { labels: r.labels } : {}),
      ...(r.kind !== DEFAULT_KIND ? { kind: r.kind } : {}),
      ...(r.fs !== null ? { fsRoot: r.fs.root, fsLevels: r.fs.levels } : {}),
    }),
  );
  if (BODY + body.length > PAGE_SIZE) throw new CowvolError('EINVAL', `record of ${r.name} is too large`);
  const page = newPage(PageKind.RECORD, 0);
  page.writeUInt32LE(body.length, HEADER_SIZE);
  body.copy(page, BODY);
  return page;
}

export function decodeRecord(page: Buffer, pageNo: number): VolumeRecord {
  const length = page.readUInt32LE(HEADER_SIZE);
  try {
    if (BODY + length > PAGE_SIZE) throw new Error('length out of range');
    const j = JSON.parse(page.subarray(BODY, BODY + length).toString()) as Record<string, unknown>;
    const num = (k: string): number => {
      const v = j[k];
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new Error(`field ${k}`);
      return v;
    };
    const str = (k: string): string => {
      const v = j[k];
      if (typeof v !== 'string') throw new Error(`field ${k}`);
      return v;
    };
    return {
      id: num('id'),
      name: str('name'),
      size: num('size'),
      tree: { root: num('root'), levels: num('levels') },
      readOnly: j.readOnly === true,
      parentId: num('parentId'),
      origin: str('origin'),
      createdAt: num('createdAt'),
      mapped: num('mapped'),
      labels: labelsOf(j.labels),
      kind: j.kind === undefined ? DEFAULT_KIND : str('kind'),
      fs: j.fsRoot === undefined ? null : { root: num('fsRoot'), levels: num('fsLevels') },
    };
  } catch (err) {
    throw new CowvolError('ECORRUPT', `volume record page ${pageNo} is damaged: ${(err as Error).message}`);
  }
}

/** Records written before labels existed have none. */
function labelsOf(v: unknown): Record<string, string> {
  if (v === undefined) return {};
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('field labels');
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(v)) {
    if (typeof x !== 'string') throw new Error(`label ${k}`);
    out[k] = x;
  }
  return out;
}
