/**
 * Runs `cowvol serve` as a real child process on a pool directory and a
 * mount point, for tests that go through the kernel: fio, loop devices,
 * mkfs. Stops it with SIGTERM (or SIGKILL) and makes sure nothing stays
 * mounted.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import fs from 'node:fs';

import type { Test } from 'tap';

import { isMountPoint } from '../../src/host/mounts.js';
import { tmpDir } from './pools.js';

export const bin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'bin', 'cowvol.js');

export function cli(pool: string, ...args: string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args, '--pool', pool], { encoding: 'utf8' });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Where the pool's daemon serves /metrics (`pool show`), or null when it does not. */
export function metricsAddress(pool: string): string | null {
  const r = cli(pool, 'pool', 'show', '--json');
  if (r.status !== 0) throw new Error(r.stderr);
  return (JSON.parse(r.stdout) as { metricsAddress: string | null }).metricsAddress;
}

export class Daemon {
  readonly pool: string;
  readonly mount: string;
  readonly child: ChildProcess;
  log = '';
  private exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(pool: string, mount: string, extra: string[]) {
    this.pool = pool;
    this.mount = mount;
    // Tests of a restart ask for a keeper; the rest stop for good on SIGTERM, as without one.
    const grace = extra.includes('--handover-grace') ? [] : ['--handover-grace', '0'];
    // Tests run two at a time: only a test of metrics listens, on a port of its own.
    const metrics = extra.includes('--metrics-address') ? [] : ['--metrics-address', 'none'];
    this.child = spawn(process.execPath, [bin, 'serve', '--pool', pool, '--mount', mount, '--log-level', 'info', ...grace, ...metrics, ...extra], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.child.stderr?.on('data', (d: Buffer) => (this.log += d.toString()));
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  /** Resolves once the daemon logs that it serves; rejects if it exits first. No clock: a loaded machine is slow. */
  static async start(pool: string, mount: string, extra: string[] = []): Promise<Daemon> {
    const d = new Daemon(pool, mount, extra);
    if (await d.logged('"msg":"serving"')) return d;
    throw new Error(`daemon did not start: ${d.log}`);
  }

  /** Whether the daemon logged `text` (true once it has, false if it exits without). */
  logged(text: string): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const look = (): void => {
        if (!this.log.includes(text)) return;
        this.child.stderr?.off('data', look);
        resolve(true);
      };
      this.child.stderr?.on('data', look);
      void this.exited.then(() => resolve(this.log.includes(text)));
      look();
    });
  }

  file(name: string): string {
    return path.join(this.mount, name.includes('@') ? 'snapshots' : 'block', name);
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    this.child.kill(signal);
    return this.exited;
  }
}

/** Unmounts and detaches anything a failed test left under dir. */
export function tidy(mount: string, loops: string[] = []): void {
  for (const loop of loops) spawnSync('losetup', ['-d', loop]);
  // Not fs.existsSync: on a dead daemon's mount it fails (ENOTCONN) and says false.
  for (let i = 0; i < 3 && isMountPoint(mount); i++) spawnSync('umount', ['-l', mount]);
}

/** Runs a tool to completion; `cwd` keeps files tools drop (fio's *.state) out of the work tree. */
export function sh(cmd: string, args: string[], cwd = os.tmpdir()): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd });
  return { status: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** A fresh pool directory and a mount point beside it, initialized; both go when the test ends. */
export function scratchPool(t: Test, name: string, init: string[] = []): { dir: string; pool: string; mount: string } {
  const dir = tmpDir(name);
  const pool = path.join(dir, 'pool');
  const mount = path.join(dir, 'mnt');
  t.teardown(() => {
    tidy(mount);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  if (cli(pool, 'pool', 'init', ...init).status !== 0) throw new Error('pool init failed');
  return { dir, pool, mount };
}

/** A daemon (with `extra` serve flags) on a fresh pool with filesystem volume `name` of `size` mounted at DIR/live; all of it goes when the test ends. */
export async function mountedVolume(t: Test, prefix: string, name: string, size: string, extra: string[] = []): Promise<{ dir: string; pool: string; live: string; d: Daemon }> {
  const { dir, pool, mount } = scratchPool(t, prefix);
  const d = await Daemon.start(pool, mount, extra);
  const live = path.join(dir, 'live');
  fs.mkdirSync(live);
  t.teardown(() => tidy(live));
  t.equal(cli(pool, 'volume', 'create', name, '--size', size, '--kind', 'fs').status, 0, `volume ${name} created`);
  t.equal(cli(pool, 'mount', name, live).status, 0, `volume ${name} mounted`);
  return { dir, pool, live, d };
}
