/**
 * The keeper, from the daemon's side: a process of its own (`cowvol keeper`,
 * started by the first `cowvol serve` in a session of its own) that holds
 * the FUSE connection while no daemon serves it, so a restarted daemon takes
 * the live mount over instead of mounting again. The protocol and the
 * keeper's rules are in native/src/keeper.c; this file speaks it.
 *
 * Caveat: every call blocks the event loop; the keeper answers at once, and
 * the daemon talks to it only while starting and stopping.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { CowvolError, fail } from '../errors.js';
import type { Handover } from '../fuse/session.js';
import { native } from '../native.js';

/** Seconds the keeper waits for a successor before it unmounts. */
export const DEFAULT_GRACE_SECONDS = 30;

export function keeperSocketPath(poolDir: string): string {
  return path.join(poolDir, 'cowvol.keeper');
}

/** A connection to the keeper as its owner: the daemon that serves. Closing it without `handOver` tells the keeper we died. */
export interface KeeperLink {
  sock: number;
  pid: number;
}

/** What a previous daemon left with the keeper. */
export interface Inheritance {
  link: KeeperLink;
  mount: string;
  handover: Handover;
  /** Its map-change journal (native/src/journal.c). */
  journalFd: number;
  /** It was killed rather than handing over: replay its journal before serving. */
  killed: boolean;
  /** The cowfs mounts it handed over (handed-mounts.ts: a record memfd, then connections); empty after a kill. */
  extra: number[];
}

function connect(poolDir: string): number | null {
  try {
    return native.unixConnect(keeperSocketPath(poolDir));
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENOENT' || code === 'ECONNREFUSED') return null;
    throw err;
  }
}

function ask(sock: number, op: string, payload: Buffer = Buffer.alloc(0), fds: number[] = []): [Buffer, number[]] {
  native.unixSend(sock, Buffer.concat([Buffer.from(op), payload]), fds);
  const answer = native.unixReceive(sock);
  if (answer === null) fail('EIO', 'the keeper closed the connection without answering');
  return answer;
}

function pidOf(answer: Buffer): number {
  const text = answer.toString('latin1');
  if (!text.startsWith('K')) fail('EPROTO', `the keeper answered '${text.slice(0, 1)}'`);
  return Number(text.slice(1));
}

/** The connection a stopped daemon left with the keeper, or null when no keeper holds one. Throws EBUSY when a daemon serves it. */
export function inherit(poolDir: string, keeperPid: number): Inheritance | null {
  const sock = connect(poolDir);
  if (sock === null) return null;
  const [answer, fds] = ask(sock, 'T');
  const kind = answer.toString('latin1', 0, 1);
  if ((kind !== 'F' && kind !== 'U') || fds.length < 2) {
    for (const fd of fds) fs.closeSync(fd);
    fs.closeSync(sock);
    if (kind === 'B') throw new CowvolError('EBUSY', 'another cowvol serve is serving this pool');
    return null;
  }
  const end = answer.indexOf(0, 1);
  return {
    link: { sock, pid: keeperPid },
    mount: answer.toString('utf8', 1, end),
    handover: { fd: fds[0] as number, init: Buffer.from(answer.subarray(end + 1)) },
    journalFd: fds[1] as number,
    killed: kind === 'U',
    extra: fds.slice(2),
  };
}

/** Starts a keeper in a session of its own and waits until it listens. */
export async function startKeeper(poolDir: string, graceSeconds: number): Promise<void> {
  const bin = process.argv[1];
  if (bin === undefined) fail('EINVAL', 'cannot tell which cowvol to start the keeper with');
  const child = spawn(process.execPath, [bin, 'keeper', '--pool', poolDir, '--grace', String(graceSeconds)], {
    detached: true,
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  await new Promise<void>((resolve, reject) => {
    let said = '';
    child.stdout?.on('data', (b: Buffer) => {
      said += b.toString();
      if (said.includes('ready')) resolve();
    });
    child.once('exit', (code) => reject(new CowvolError('EIO', `the keeper exited (${code}) before it listened`)));
  });
  child.stdout?.destroy();
  child.unref();
}

function described(mount: string, h: Handover): Buffer {
  return Buffer.concat([Buffer.from(mount), Buffer.from([0]), h.init]);
}

/**
 * Registers this daemon as the keeper's owner, giving it the connection (a
 * duplicate), its INIT and our journal, and `extra`: the cowfs mounts we
 * serve (handed-mounts.ts `liveFds`), for a successor after a kill.
 */
export function hold(poolDir: string, mount: string, h: Handover, journalFd: number, extra: number[] = []): KeeperLink {
  const sock = connect(poolDir);
  if (sock === null) fail('EIO', 'the keeper does not answer');
  const [answer] = ask(sock, 'H', described(mount, h), [h.fd, journalFd, ...extra]);
  return { sock, pid: pidOf(answer) };
}

/** What the keeper holds for us changed (a successor's own journal, a cowfs mount made or gone): all of it again, replacing the old. */
export function holdAgain(link: KeeperLink, mount: string, h: Handover, journalFd: number, extra: number[] = []): void {
  pidOf(ask(link.sock, 'H', described(mount, h), [h.fd, journalFd, ...extra])[0]);
}

/** A clean stop: the keeper holds the connection for the next daemon, and `extra` (the cowfs mounts, handed-mounts.ts) with it. */
export function handOver(link: KeeperLink, mount: string, h: Handover, journalFd: number, extra: number[] = []): void {
  ask(link.sock, 'D', described(mount, h), [h.fd, journalFd, ...extra]);
  fs.closeSync(link.sock);
}

/** Stopping for good (the daemon unmounted): the keeper lets go and exits. */
export function release(link: KeeperLink): void {
  ask(link.sock, 'S');
  fs.closeSync(link.sock);
}

/** `cowvol stop` with no daemon serving: a keeper waiting for a successor unmounts and exits. False when there is none. */
export function stopKeeper(poolDir: string): boolean {
  const sock = connect(poolDir);
  if (sock === null) return false;
  try {
    const [answer] = ask(sock, 'S');
    if (answer.toString('latin1', 0, 1) === 'B') throw new CowvolError('EBUSY', 'a daemon serves this pool: stop it through its socket');
    return true;
  } finally {
    fs.closeSync(sock);
  }
}

/** The keeper process itself (`cowvol keeper`). */
export function runKeeper(poolDir: string, graceSeconds: number): string {
  return native.keeperRun(keeperSocketPath(poolDir), Math.round(graceSeconds * 1000));
}
