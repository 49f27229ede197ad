/**
 * Where a file's data lives: runs of chunk indices ("regions") in the
 * volume's own chunk map, which for a filesystem volume is an address space
 * of 2^32 chunks rather than a disk. A file's chunk c lies in region k, at
 * a fixed place in it; the REGION item (ino, k) names the region's first
 * index in the map. So file data rides on the block machinery unchanged:
 * in-place writes, CoW breaks after a snapshot, the addon's fast path, the
 * kill -9 journal, discard and SEEK_DATA are the map's.
 *
 * Regions grow with the file: 16 chunks, 32, 64 ... up to 16384, then all
 * 16384 (at 64 KiB chunks: 1 MiB for the first, 1 GiB from the eleventh
 * on), so a small file costs one small region and a large one few items.
 * A freed region goes on a free list of its size class (FREE items), taken
 * before the never-used space past `nextChunk`; every region is discarded
 * when it is handed out, so whatever a crash left mapped in it (a journal
 * replay of writes whose namespace change was lost) never shows.
 */
export const FIRST_REGION = 16;
const DOUBLINGS = 10;
export const LARGEST_REGION = FIRST_REGION * 2 ** DOUBLINGS;
/** Chunks before the first region of the largest size. */
const GROWN = FIRST_REGION * (2 ** DOUBLINGS - 1);

/** Size class of region k (its size is FIRST_REGION << class). */
export function classOf(k: number): number {
  return Math.min(k, DOUBLINGS);
}

export function regionSize(k: number): number {
  return FIRST_REGION * 2 ** classOf(k);
}

/** The file chunk where region k starts. */
export function regionStart(k: number): number {
  return k <= DOUBLINGS ? FIRST_REGION * (2 ** k - 1) : GROWN + (k - DOUBLINGS) * LARGEST_REGION;
}

/** The region holding file chunk c, and c's place in it. */
export function regionOf(c: number): { k: number; within: number } {
  if (c >= GROWN) {
    const k = DOUBLINGS + Math.floor((c - GROWN) / LARGEST_REGION);
    return { k, within: c - regionStart(k) };
  }
  const k = Math.floor(Math.log2(c / FIRST_REGION + 1));
  // log2 of an exact power can round either way; settle it by the starts.
  const fixed = regionStart(k + 1) <= c ? k + 1 : regionStart(k) > c ? k - 1 : k;
  return { k: fixed, within: c - regionStart(fixed) };
}
