/**
 * `cowvol check`: recount every reference in the pool and compare.
 *
 * Steps, each a method of Checker: the two refcount trees, the directory and
 * its records, every chunk map (a page shared by several maps is walked once,
 * since its children are held by the page, not by each map), names, and at
 * last each count against the references found. A count with no reference is
 * a leak, a reference to a zero count is a use-after-free. Every page read is
 * checksummed on the way.
 *
 * The walk is a generator that yields after each volume, so a daemon can run
 * it in slices between FUSE requests (see src/volumes/long-ops.ts). It reads
 * the pool only through PoolView; a metadata change between two slices makes
 * the recount meaningless, which the caller detects with Pool.changeCount.
 *
 * Memory: arrays sized by the pool's high-water marks, 9 bytes per metadata
 * page (reference count, visited flag, mapped chunks below it) and 4 per data
 * chunk. That is the one place that grows with pool size; it runs only when
 * asked.
 */
import { CowvolError } from '../errors.js';
import { PageKind, SLOTS, pageKind, pageLevel, slot } from './page.js';
import type { Pool, PoolView, SpaceView } from './pool.js';
import { type Tree, capacity, levelsFor } from './radix-tree.js';
import type { Volume } from './volume-record.js';

export interface CheckReport {
  ok: boolean;
  problems: string[];
  /** What the pool's owner should know but is no fault of the pool as it stands. */
  notes: string[];
  volumes: number;
  pagesChecked: number;
  chunksReferenced: number;
}

export interface CheckProgress {
  done: number;
  total: number;
}

const MAX_PROBLEMS = 100;

/** Every slot of a page, zeros included, copied out before the walk goes deeper. */
function allSlots(buf: Buffer): number[] {
  return Array.from({ length: SLOTS }, (_, i) => slot(buf, i));
}

class Checker {
  readonly problems: string[] = [];
  pagesChecked = 0;
  private readonly pageRefs: Uint32Array;
  private readonly chunkRefs: Uint32Array;
  private readonly visited: Uint8Array;
  private readonly mappedUnder: Uint32Array;
  private readonly seenIds = new Set<number>();

  constructor(private readonly pool: PoolView) {
    this.pageRefs = new Uint32Array(pool.meta.highWater);
    this.chunkRefs = new Uint32Array(pool.data.highWater);
    this.visited = new Uint8Array(pool.meta.highWater);
    this.mappedUnder = new Uint32Array(pool.meta.highWater);
  }

  problem(msg: string): void {
    if (this.problems.length < MAX_PROBLEMS) this.problems.push(msg);
    else if (this.problems.length === MAX_PROBLEMS) this.problems.push('... more problems not shown');
  }

  /** Step 1: the refcount trees themselves; counts beyond a high-water mark are problems. */
  countSpaces(): void {
    const { meta, data } = this.pool;
    this.walkPlain(meta.tree, PageKind.META_SPACE, 'page refcounts', this.beyond('page refcounts', meta.highWater));
    this.walkPlain(data.tree, PageKind.DATA_SPACE, 'chunk refcounts', this.beyond('chunk refcounts', data.highWater));
  }

  /** Step 2: the directory, and that each entry's record page is the loaded record's. */
  walkDirectory(): void {
    this.walkPlain(this.pool.directory, PageKind.DIRECTORY, 'directory', (id, page) => {
      this.seenIds.add(id);
      this.refPage(page);
      this.readPage(page, PageKind.RECORD, 0, `record of volume ${id}`);
      const v = this.pool.volumeById(id);
      if (!v) this.problem(`directory names volume ${id} (page ${page}) but no such volume is loaded`);
      else if (v.page !== page && !this.pool.recordChanged(v)) this.problem(`volume ${v.name}: directory says page ${page}, record is at ${v.page}`);
    });
  }

  /** Step 3, once per volume: its record against the directory, and its chunk map. */
  walkVolume(v: Readonly<Volume>): void {
    const what = `volume ${v.name}`;
    const changed = this.pool.recordChanged(v);
    if (v.page === 0 && !changed) this.problem(`${what}: has no record page`);
    if (v.page !== 0 && !changed && !this.seenIds.has(v.id)) this.problem(`${what}: missing from the directory`);
    // A filesystem's map is its files' address space; size bounds what it maps, not where.
    const chunks = v.fs === null ? Math.ceil(v.size / this.pool.chunkSize) : capacity(v.tree.levels);
    if (v.fs === null && (capacity(v.tree.levels) < chunks || v.tree.levels < levelsFor(Math.max(1, chunks)))) {
      this.problem(`${what}: tree of ${v.tree.levels} levels cannot span ${chunks} chunks`);
    }
    let mapped = 0;
    if (v.tree.root !== 0) {
      this.refPage(v.tree.root);
      // A shared subtree may be limited by a smaller sharer; bound by the tree.
      mapped = this.walkMap(v.tree.root, v.tree.levels - 1, 0, chunks, what);
    }
    if (mapped !== v.mapped) this.problem(`${what}: record says ${v.mapped} chunks mapped, the map holds ${mapped}`);
    if (v.fs !== null) this.walkFs(v.fs, what);
    if (v.fs !== null && v.mapped * this.pool.chunkSize > v.size) this.problem(`${what}: maps ${v.mapped} chunks, more than its ${v.size} bytes`);
  }

  /** A filesystem tree: every page counted, a page shared between volumes walked once. */
  private walkFs(tree: Tree, what: string): void {
    if (tree.root === 0) return;
    this.refPage(tree.root);
    const levelOf = new Map<number, number>([[tree.root, tree.levels - 1]]);
    try {
      this.pool.fsWalk(tree, (page, level, children, entries) => {
        if (this.visited[page]) return false;
        this.visited[page] = 1;
        this.pagesChecked++;
        const want = levelOf.get(page);
        levelOf.delete(page);
        if (want !== undefined && want !== level) this.problem(`${what}: filesystem tree page ${page} is at level ${level}, expected ${want}`);
        if (entries === 0) this.problem(`${what}: filesystem tree page ${page} is empty`);
        for (const child of children) {
          this.refPage(child);
          levelOf.set(child, level - 1);
        }
        return true;
      });
    } catch (err) {
      this.problem(`${what}: filesystem tree: ${(err as Error).message}`);
    }
  }

  /** Step 4: no name twice. */
  checkNames(volumes: readonly Readonly<Volume>[]): void {
    const names = new Set<string>();
    for (const v of volumes) {
      if (names.has(v.name)) this.problem(`name ${v.name} is used twice`);
      names.add(v.name);
    }
  }

  /** Step 5: each count against the references found; returns the chunks referenced. */
  compareCounts(): number {
    this.compare(this.pool.meta, 'page', this.pageRefs);
    return this.compare(this.pool.data, 'chunk', this.chunkRefs);
  }

  private compare(space: SpaceView, noun: string, refs: Uint32Array): number {
    let used = 0;
    let referenced = 0;
    for (let n = space.base; n < space.highWater; n++) {
      const have = this.countOf(space, noun, n);
      if (have === null) continue;
      const want = refs[n] ?? 0;
      if (have !== 0) used++;
      if (want !== 0) referenced++;
      if (have === want) continue;
      if (want === 0) this.problem(`${noun} ${n} is leaked: refcount ${have}, referenced by nothing`);
      else if (have === 0) this.problem(`${noun} ${n} is referenced ${want} times but marked free`);
      else this.problem(`${noun} ${n} has refcount ${have} but is referenced ${want} times`);
    }
    if (used !== space.used) this.problem(`pool says ${space.used} ${noun}s in use, counted ${used}`);
    return referenced;
  }

  /** A count, or null when the refcount page holding it is damaged (reported, not thrown). */
  private countOf(space: SpaceView, noun: string, n: number): number | null {
    try {
      return space.count(n);
    } catch (err) {
      if (!(err instanceof CowvolError)) throw err;
      this.problem(`${noun} refcount of ${n}: ${err.message}`);
      return null;
    }
  }

  private readPage(page: number, kind: PageKind, level: number, what: string): Buffer | null {
    const high = this.pool.meta.highWater;
    if (page < 2 || page >= high) {
      this.problem(`${what}: page number ${page} is outside the metadata area (2..${high - 1})`);
      return null;
    }
    try {
      const buf = this.pool.page(page);
      this.pagesChecked++;
      if (pageKind(buf) !== kind) this.problem(`${what}: page ${page} is of kind ${pageKind(buf)}, expected ${kind}`);
      if (pageLevel(buf) !== level) this.problem(`${what}: page ${page} is at level ${pageLevel(buf)}, expected ${level}`);
      return buf;
    } catch (err) {
      if (!(err instanceof CowvolError)) throw err;
      this.problem(`${what}: ${err.message}`);
      return null;
    }
  }

  private refChunk(chunk: number, what: string): void {
    const high = this.pool.data.highWater;
    if (chunk < 1 || chunk >= high) this.problem(`${what}: chunk ${chunk} is outside the data area (1..${high - 1})`);
    else this.chunkRefs[chunk] = (this.chunkRefs[chunk] ?? 0) + 1;
  }

  private refPage(page: number): void {
    if (page >= 2 && page < this.pool.meta.highWater) this.pageRefs[page] = (this.pageRefs[page] ?? 0) + 1;
  }

  private beyond(what: string, limit: number) {
    return (index: number, value: number): void => {
      if (index >= limit) this.problem(`${what}: number ${index} has count ${value} but lies beyond the high-water mark ${limit}`);
    };
  }

  /** Unshared trees: every page referenced once; leaf values handed to `leafValue`. */
  private walkPlain(tree: Tree, kind: PageKind, what: string, leafValue: (index: number, value: number) => void): void {
    if (tree.root === 0) return;
    this.refPage(tree.root);
    const walk = (page: number, level: number, base: number): void => {
      const buf = this.readPage(page, kind, level, what);
      if (!buf) return;
      allSlots(buf).forEach((v, i) => {
        if (v === 0) return;
        const index = base + i * SLOTS ** level;
        if (level === 0) leafValue(index, v);
        else {
          this.refPage(v);
          walk(v, level - 1, index);
        }
      });
    };
    walk(tree.root, tree.levels - 1, 0);
  }

  /** A chunk map: shared pages walked once, their mapped counts memoized. */
  private walkMap(page: number, level: number, base: number, limit: number, what: string): number {
    if (this.visited[page]) return this.mappedUnder[page] ?? 0;
    const buf = this.readPage(page, PageKind.MAP, level, what);
    if (!buf) return 0;
    this.visited[page] = 1;
    let mapped = 0;
    const span = SLOTS ** level;
    allSlots(buf).forEach((v, i) => {
      if (v === 0) return;
      const index = base + i * span;
      if (index >= limit) this.problem(`${what}: entry for chunk index ${index} lies past the volume's end`);
      if (level === 0) {
        this.refChunk(v, what);
        mapped++;
      } else {
        this.refPage(v);
        mapped += this.walkMap(v, level - 1, index, limit, what);
      }
    });
    this.mappedUnder[page] = mapped;
    return mapped;
  }
}

/** The check, a volume at a time: yields progress after each, returns the report. */
export function* checkSteps(view: PoolView): Generator<CheckProgress, CheckReport, void> {
  const c = new Checker(view);
  c.countSpaces();
  c.walkDirectory();
  const volumes = view.volumes();
  let done = 0;
  for (const v of volumes) {
    c.walkVolume(v);
    yield { done: ++done, total: volumes.length };
  }
  c.checkNames(volumes);
  const chunksReferenced = c.compareCounts();
  const notes = view.discardedCommit === null ? [] : [`when the pool was opened, ${view.discardedCommit}`];
  return { ok: c.problems.length === 0, problems: c.problems, notes, volumes: volumes.length, pagesChecked: c.pagesChecked, chunksReferenced };
}

/** The whole check at once. */
export function checkPool(pool: Pool, progress?: (done: number, total: number) => void): CheckReport {
  const steps = checkSteps(pool.inspect());
  for (;;) {
    const r = steps.next();
    if (r.done === true) return r.value;
    progress?.(r.value.done, r.value.total);
  }
}
