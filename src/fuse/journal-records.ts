/**
 * The records of the kill -9 journal (native/src/journal.c) as a successor
 * reads them: what a killed daemon changed and answered for since its last
 * commit, oldest first.
 *
 * A block or filesystem volume's mapping is one 32-byte slot. The rest are
 * long records (a head slot, then 24 payload bytes per slot): a
 * filesystem's tree item put or deleted, a cowfs mount's native first
 * write into a file chunk (a take) or write past a file's end, and the
 * FUSE request a unit of tree items came from (DONE). A take names the
 * file's chunk, not the volume's index: the file's region places it. A
 * native CoW break of a file's chunk is a take that also names the chunk
 * it replaced.
 *
 * Caveat: only the journal's own writer knows its slots are whole; a slot
 * whose seq is not its own stops the read there (journal_since), so a
 * record cut short by the kill is never seen.
 */
import type { ItemChange, MapChange } from '../blockstore/pool.js';
import { fail } from '../errors.js';
import { native } from '../native.js';

/** Block files' inode numbers are VOLUME_INO_BASE + the volume's id (block-files.ts). */
export const VOLUME_INO_BASE = 1000;

const SLOT = 32;
const PAYLOAD = 24;
const LONG = 1n << 63n;
const Kind = { ITEM_PUT: 1, ITEM_DEL: 2, FILE_TAKE: 3, FILE_END: 4, DONE: 5, FILE_BREAK: 6 } as const;

/** A cowfs first write into a reserved chunk at data offset `offset`, for chunk `chunk` of file `ino`; or a CoW break of the chunk at data offset `old` (-1 for a first write). */
export interface FileTake {
  take: true;
  id: number;
  ino: number;
  chunk: number;
  offset: number;
  old: number;
}

/** A cowfs write that made file `ino` at least `end` bytes long. */
export interface FileEnd {
  end: number;
  id: number;
  ino: number;
}

/** The tree items before it (since the last DONE) are cowfs request `done`'s (its FUSE unique), on volume `id`. */
export interface RequestDone {
  done: number;
  id: number;
}

export type JournalRecord = MapChange | ItemChange | FileTake | FileEnd | RequestDone;

/** What a killed daemon's journal holds past commit `generation`; null when it cannot say. */
export function journalRecords(fd: number, generation: number): JournalRecord[] | null {
  const raw = native.journalRead(fd, generation);
  return raw === null ? null : decodeRecords(raw);
}

export function decodeRecords(raw: Buffer): JournalRecord[] {
  const out: JournalRecord[] = [];
  const slots = Math.floor(raw.length / SLOT);
  for (let i = 0; i < slots; ) {
    const at = i * SLOT;
    const key = raw.readBigUInt64LE(at + 8);
    const offset = Number(raw.readBigInt64LE(at + 16));
    const old = Number(raw.readBigInt64LE(at + 24));
    if ((key & LONG) === 0n) {
      out.push({ id: Number(key >> 32n) - VOLUME_INO_BASE, index: Number(key & 0xffffffffn), offset, old });
      i++;
      continue;
    }
    const n = Math.ceil(offset / PAYLOAD);
    // A long record is appended whole before `next` moves past it: one cut short means a bug, not a kill.
    if (i + 1 + n > slots) fail('ECORRUPT', `journal: a long record at slot ${i} runs past the end`);
    const payload = Buffer.alloc(n * PAYLOAD);
    for (let p = 0; p < n; p++) raw.copy(payload, p * PAYLOAD, (i + 1 + p) * SLOT + 8, (i + 2 + p) * SLOT);
    out.push(longRecord(Number((key >> 48n) & 0x7fffn), Number(key & 0xffffffffffffn), old, payload.subarray(0, offset)));
    i += 1 + n;
  }
  return out;
}

function longRecord(kind: number, id: number, aux: number, payload: Buffer): JournalRecord {
  switch (kind) {
    case Kind.ITEM_PUT:
      return { id, key: Buffer.from(payload.subarray(0, aux)), value: Buffer.from(payload.subarray(aux)) };
    case Kind.ITEM_DEL:
      return { id, key: Buffer.from(payload), value: null };
    case Kind.FILE_TAKE:
    case Kind.FILE_BREAK:
      return {
        take: true,
        id,
        ino: Number(payload.readBigUInt64LE(0)),
        chunk: Number(payload.readBigUInt64LE(8)),
        offset: Number(payload.readBigInt64LE(16)),
        old: kind === Kind.FILE_BREAK ? Number(payload.readBigInt64LE(24)) : -1,
      };
    case Kind.FILE_END:
      return { end: Number(payload.readBigUInt64LE(8)), id, ino: Number(payload.readBigUInt64LE(0)) };
    case Kind.DONE:
      return { done: Number(payload.readBigUInt64LE(0)), id };
    default:
      return fail('ECORRUPT', `journal: a long record of unknown kind ${kind}`);
  }
}
