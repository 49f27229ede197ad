/**
 * A regular file's bytes: reads, writes, discards and seeks in file offsets,
 * turned into the volume map's chunk indices through the file's regions
 * (regions.ts). The caller owns the inode: these functions change its
 * `chunks` count and leave saving it (and its size) to the operation.
 *
 * The volume's room is checked before anything is written: a write that
 * would map more chunks than the volume's size allows fails whole with
 * ENOSPC, as ext4 does when its blocks run out.
 */
import { FS_SPACE_CHUNKS } from '../blockstore/pool.js';
import { assert, fail } from '../errors.js';
import type { FsTree } from './fs-tree.js';
import type { Inode } from './inode.js';
import { ItemType, key } from './keys.js';
import { classOf, regionOf, regionSize, regionStart } from './regions.js';

/** A run of file bytes inside one region: where it starts in the file, how long, and region k's first chunk index (null: no region). */
interface Piece {
  at: number;
  n: number;
  k: number;
  base: number | null;
}

/** Largest file: regions and offsets stay far inside a safe integer. */
export const MAX_FILE_BYTES = 2 ** 44;

export class FileData {
  private readonly cs: number;

  constructor(private readonly tree: FsTree) {
    this.cs = tree.pool.chunkSize;
  }

  read(inode: Inode, offset: number, length: number): Buffer {
    const end = Math.min(inode.size, offset + length);
    if (end <= offset) return Buffer.alloc(0);
    const parts: Buffer[] = [];
    for (const p of this.pieces(inode.ino, offset, end - offset)) {
      parts.push(p.base === null ? Buffer.alloc(p.n) : this.tree.pool.read(this.tree.volume, this.virtual(p, p.at), p.n));
    }
    return Buffer.concat(parts);
  }

  write(inode: Inode, offset: number, data: Buffer): void {
    if (offset + data.length > MAX_FILE_BYTES) fail('EFBIG', `a file ends at ${MAX_FILE_BYTES} bytes`);
    const pieces = this.pieces(inode.ino, offset, data.length);
    const fresh = pieces.reduce((sum, p) => sum + this.unmappedIn(p), 0);
    this.tree.pool.roomFor(this.tree.volume, fresh);
    for (const p of pieces) {
      const base = p.base ?? this.allocate(inode.ino, p.k);
      const piece: Piece = { ...p, base };
      this.tree.pool.write(this.tree.volume, this.virtual(piece, p.at), data.subarray(p.at - offset, p.at - offset + p.n));
    }
    inode.chunks += fresh;
  }

  /** The range reads as zeros afterwards; whole chunks are unmapped. */
  discard(inode: Inode, from: number, to: number): void {
    if (to <= from) return;
    for (const p of this.pieces(inode.ino, from, to - from)) {
      if (p.base === null) continue;
      const start = this.virtual(p, p.at);
      const whole = this.mappedIn(Math.ceil(start / this.cs), Math.floor((start + p.n) / this.cs));
      this.tree.pool.discard(this.tree.volume, start, p.n);
      inode.chunks -= whole;
    }
  }

  /**
   * Copies `length` bytes from src at `from` to dst at `to` (the two may be
   * one inode; the ranges do not overlap). Where both offsets sit at the
   * same place in a chunk, whole chunks are shared, not copied: a reflink,
   * which a write to either file then breaks. The edges are copied.
   */
  copy(src: Inode, from: number, dst: Inode, to: number, length: number): void {
    const cs = this.cs;
    let head = length;
    if ((from - to) % cs === 0) head = Math.min(length, (cs - (to % cs)) % cs);
    const whole = Math.floor((length - head) / cs);
    this.copyBytes(src, from, dst, to, head);
    if (whole > 0) this.shareWhole(src, (from + head) / cs, dst, (to + head) / cs, whole);
    const done = head + whole * cs;
    this.copyBytes(src, from + done, dst, to + done, length - done);
  }

  /** Shares `count` whole chunks of src from its chunk `srcFirst` to dst's chunk `first`, in runs the regions keep contiguous. */
  private shareWhole(src: Inode, srcFirst: number, dst: Inode, first: number, count: number): void {
    let run: { from: number; to: number; n: number } | null = null;
    const flush = (): void => {
      if (run === null) return;
      const before = this.mappedIn(run.to, run.to + run.n);
      this.tree.pool.shareChunks(this.tree.volume, run.from, run.to, run.n);
      dst.chunks += this.mappedIn(run.to, run.to + run.n) - before;
      run = null;
    };
    for (let i = 0; i < count; i++) {
      const s = regionOf(srcFirst + i);
      const sBase = this.base(src.ino, s.k);
      const d = regionOf(first + i);
      const dBase = this.base(dst.ino, d.k) ?? (sBase === null ? null : this.allocate(dst.ino, d.k));
      if (dBase === null) continue; // a hole onto a hole
      const from = sBase === null ? -1 : sBase + s.within;
      const to = dBase + d.within;
      if (from < 0) {
        flush();
        // The source holds nothing here: the destination must read zeros.
        if (this.mappedIn(to, to + 1) === 1) {
          this.tree.pool.discard(this.tree.volume, to * this.cs, this.cs);
          dst.chunks--;
        }
        continue;
      }
      if (run !== null && run.from + run.n === from && run.to + run.n === to) run.n++;
      else {
        flush();
        run = { from, to, n: 1 };
      }
    }
    flush();
  }

  private copyBytes(src: Inode, from: number, dst: Inode, to: number, length: number): void {
    const piece = 1 << 20;
    for (let done = 0; done < length; done += piece) {
      const n = Math.min(piece, length - done);
      const data = this.read(src, from + done, n);
      // Past src's end reads nothing: the rest is zeros, as a copy of a hole.
      this.write(dst, to + done, data.length === n ? data : Buffer.concat([data, Buffer.alloc(n - data.length)]));
    }
  }

  /** Frees the regions that lie wholly at or past `size` bytes (the rest of the tail was discarded by the caller). */
  dropRegionsFrom(inode: Inode, size: number): void {
    const firstChunk = Math.ceil(size / this.cs);
    const keep = firstChunk === 0 ? 0 : regionOf(firstChunk - 1).k + 1;
    const doomed: [number, number][] = [];
    this.tree.items(inode.ino, ItemType.REGION, keep, (k, _key, value) => {
      doomed.push([k, value.readUInt32LE(0)]);
    });
    for (const [k, base] of doomed) this.free(inode, k, base);
  }

  /**
   * The file chunks that [offset, offset+length) touches and that lie wholly
   * below the file's size and in a region, with each one's index in the
   * volume's map: what the addon may serve for this file without us.
   */
  wholeChunks(inode: Inode, offset: number, length: number): { chunk: number; index: number }[] {
    const out: { chunk: number; index: number }[] = [];
    const first = Math.floor(offset / this.cs);
    const end = Math.min(Math.floor(inode.size / this.cs), Math.ceil((offset + length) / this.cs));
    let region: { k: number; base: number | null } | null = null;
    for (let c = first; c < end; c++) {
      const { k, within } = regionOf(c);
      if (region === null || region.k !== k) region = { k, base: this.base(inode.ino, k) };
      if (region.base !== null) out.push({ chunk: c, index: region.base + within });
    }
    return out;
  }

  /**
   * Where the file ends, in chunks: the chunk holding its end when the end
   * falls inside one that is mapped (with its map index), and of the
   * `ahead` chunks wholly past the end, those before the first one mapped
   * (normally all: only a crash's journal replay maps past a file's end).
   */
  edge(inode: Inode, ahead: number): { partial: { chunk: number; index: number } | null; unmapped: number[] } {
    const past = Math.ceil(inode.size / this.cs);
    const unmapped: number[] = [];
    for (let c = past; c < past + ahead && this.indexOf(inode.ino, c) === null; c++) unmapped.push(c);
    if (inode.size % this.cs === 0) return { partial: null, unmapped };
    const index = this.indexOf(inode.ino, past - 1);
    return { partial: index === null ? null : { chunk: past - 1, index }, unmapped };
  }

  /**
   * Up to `max` unmapped chunks of a sparse file that lie wholly inside it,
   * looked for among `window` chunks from `from` on: holes a first write
   * may fill without changing the size. `run`: none unless the chunk before
   * `from` is mapped (or `from` is the first).
   */
  holesInside(inode: Inode, from: number, max: number, window: number, run: boolean): number[] {
    const whole = Math.floor(inode.size / this.cs);
    const out: number[] = [];
    // Every chunk up to the end mapped: nothing to look for (the common case, an unsparse file), checked first.
    if (inode.chunks >= Math.ceil(inode.size / this.cs)) return out;
    if (run && from > 0 && this.indexOf(inode.ino, from - 1) === null) return out;
    const to = Math.min(whole, from + window);
    for (let c = Math.max(0, from); c < to && out.length < max; ) {
      const { k, within } = regionOf(c);
      const n = Math.min(regionSize(k) - within, to - c);
      const base = this.base(inode.ino, k);
      const mapped = new Set(base === null ? [] : this.mapped(base + within, base + within + n));
      for (let i = 0; i < n && out.length < max; i++) if (base === null || !mapped.has(base + within + i)) out.push(c + i);
      c += n;
    }
    return out;
  }

  /** The map index of file chunk `c` if it is mapped, else null. */
  private indexOf(ino: number, c: number): number | null {
    const { k, within } = regionOf(c);
    const base = this.base(ino, k);
    return base !== null && this.mappedIn(base + within, base + within + 1) === 1 ? base + within : null;
  }

  /** The file shrinks to `size`: what lay past it reads as zeros and no chunk wholly past it stays mapped. */
  truncate(inode: Inode, size: number): void {
    // To the end of the old last chunk, whose bytes past the old end are zeros already, so it goes whole.
    this.discard(inode, size, Math.ceil(inode.size / this.cs) * this.cs);
    this.dropRegionsFrom(inode, size);
  }

  /** The volume map index of file chunk `c`, its region made if it has none: where a first write served without us goes. */
  indexFor(inode: Inode, c: number): number {
    const { k, within } = regionOf(c);
    return (this.base(inode.ino, k) ?? this.allocate(inode.ino, k)) + within;
  }

  /** SEEK_DATA / SEEK_HOLE over the file's mapped chunks; ENXIO past the end, as ext4. */
  seek(inode: Inode, offset: number, data: boolean): number {
    if (offset >= inode.size) fail('ENXIO', `offset ${offset} is at or past the end (${inode.size})`);
    for (let c = Math.floor(offset / this.cs); c * this.cs < inode.size; ) {
      const { k, within } = regionOf(c);
      const base = this.base(inode.ino, k);
      const left = regionSize(k) - within;
      if (base === null) {
        if (!data) return Math.max(offset, c * this.cs);
        c += left;
        continue;
      }
      const found = data ? this.tree.pool.nextMapped(this.tree.volume, base + within, base + within + left) : this.nextHole(base + within, base + within + left);
      if (found >= 0) return Math.min(inode.size, Math.max(offset, (regionStart(k) + found - base) * this.cs));
      c += left;
    }
    if (data) fail('ENXIO', `no data past offset ${offset}`);
    return inode.size;
  }

  private nextHole(from: number, to: number): number {
    for (let i = from; i < to; i++) if (this.tree.pool.nextMapped(this.tree.volume, i, i + 1) !== i) return i;
    return -1;
  }

  /** Unmaps chunks that lie in no file's region: in free regions, or past every region handed out. */
  dropStray(): void {
    const free: [number, number][] = [];
    this.tree.items(0, ItemType.FREE, 0, (offset) => {
      free.push([offset % 2 ** 32, regionSize(Math.floor(offset / 2 ** 32))]);
    });
    free.push([this.tree.counters().nextChunk, FS_SPACE_CHUNKS]);
    for (const [first, count] of free) this.unmapAll(first, Math.min(FS_SPACE_CHUNKS, first + count));
  }

  // ---- regions -------------------------------------------------------------

  private base(ino: number, k: number): number | null {
    const v = this.tree.get(key(ino, ItemType.REGION, k));
    return v === undefined ? null : v.readUInt32LE(0);
  }

  private pieces(ino: number, offset: number, length: number): Piece[] {
    const out: Piece[] = [];
    const bases = new Map<number, number | null>();
    for (let at = offset, guard = 0; at < offset + length; guard++) {
      assert(guard < 1 << 20, 'a range split into too many regions');
      const { k } = regionOf(Math.floor(at / this.cs));
      const regionEnd = (regionStart(k) + regionSize(k)) * this.cs;
      const n = Math.min(offset + length, regionEnd) - at;
      if (!bases.has(k)) bases.set(k, this.base(ino, k));
      out.push({ at, n, k, base: bases.get(k) ?? null });
      at += n;
    }
    return out;
  }

  /** The volume byte offset of file offset `at`, inside piece p's region. */
  private virtual(p: Piece, at: number): number {
    assert(p.base !== null, 'a piece without a region has no place in the map');
    const c = Math.floor(at / this.cs);
    return (p.base + c - regionStart(p.k)) * this.cs + (at % this.cs);
  }

  /** Chunks of the piece that a write would map afresh. */
  private unmappedIn(p: Piece): number {
    const first = Math.floor(p.at / this.cs);
    const count = Math.floor((p.at + p.n - 1) / this.cs) - first + 1;
    if (p.base === null) return count;
    const start = this.virtual(p, first * this.cs) / this.cs;
    return count - this.mappedIn(start, start + count);
  }

  /** The mapped chunk indices in [from, to), collected first so the caller may change the map. */
  private mapped(from: number, to: number): number[] {
    const out: number[] = [];
    this.tree.pool.forEachMapped(this.tree.volume, (i) => out.push(i), from, to);
    return out;
  }

  private mappedIn(from: number, to: number): number {
    return this.mapped(from, to).length;
  }

  /** Unmaps every chunk index in [from, to); returns how many were mapped. */
  private unmapAll(from: number, to: number): number {
    const indices = this.mapped(from, to);
    for (const i of indices) this.tree.pool.discard(this.tree.volume, i * this.cs, this.cs);
    return indices.length;
  }

  /** A region for file region k: a free one of its class, or never-used space. It reads as zeros. */
  private allocate(ino: number, k: number): number {
    const cls = classOf(k);
    const size = regionSize(k);
    let base = -1;
    this.tree.items(0, ItemType.FREE, cls * 2 ** 32, (offset) => {
      if (offset < (cls + 1) * 2 ** 32) base = offset - cls * 2 ** 32;
      return true;
    });
    if (base >= 0) this.tree.del(key(0, ItemType.FREE, cls * 2 ** 32 + base));
    else {
      const counters = this.tree.counters();
      if (counters.nextChunk + size > FS_SPACE_CHUNKS) fail('ENOSPC', 'the volume has no address space left for file data');
      base = counters.nextChunk;
      this.tree.saveCounters({ ...counters, nextChunk: counters.nextChunk + size });
    }
    // What a crash left mapped here (writes replayed for a file whose creation was lost) must not show.
    this.unmapAll(base, base + size);
    const v = Buffer.alloc(4);
    v.writeUInt32LE(base);
    this.tree.put(key(ino, ItemType.REGION, k), v);
    return base;
  }

  private free(inode: Inode, k: number, base: number): void {
    inode.chunks -= this.unmapAll(base, base + regionSize(k));
    this.tree.del(key(inode.ino, ItemType.REGION, k));
    // Discarded before it is listed free, so no commit ever lists a region that still holds data.
    this.tree.put(key(0, ItemType.FREE, classOf(k) * 2 ** 32 + base), Buffer.alloc(0));
  }
}
