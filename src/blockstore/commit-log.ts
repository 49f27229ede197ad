/**
 * The commit log: which metadata pages a commit wrote, each with its
 * checksum, so opening can tell a whole commit from a torn one.
 *
 * Why it exists: a commit makes its pages and its superblock durable with a
 * single flush of the metadata disk (pool.ts, `commit`), and a disk's cache
 * writes back in any order, so after power loss the superblock may be there
 * while some page it names is not. The log goes out in the same flush; the
 * superblock holds where the log starts, its length and a crc32 over its
 * entries. Opening reads the log and every page it names (the commit's own
 * pages, nothing else) and takes the commit only if all of them hold what
 * was written; otherwise it takes the previous superblock, which was
 * durable before this commit began.
 *
 * Layout: a chain of LOG pages. Slot 0 is the next log page (0: the last);
 * then pairs of (page number, that page's crc as sealPage stamped it).
 *
 * Caveat the pool keeps: a page named in the newest commit's log must not be
 * written again until a newer commit is durable. Pages the commit references
 * are not free before then anyway (space-map.ts); pages freed inside the
 * transaction leave the log (PageCache.forget); the log's own pages stay
 * reserved until the next commit completes.
 */
import zlib from 'node:zlib';

import { assert } from '../errors.js';
import type { Disk } from './disk.js';
import { HEADER_SIZE, PAGE_SIZE, PageKind, SLOTS, newPage, pageCrc, pageKind, pageProblem, sealPage, setSlot, slot } from './page.js';
import type { LogRef } from './superblock.js';

export const ENTRIES_PER_PAGE = Math.floor((SLOTS - 1) / 2);

/** Pages a log of this many entries takes. */
export function logPagesFor(entries: number): number {
  return Math.ceil(entries / ENTRIES_PER_PAGE);
}

/** A log that names nothing: a commit with no pages to check (pool init). */
export const EMPTY_LOG: LogRef = { start: 0, pages: 0, entries: 0, crc: 0 };

/**
 * Writes the log of `written` (page number -> crc) into `pages`, which the
 * caller reserved; the caller flushes. Entries go in page order, so opening
 * reads the commit's pages front to back.
 */
export function writeLog(disk: Disk, written: Map<number, number>, pages: number[]): LogRef {
  assert(pages.length === logPagesFor(written.size), `log of ${written.size} entries needs ${logPagesFor(written.size)} pages, got ${pages.length}`);
  const entries = [...written].sort((a, b) => a[0] - b[0]);
  let crc = 0;
  for (let p = 0; p < pages.length; p++) {
    const buf = newPage(PageKind.LOG, 0);
    setSlot(buf, 0, pages[p + 1] ?? 0);
    const part = entries.slice(p * ENTRIES_PER_PAGE, (p + 1) * ENTRIES_PER_PAGE);
    part.forEach(([pageNo, pageCrcValue], i) => {
      setSlot(buf, 1 + 2 * i, pageNo);
      setSlot(buf, 2 + 2 * i, pageCrcValue);
    });
    crc = zlib.crc32(entryBytes(buf, part.length), crc);
    const at = pages[p] as number;
    sealPage(buf, at);
    disk.write(buf, at * PAGE_SIZE);
  }
  return { start: pages[0] ?? 0, pages: pages.length, entries: entries.length, crc };
}

function entryBytes(buf: Buffer, count: number): Buffer {
  return buf.subarray(HEADER_SIZE + 4, HEADER_SIZE + 4 + 8 * count);
}

/**
 * Checks that the commit is whole: the log reads back as written and every
 * page it names holds the checksum it had. Returns the log's own pages (to
 * keep reserved) or why the commit is torn.
 */
export function checkCommit(disk: Disk, log: LogRef): { pages: number[] } | { torn: string } {
  if (log.pages !== logPagesFor(log.entries)) return { torn: `its log has ${log.pages} pages for ${log.entries} entries` };
  const buf = Buffer.allocUnsafe(PAGE_SIZE);
  const page = Buffer.allocUnsafe(PAGE_SIZE);
  const pages: number[] = [];
  let at = log.start;
  let crc = 0;
  for (let p = 0; p < log.pages; p++) {
    disk.read(buf, at * PAGE_SIZE);
    if (pageProblem(buf, at) !== null || pageKind(buf) !== PageKind.LOG) return { torn: `log page ${at} is not as written` };
    pages.push(at);
    const count = Math.min(ENTRIES_PER_PAGE, log.entries - p * ENTRIES_PER_PAGE);
    crc = zlib.crc32(entryBytes(buf, count), crc);
    for (let i = 0; i < count; i++) {
      const pageNo = slot(buf, 1 + 2 * i);
      disk.read(page, pageNo * PAGE_SIZE);
      if (pageProblem(page, pageNo) !== null || pageCrc(page) !== slot(buf, 2 + 2 * i)) return { torn: `page ${pageNo} is not as the commit wrote it` };
    }
    at = slot(buf, 0);
  }
  if (crc !== log.crc) return { torn: 'its log does not match the superblock' };
  return { pages };
}
