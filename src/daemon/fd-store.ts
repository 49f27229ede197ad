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
 * A clean stop also stores the cowfs mounts it detached (handed-mounts.ts):
 * a record memfd named cowvol-mounts and each connection as
 * cowvol-cowfs-N, N its place in the record, so the order systemd passes
 * them in does not matter. The next daemon takes them with the rest.
 */
import fs from 'node:fs';

import { fail } from '../errors.js';
import type { Handover } from '../fuse/session.js';
import { native } from '../native.js';
import { HANDED_MOUNTS_MAX } from './handed-mounts.js';

export const FD_NAMES = { fuse: 'cowvol-fuse', journal: 'cowvol-journal', info: 'cowvol-info' } as const;
/** The cowfs mounts a clean stop handed over: their record, and each connection by its place in it. */
const MOUNTS_NAME = 'cowvol-mounts';
const cowfsName = (i: number): string => `cowvol-cowfs-${i}`;
const COWFS_NAME = /^cowvol-cowfs-(\d+)$/;
/** sd_listen_fds(3): passed fds start here. */
const LISTEN_FDS_START = 3;

/** What a previous daemon left in the store. */
export interface Stored {
  mount: string;
  handover: Handover;
  journalFd: number;
  /** The cowfs mounts a clean stop stored: the record memfd, then the connections in its order; empty if none. */
  extra: number[];
}

/** How many cowfs connection names systemd passed this process: they stay in the store until forget takes them out. */
let passedCowfs = 0;

/** The connection systemd passed us ($LISTEN_FDS with our names), or null; other passed fds are closed. */
export function fromListenFds(env: NodeJS.ProcessEnv = process.env): Stored | null {
  if (Number(env.LISTEN_PID) !== process.pid) return null;
  const n = Number(env.LISTEN_FDS ?? 0);
  const names = (env.LISTEN_FDNAMES ?? '').split(':');
  const byName = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const name = names[i] ?? '';
    const ours = Object.values(FD_NAMES).includes(name as never) || name === MOUNTS_NAME || COWFS_NAME.test(name);
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
  const all = [...byName].filter(([name]) => COWFS_NAME.test(name)).map(([, fd]) => fd);
  const inOrder: number[] = [];
  for (let i = 0; byName.has(cowfsName(i)); i++) inOrder.push(byName.get(cowfsName(i)) as number);
  if (record !== undefined && inOrder.length === all.length) return [record, ...inOrder];
  for (const fd of record === undefined ? all : [record, ...all]) fs.closeSync(fd);
  return [];
}

/** A clean stop's cowfs mounts, `fds` as handedFds made them (record first), stored beside the connection. */
export function storeMounts(socket: string, fds: readonly number[]): void {
  const [record, ...connections] = fds;
  if (record === undefined) return;
  native.sdNotify(socket, `FDSTORE=1\nFDNAME=${MOUNTS_NAME}`, [record]);
  connections.forEach((fd, i) => native.sdNotify(socket, `FDSTORE=1\nFDNAME=${cowfsName(i)}`, [fd]));
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
 * ones. Only a clean stop stores cowfs connections, and the next daemon
 * takes them out here at its start, whatever it made of them, so a later
 * crash never passes on connections whose filesystems moved on since.
 */
export function forget(socket: string): void {
  const cowfs = Array.from({ length: Math.min(passedCowfs, HANDED_MOUNTS_MAX) }, (_, i) => cowfsName(i));
  const mounts = passedCowfs > 0 ? [MOUNTS_NAME] : [];
  for (const name of [...Object.values(FD_NAMES), ...mounts, ...cowfs]) native.sdNotify(socket, `FDSTOREREMOVE=1\nFDNAME=${name}`, []);
  passedCowfs = 0;
}
