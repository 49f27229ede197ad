/**
 * `cowvol check` for one filesystem volume: one ordered pass over its
 * metadata tree collects every inode, entry and region, then small steps
 * compare them: link counts, each directory's entry count and parent, names
 * that lead to inodes that exist, regions that lie inside their file's size
 * and overlap no other region or free region, the counters, and orphans.
 *
 * Memory: a few numbers per inode and per region, held only while it runs
 * (as the pool's check holds numbers per page and chunk).
 */
import type { Pool } from '../blockstore/pool.js';
import { ROOT_INO } from './fs-tree.js';
import { type Inode, S_IFDIR, decodeInode, isDir, isLink, isReg } from './inode.js';
import { ItemType, key } from './keys.js';
import { direntIno, direntType, nameOf } from './named-items.js';
import { regionSize, regionStart } from './regions.js';

const MAX_PROBLEMS = 100;

interface Seen {
  inodes: Map<number, Inode>;
  /** Names pointing at each inode. */
  names: Map<number, number>;
  /** Subdirectories and entries found under each directory; a directory's parent as its entry says. */
  subdirs: Map<number, number>;
  entries: Map<number, number>;
  parentOf: Map<number, number>;
  /** [first chunk, chunks, owner (0: free)] */
  extents: [number, number, number][];
  /** Highest region number per file. */
  lastRegion: Map<number, number>;
  symlinkBytes: Map<number, number>;
  orphans: Set<number>;
  counters: Buffer | undefined;
}

class FsChecker {
  readonly problems: string[] = [];
  private readonly seen: Seen = {
    inodes: new Map(),
    names: new Map(),
    subdirs: new Map(),
    entries: new Map(),
    parentOf: new Map(),
    extents: [],
    lastRegion: new Map(),
    symlinkBytes: new Map(),
    orphans: new Set(),
    counters: undefined,
  };

  constructor(
    private readonly pool: Pool,
    private readonly volume: number,
    private readonly what: string,
  ) {}

  problem(msg: string): void {
    if (this.problems.length < MAX_PROBLEMS) this.problems.push(`${this.what}: ${msg}`);
  }

  /** Step 1: one pass over the tree, in key order. */
  collect(): void {
    const s = this.seen;
    this.pool.fsRange(this.volume, key(0, ItemType.SUPER, 0), Buffer.alloc(16, 0xff), (k, v) => {
      const ino = k.readUIntBE(2, 6);
      const type = k[8];
      const offset = k.readUIntBE(9, 4) * 2 ** 24 + k.readUIntBE(13, 3);
      if (type === ItemType.SUPER) s.counters = Buffer.from(v);
      else if (type === ItemType.INODE) s.inodes.set(ino, decodeInode(ino, v));
      else if (type === ItemType.DIRENT) {
        const child = direntIno(v);
        s.names.set(child, (s.names.get(child) ?? 0) + 1);
        s.entries.set(ino, (s.entries.get(ino) ?? 0) + 1);
        if (direntType(v) === S_IFDIR >> 12) {
          s.subdirs.set(ino, (s.subdirs.get(ino) ?? 0) + 1);
          if (s.parentOf.has(child)) this.problem(`directory ${child} has two names`);
          s.parentOf.set(child, ino);
        }
        if (nameOf(ItemType.DIRENT, v).length === 0) this.problem(`an empty name in directory ${ino}`);
      } else if (type === ItemType.REGION) {
        s.extents.push([v.readUInt32LE(0), regionSize(offset), ino]);
        s.lastRegion.set(ino, offset);
      } else if (type === ItemType.FREE) s.extents.push([offset % 2 ** 32, regionSize(Math.floor(offset / 2 ** 32)), 0]);
      else if (type === ItemType.SYMLINK) s.symlinkBytes.set(ino, (s.symlinkBytes.get(ino) ?? 0) + v.length);
      else if (type === ItemType.ORPHAN) s.orphans.add(offset);
      else if (type !== ItemType.XATTR) this.problem(`item of unknown type ${type} at inode ${ino}`);
      if (ino !== 0 && type !== ItemType.INODE && !s.inodes.has(ino)) this.problem(`items of inode ${ino}, which does not exist`);
    });
  }

  /** Step 2: each inode's link count, and the names that lead nowhere. */
  checkLinks(): void {
    const s = this.seen;
    for (const [ino, i] of s.inodes) {
      const names = s.names.get(ino) ?? 0;
      if (isDir(i)) {
        const want = 2 + (s.subdirs.get(ino) ?? 0);
        if (i.nlink !== want) this.problem(`directory ${ino} has link count ${i.nlink}, expected ${want}`);
        if (i.entries !== (s.entries.get(ino) ?? 0)) this.problem(`directory ${ino} counts ${i.entries} entries, holds ${s.entries.get(ino) ?? 0}`);
        if (ino !== ROOT_INO && s.parentOf.get(ino) !== i.parent) this.problem(`directory ${ino} names ${i.parent} as parent, its entry is in ${s.parentOf.get(ino) ?? 'none'}`);
      } else if (i.nlink !== names) this.problem(`inode ${ino} has link count ${i.nlink}, ${names} names lead to it`);
      if (names === 0 && ino !== ROOT_INO && !s.orphans.has(ino)) this.problem(`inode ${ino} has no name and is not an orphan`);
      if (isLink(i) && (s.symlinkBytes.get(ino) ?? 0) !== i.size) this.problem(`symbolic link ${ino} holds ${s.symlinkBytes.get(ino) ?? 0} bytes, its size says ${i.size}`);
    }
    for (const ino of s.names.keys()) if (!s.inodes.has(ino)) this.problem(`a name leads to inode ${ino}, which does not exist`);
    for (const ino of s.orphans) if ((s.inodes.get(ino)?.nlink ?? 0) !== 0) this.problem(`orphan ${ino} still has links`);
  }

  /** Step 3: regions inside their file, apart from each other, and the chunks they map. */
  checkRegions(): void {
    const s = this.seen;
    const cs = this.pool.chunkSize;
    for (const [ino, last] of s.lastRegion) {
      const i = s.inodes.get(ino);
      if (i === undefined) continue;
      if (!isReg(i)) this.problem(`inode ${ino} has data regions but is not a regular file`);
      else if (regionStart(last) * cs >= Math.max(i.size, 1)) this.problem(`file ${ino} has region ${last} past its size ${i.size}`);
    }
    const sorted = [...s.extents].sort((a, b) => a[0] - b[0]);
    const mapped = new Map<number, number>();
    for (let n = 0; n < sorted.length; n++) {
      const [first, count, owner] = sorted[n] as [number, number, number];
      const next = sorted[n + 1];
      if (next !== undefined && first + count > next[0]) this.problem(`regions at chunks ${first} and ${next[0]} overlap`);
      let inRegion = 0;
      this.pool.forEachMapped(this.volume, () => inRegion++, first, first + count);
      if (owner === 0 && inRegion > 0) this.problem(`free region at chunk ${first} maps ${inRegion} chunks`);
      mapped.set(owner, (mapped.get(owner) ?? 0) + inRegion);
    }
    for (const [ino, i] of s.inodes) if (isReg(i) && i.chunks !== (mapped.get(ino) ?? 0)) this.problem(`file ${ino} counts ${i.chunks} chunks, its regions map ${mapped.get(ino) ?? 0}`);
    if (s.counters !== undefined) {
      const nextChunk = s.counters.readUIntLE(6, 6);
      const end = sorted.reduce((m, [first, count]) => Math.max(m, first + count), 0);
      if (end > nextChunk) this.problem(`a region ends at chunk ${end}, past the counter's ${nextChunk}`);
      const beyond = this.pool.nextMapped(this.volume, nextChunk, 2 ** 32 - 1);
      if (beyond >= 0) this.problem(`chunk index ${beyond} is mapped but was never part of a region`);
    }
  }

  /** Step 4: the counters and the root. */
  checkCounters(): void {
    const s = this.seen;
    if (s.counters === undefined) {
      this.problem('no SUPER item');
      return;
    }
    const nextIno = s.counters.readUIntLE(0, 6);
    const inodes = s.counters.readUIntLE(12, 6);
    if (inodes !== s.inodes.size) this.problem(`counts ${inodes} inodes, holds ${s.inodes.size}`);
    for (const ino of s.inodes.keys()) if (ino >= nextIno) this.problem(`inode ${ino} is at or past the next number ${nextIno}`);
    const root = s.inodes.get(ROOT_INO);
    if (root === undefined || !isDir(root)) this.problem('the root directory is missing');
  }
}

/** Problems found in a filesystem volume ([] when clean). */
export function checkFilesystem(pool: Pool, volume: number): string[] {
  const c = new FsChecker(pool, volume, `filesystem ${pool.stat(volume).name}`);
  c.collect();
  c.checkLinks();
  c.checkRegions();
  c.checkCounters();
  return c.problems;
}
