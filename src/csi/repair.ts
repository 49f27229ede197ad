/**
 * Rebuilds stages and publishes after a daemon restart.
 *
 * Loop devices point at files on the FUSE mount, and a FUSE mount dies with
 * the process that served it: every loop device a previous daemon attached
 * now fails all I/O. At start-up (pool open, new mount up, CSI not yet
 * answering) each such device is replaced: a new loop device on the same
 * volume, the filesystem mounted again where it was staged (or the device
 * bound again where it was published), binds redone with their read-only
 * flags, and the dead device detached.
 *
 * What a restart costs: I/O in flight while no daemon ran fails with EIO;
 * a program that holds the old device or an open file on the old mount
 * keeps getting errors until it reopens (in Kubernetes: the pod restarts).
 * Every flushed write is in the pool, so the remount finds it; the
 * filesystem replays its journal as after a power cut. Stage mount flags are
 * not recorded, so a rebuilt stage uses the defaults.
 */
import path from 'node:path';

import { type DriverContext, blockFile } from './driver.js';
import { bindMount, isFsType, mountFs, unmount } from '../host/filesystem.js';
import { DISCONNECTED, type LoopDevice, attachLoop, detachLoop, listLoops } from '../host/loop.js';
import { mountsOfLoop, readMountTable } from '../host/mount-table.js';

/**
 * A stale loop device is one whose backing file the kernel can no longer
 * reach (its FUSE server died) and whose path is a block file: either the
 * full path under the previous daemon's mount, or, once that mount was
 * detached, the path inside it ("/block/NAME").
 */
export function isStale(loop: LoopDevice, previousMount: string): boolean {
  if (loop.backDev !== DISCONNECTED) return false;
  const m = /^(.*)\/block\/([^/]+)$/.exec(loop.backFile);
  return m !== null && (m[1] === '' || m[1] === previousMount);
}

export async function repairAfterRestart(ctx: DriverContext, previousMount: string): Promise<number> {
  // Safe to ask where backing files live: our new mount has no loop devices yet.
  const node = { loops: listLoops(true), table: readMountTable() };
  let repaired = 0;
  for (const stale of node.loops.filter((l) => isStale(l, previousMount))) {
    const name = path.basename(stale.backFile);
    const file = blockFile(ctx, name);
    const mounts = mountsOfLoop(node.table, stale).sort((a, b) => a.id - b.id);
    for (const m of [...mounts].reverse()) await unmount(m.mountPoint, true);
    if (ctx.volumes.find(name) !== undefined && mounts.length > 0) {
      const device = await attachLoop(file, stale.readOnly);
      const filesystems = mounts.filter((m) => m.fsType !== 'devtmpfs');
      const first = filesystems[0];
      if (first !== undefined && isFsType(first.fsType)) {
        await mountFs(device, first.mountPoint, first.fsType, [], first.readOnly);
        for (const m of filesystems.slice(1)) await bindMount(first.mountPoint, m.mountPoint, m.readOnly);
      }
      for (const m of mounts.filter((x) => x.fsType === 'devtmpfs')) await bindMount(device, m.mountPoint, false);
      repaired++;
      ctx.log.warn({ volume: name, old: stale.name, device, mounts: mounts.map((m) => m.mountPoint) }, 'rebuilt a stage left by the previous daemon');
    } else {
      ctx.log.warn({ volume: name, old: stale.name }, 'detached a loop device left by the previous daemon');
    }
    // Busy (a program still holds it): the kernel detaches it at last close.
    await detachLoop(stale.name).catch(() => undefined);
  }
  return repaired;
}
