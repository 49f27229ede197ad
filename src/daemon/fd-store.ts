/**
 * systemd's file descriptor store as the holder of the FUSE connection
 * between daemons (`cowvol serve --fd-store`, what systemd/cowvol.service
 * runs), in place of the keeper process (keeper.ts). The daemon stores
 * three fds with the manager (sd_notify FDSTORE=1): the /dev/fuse
 * connection, its map-change journal, and a small memfd with the mount
 * point and the kernel's INIT request. When the unit restarts (a restart,
 * an upgrade, Restart=on-failure after a crash), systemd hands them to the
 * next daemon through $LISTEN_FDS, which replays the journal and takes the
 * connection over as it would from the keeper. `cowvol stop` removes them
 * (FDSTOREREMOVE=1) after unmounting; `systemctl stop` lets systemd close
 * them, which ends the connection.
 *
 * The cowfs mounts go in beside them (handed-mounts.ts): a record memfd
 * named cowvol-mounts and each connection as cowvol-cowfs-N, N its place
 * in the record, so the order systemd passes them in does not matter. A
 * serving daemon keeps them up to date as mounts come and go, with the
 * open counts (cowvol-opens), so a crash hands them on too; a clean stop
 * replaces them with the mounts it detached. The next daemon takes them
 * with the rest.
 */
import fs from 'node:fs';

import { fail } from '../errors.js';
import type { Handover } from '../fuse/session.js';
import { native } from '../native.js';
import { HANDED_MOUNTS_MAX } from './handed-mounts.js';

export const FD_NAMES = { fuse: 'cowvol-fuse', journal: 'cowvol-journal', info: 'cowvol-info' } as const;
/** The cowfs mounts handed on: their record, the open counts (from a serving daemon), and each connection by its place in the record. */
const MOUNTS_NAME = 'cowvol-mounts';
const OPENS_NAME = 'cowvol-opens';
const cowfsName = (i: number): string => `cowvol-cowfs-${i}`;
const COWFS_NAME = /^cowvol-cowfs-(\d+)$/;
/** sd_listen_fds(3): passed fds start here. */
const LISTEN_FDS_START = 3;

/** What a previous daemon left in the store. */
export interface Stored {
  mount: string;
  handover: Handover;
  journalFd: number;
  /** The cowfs mounts stored: the record memfd, the open counts if a serving daemon stored them, then the connections in the record's order; empty if none. */
  extra: number[];
}

/** How many cowfs connection names the store may hold (passed to this process, or stored by it), and whether a record may be there: forget takes them out. */
let passedCowfs = 0;
let recordStored = false;

/** The connection systemd passed us ($LISTEN_FDS with our names), or null; other passed fds are closed. */
export function fromListenFds(env: NodeJS.ProcessEnv = process.env): Stored | null {
  if (Number(env.LISTEN_PID) !== process.pid) return null;
  const n = Number(env.LISTEN_FDS ?? 0);
  const names = (env.LISTEN_FDNAMES ?? '').split(':');
  const byName = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const name = names[i] ?? '';
    const ours = Object.values(FD_NAMES).includes(name as never) || name === MOUNTS_NAME || name === OPENS_NAME || COWFS_NAME.test(name);
    if (ours && !byName.has(name)) byName.set(name, LISTEN_FDS_START + i);
    else fs.closeSync(LISTEN_FDS_START + i);
  }
  const fuse = byName.get(FD_NAMES.fuse);
  const journal = byName.get(FD_NAMES.journal);
  const info = byName.get(FD_NAMES.info);
  if (fuse === undefined || journal === undefined || info === undefined) {
    for (const fd of byName.values()) fs.closeSync(fd);
    return null;
  }
  const extra = storedMounts(byName);
  passedCowfs = Math.max(0, ...[...byName.keys()].map((name) => Number(COWFS_NAME.exec(name)?.[1] ?? -1) + 1));
  recordStored = byName.has(MOUNTS_NAME) || byName.has(OPENS_NAME);
  const bytes = Buffer.alloc(fs.fstatSync(info).size);
  fs.readSync(info, bytes, 0, bytes.length, 0);
  fs.closeSync(info);
  const end = bytes.indexOf(0);
  if (end <= 0) fail('EPROTO', 'the stored connection record is damaged');
  return { mount: bytes.toString('utf8', 0, end), handover: { fd: fuse, init: Buffer.from(bytes.subarray(end + 1)) }, journalFd: journal, extra };
}

/** The record and connections in their order; a gap in the numbering (a lost fd) or no record voids them all. */
function storedMounts(byName: Map<string, number>): number[] {
  const record = byName.get(MOUNTS_NAME);
  const opens = byName.get(OPENS_NAME);
  const all = [...byName].filter(([name]) => COWFS_NAME.test(name)).map(([, fd]) => fd);
  const inOrder: number[] = [];
  for (let i = 0; byName.has(cowfsName(i)); i++) inOrder.push(byName.get(cowfsName(i)) as number);
  if (record !== undefined && inOrder.length === all.length) return [record, ...(opens === undefined ? [] : [opens]), ...inOrder];
  for (const fd of [record, opens, ...all]) if (fd !== undefined) fs.closeSync(fd);
  return [];
}

/**
 * Stores cowfs mounts beside the connection, replacing those stored before:
 * a clean stop's (`fds` as handedFds made them: record, connections) or a
 * serving daemon's (as liveFds made them: record, open counts, connections).
 */
export function storeMounts(socket: string, fds: readonly number[], withOpens = false): void {
  forgetMounts(socket);
  const [record, ...rest] = fds;
  if (record === undefined) return;
  recordStored = true;
  const connections = withOpens ? rest.slice(1) : rest;
  native.sdNotify(socket, `FDSTORE=1\nFDNAME=${MOUNTS_NAME}`, [record]);
  if (withOpens && rest[0] !== undefined) native.sdNotify(socket, `FDSTORE=1\nFDNAME=${OPENS_NAME}`, [rest[0]]);
  connections.forEach((fd, i) => native.sdNotify(socket, `FDSTORE=1\nFDNAME=${cowfsName(i)}`, [fd]));
  passedCowfs = connections.length;
}

/** Takes every cowfs mount we or a predecessor stored out of the store (each message only if there may be something to take). */
function forgetMounts(socket: string): void {
  const cowfs = Array.from({ length: Math.min(passedCowfs, HANDED_MOUNTS_MAX) }, (_, i) => cowfsName(i));
  const records = recordStored ? [MOUNTS_NAME, OPENS_NAME] : [];
  for (const name of [...records, ...cowfs]) native.sdNotify(socket, `FDSTOREREMOVE=1\nFDNAME=${name}`, []);
  passedCowfs = 0;
  recordStored = false;
}

/** Replaces what the store holds with this daemon's connection (a duplicate fd), journal and record. */
export function store(socket: string, mount: string, h: Handover, journalFd: number): void {
  forget(socket);
  const info = native.memfdWith(Buffer.concat([Buffer.from(mount), Buffer.from([0]), h.init]));
  try {
    native.sdNotify(socket, `FDSTORE=1\nFDNAME=${FD_NAMES.fuse}`, [h.fd]);
    native.sdNotify(socket, `FDSTORE=1\nFDNAME=${FD_NAMES.journal}`, [journalFd]);
    native.sdNotify(socket, `FDSTORE=1\nFDNAME=${FD_NAMES.info}`, [info]);
  } finally {
    fs.closeSync(info);
  }
}

/**
 * Empties the store of our fds: stopping for good, or before storing newer
 * ones. The cowfs mounts a predecessor stored go too, whatever this daemon
 * made of them: it stores its own as it serves them.
 */
export function forget(socket: string): void {
  for (const name of Object.values(FD_NAMES)) native.sdNotify(socket, `FDSTOREREMOVE=1\nFDNAME=${name}`, []);
  forgetMounts(socket);
}
