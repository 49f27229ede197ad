/**
 * A `cowvol serve --csi-endpoint` process on a fresh pool, a kubelet
 * directory beside it, and a CSI client on its socket. Teardown stops the
 * daemon and removes every mount and loop device left under the test's
 * directory, so one failed test does not leak into the next.
 */
import fs from 'node:fs';
import path from 'node:path';

import type { Test } from 'tap';

import { listLoops } from '../../src/host/loop.js';
import { isStale } from '../../src/csi/repair.js';
import { readMountTable } from '../../src/host/mount-table.js';
import { CsiClient } from '../../src/csi/client.js';
import { Daemon, cli, sh, tidy } from './daemon.js';
import { tmpDir } from './pools.js';

export const NODE_ID = 'node-a';
export const TOPOLOGY_KEY = 'topology.cowvol.csi.dev/node';

export interface CsiSetup {
  dir: string;
  pool: string;
  mount: string;
  kubelet: string;
  socket: string;
  daemon: Daemon;
  client: CsiClient;
  /** Stops the daemon (SIGTERM or SIGKILL) and starts a new one on the same pool. */
  restart(signal?: NodeJS.Signals): Promise<void>;
}

/** `extra`: more serve flags; with --handover-grace the daemon keeps a keeper, and teardown stops it for good. */
export async function startCsi(t: Test, name: string, init: string[] = [], extra: string[] = []): Promise<CsiSetup> {
  const dir = tmpDir(name);
  const pool = path.join(dir, 'pool');
  const mount = path.join(dir, 'mnt');
  const kubelet = path.join(dir, 'kubelet');
  const socket = path.join(dir, 'csi.sock');
  fs.mkdirSync(kubelet);
  if (cli(pool, 'pool', 'init', ...init).status !== 0) throw new Error('pool init failed');
  const args = ['--csi-endpoint', `unix://${socket}`, '--node-id', NODE_ID, '--kubelet-dir', kubelet, ...extra];
  const s: CsiSetup = {
    dir,
    pool,
    mount,
    kubelet,
    socket,
    daemon: await Daemon.start(pool, mount, args),
    client: new CsiClient(socket),
    async restart(signal: NodeJS.Signals = 'SIGTERM') {
      s.client.close();
      await s.daemon.stop(signal);
      s.daemon = await Daemon.start(pool, mount, args);
      s.client = new CsiClient(socket);
    },
  };
  t.teardown(async () => {
    s.client.close();
    if (s.daemon.child.exitCode === null) {
      if (extra.includes('--handover-grace')) cli(pool, 'stop');
      else await s.daemon.stop('SIGTERM');
    }
    cleanUnder(s);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return s;
}

/** Mount points under dir, deepest first. */
export function mountsUnder(dir: string): string[] {
  return readMountTable()
    .map((m) => m.mountPoint)
    .filter((p) => p.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}

/** Loop devices over this setup's block files, live or left by a dead daemon (any dead daemon's: they are all garbage). */
export function loopsOf(s: CsiSetup): string[] {
  return listLoops(true).filter((l) => l.backFile.startsWith(`${s.mount}/`) || isStale(l, s.mount)).map((l) => l.name);
}

function cleanUnder(s: CsiSetup): void {
  for (const p of mountsUnder(s.dir)) if (p !== s.mount) sh('umount', ['-l', p]);
  for (const loop of loopsOf(s)) sh('losetup', ['-d', loop]);
  tidy(s.mount);
}

export function blockCap(mode = 'SINGLE_NODE_WRITER'): object {
  return { block: {}, accessMode: { mode } };
}

export function mountCap(fsType = 'ext4', mode = 'SINGLE_NODE_WRITER', mountFlags: string[] = []): object {
  return { mount: { fsType, mountFlags }, accessMode: { mode } };
}

export const MiB = 1 << 20;
