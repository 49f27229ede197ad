/**
 * `cowvol check`: recount every reference in the pool and compare.
 *
 * Walks the two refcount trees, the directory, every record and every chunk
 * map (a page shared by several maps is walked once, since its children are
 * held by the page, not by each map). Each page and chunk must be counted
 * exactly as often as it is referenced; a count with no reference is a leak,
 * a reference to a zero count is a use-after-free. Every page read is
 * checksummed on the way.
 *
 * Memory: arrays sized by the pool's high-water marks, 9 bytes per metadata
 * page (reference count, visited flag, mapped chunks below it) and 4 per data
 * chunk. That is the one place that grows with pool size; it runs only when
 * asked.
 */
import { CowvolError } from '../errors.js';
import { PageKind, SLOTS, pageKind, pageLevel, slot } from './page.js';
import type { Pool } from './pool.js';
import { type Tree, capacity, levelsFor } from './radix-tree.js';
import type { SpaceMap } from './space-map.js';

export interface CheckReport {
  ok: boolean;
  problems: string[];
  volumes: number;
  pagesChecked: number;
  chunksReferenced: number;
}

const MAX_PROBLEMS = 100;

/** Every slot of a page, zeros included, copied out before the walk goes deeper. */
function allSlots(buf: Buffer): number[] {
  return Array.from({ length: SLOTS }, (_, i) => slot(buf, i));
}

export function checkPool(pool: Pool, progress?: (done: number, total: number) => void): CheckReport {
  const problems: string[] = [];
  const problem = (msg: string): void => {
    if (problems.length < MAX_PROBLEMS) problems.push(msg);
    else if (problems.length === MAX_PROBLEMS) problems.push('... more problems not shown');
  };
  const { meta, data, cache, catalog } = pool;
  const pageRefs = new Uint32Array(meta.highWater);
  const chunkRefs = new Uint32Array(data.highWater);
  const visited = new Uint8Array(meta.highWater);
  let pagesChecked = 0;

  const readPage = (page: number, kind: PageKind, level: number, what: string): Buffer | null => {
    if (page < 2 || page >= meta.highWater) {
      problem(`${what}: page number ${page} is outside the metadata area (2..${meta.highWater - 1})`);
      return null;
    }
    try {
      const buf = cache.get(page);
      pagesChecked++;
      if (pageKind(buf) !== kind) problem(`${what}: page ${page} is of kind ${pageKind(buf)}, expected ${kind}`);
      if (pageLevel(buf) !== level) problem(`${what}: page ${page} is at level ${pageLevel(buf)}, expected ${level}`);
      return buf;
    } catch (err) {
      if (err instanceof CowvolError) {
        problem(`${what}: ${err.message}`);
        return null;
      }
      throw err;
    }
  };

  const refChunk = (chunk: number, what: string): void => {
    if (chunk < 1 || chunk >= data.highWater) problem(`${what}: chunk ${chunk} is outside the data area (1..${data.highWater - 1})`);
    else chunkRefs[chunk] = (chunkRefs[chunk] ?? 0) + 1;
  };
  const refPage = (page: number): void => {
    if (page >= 2 && page < meta.highWater) pageRefs[page] = (pageRefs[page] ?? 0) + 1;
  };

  // Unshared trees: every page referenced once; leaf values handed to `leafValue`.
  const walkPlain = (tree: Tree, kind: PageKind, what: string, leafValue: (index: number, value: number) => void): void => {
    if (tree.root === 0) return;
    refPage(tree.root);
    const walk = (page: number, level: number, base: number): void => {
      const buf = readPage(page, kind, level, what);
      if (!buf) return;
      allSlots(buf).forEach((v, i) => {
        if (v === 0) return;
        const index = base + i * SLOTS ** level;
        if (level === 0) leafValue(index, v);
        else {
          refPage(v);
          walk(v, level - 1, index);
        }
      });
    };
    walk(tree.root, tree.levels - 1, 0);
  };

  const countBeyond = (what: string, limit: number) => (index: number, value: number) => {
    if (index >= limit) problem(`${what}: number ${index} has count ${value} but lies beyond the high-water mark ${limit}`);
  };
  walkPlain(meta.tree, PageKind.META_SPACE, 'page refcounts', countBeyond('page refcounts', meta.highWater));
  walkPlain(data.tree, PageKind.DATA_SPACE, 'chunk refcounts', countBeyond('chunk refcounts', data.highWater));

  const volumes = catalog.all();
  const seenIds = new Set<number>();
  walkPlain(catalog.directory, PageKind.DIRECTORY, 'directory', (id, page) => {
    seenIds.add(id);
    refPage(page);
    readPage(page, PageKind.RECORD, 0, `record of volume ${id}`);
    const v = catalog.byIdGet(id);
    if (!v) problem(`directory names volume ${id} (page ${page}) but no such volume is loaded`);
    else if (v.page !== page && !catalog.isChanged(v)) problem(`volume ${v.name}: directory says page ${page}, record is at ${v.page}`);
  });

  // Chunk maps: shared pages walked once; mapped counts memoized per page.
  const mappedUnder = new Uint32Array(meta.highWater);
  const walkMap = (page: number, level: number, base: number, limit: number, what: string): number => {
    if (visited[page]) return mappedUnder[page] ?? 0;
    const buf = readPage(page, PageKind.MAP, level, what);
    if (!buf) return 0;
    visited[page] = 1;
    let mapped = 0;
    const span = SLOTS ** level;
    allSlots(buf).forEach((v, i) => {
      if (v === 0) return;
      const index = base + i * span;
      if (index >= limit) problem(`${what}: entry for chunk index ${index} lies past the volume's end`);
      if (level === 0) {
        refChunk(v, what);
        mapped++;
      } else {
        refPage(v);
        mapped += walkMap(v, level - 1, index, limit, what);
      }
    });
    mappedUnder[page] = mapped;
    return mapped;
  };

  let done = 0;
  for (const v of volumes) {
    const what = `volume ${v.name}`;
    if (v.page === 0 && !catalog.isChanged(v)) problem(`${what}: has no record page`);
    if (v.page !== 0 && !catalog.isChanged(v) && !seenIds.has(v.id)) problem(`${what}: missing from the directory`);
    const chunks = Math.ceil(v.size / pool.chunkSize);
    if (capacity(v.tree.levels) < chunks || v.tree.levels < levelsFor(Math.max(1, chunks))) {
      problem(`${what}: tree of ${v.tree.levels} levels cannot span ${chunks} chunks`);
    }
    let mapped = 0;
    if (v.tree.root !== 0) {
      refPage(v.tree.root);
      // A shared subtree may be limited by a smaller sharer; bound by the tree.
      mapped = walkMap(v.tree.root, v.tree.levels - 1, 0, chunks, what);
    }
    if (mapped !== v.mapped) problem(`${what}: record says ${v.mapped} chunks mapped, the map holds ${mapped}`);
    progress?.(++done, volumes.length);
  }
  const names = new Set<string>();
  for (const v of volumes) {
    if (names.has(v.name)) problem(`name ${v.name} is used twice`);
    names.add(v.name);
  }

  // Each count against the references found; returns [numbers in use, numbers referenced].
  const compare = (space: SpaceMap, noun: string, refs: Uint32Array): [number, number] => {
    let used = 0;
    let referenced = 0;
    for (let n = space.base; n < space.highWater; n++) {
      const have = space.count(n);
      const want = refs[n] ?? 0;
      if (have !== 0) used++;
      if (want !== 0) referenced++;
      if (have === want) continue;
      if (want === 0) problem(`${noun} ${n} is leaked: refcount ${have}, referenced by nothing`);
      else if (have === 0) problem(`${noun} ${n} is referenced ${want} times but marked free`);
      else problem(`${noun} ${n} has refcount ${have} but is referenced ${want} times`);
    }
    if (used !== space.used) problem(`pool says ${space.used} ${noun}s in use, counted ${used}`);
    return [used, referenced];
  };
  compare(meta, 'page', pageRefs);
  const [, chunksReferenced] = compare(data, 'chunk', chunkRefs);
  return { ok: problems.length === 0, problems, volumes: volumes.length, pagesChecked, chunksReferenced };
}
