/**
 * The CSI node steps for a cowfs volume (fs_type cowfs): stage is a cowfs
 * mount of the volume at the staging path, made by the daemon's mount
 * service (so a restarted daemon serves it again), publish is a bind of
 * that mount (read-only when asked), and expansion needs no node step:
 * statfs answers the new size as soon as the pool has it.
 *
 * As for block volumes, the kernel is the record: stages and publishes are
 * read from the mount table (source `cowfs:POOLID:NAME`) on each call. A look into
 * a cowfs mount from this process is always asynchronous (the daemon's own
 * thread answers it).
 */
import fsp from 'node:fs/promises';

import type { VolumeView } from '../volumes/volumes.js';
import { bindMount, unmount } from '../host/filesystem.js';
import { readMountTable } from '../host/mount-table.js';
import { type MountService, mountsOfVolume } from '../fuse/cowfs-mount.js';
import { type Usage, isReaderOnly, publishRefusal } from './capabilities.js';
import { type DriverContext, filesystemUsage, poolCondition } from './driver.js';
import type { VolumeCondition } from './proto.js';
import { CsiError, csiFail, status } from './status.js';

export class CowfsNode {
  constructor(private readonly ctx: DriverContext) {}

  private get mounts(): MountService {
    const m = this.ctx.mounts;
    if (m === undefined) throw new CsiError(status.FAILED_PRECONDITION, 'this driver serves no cowfs mounts');
    return m;
  }

  async stage(name: string, staging: string, usage: Usage): Promise<void> {
    const all = mountsOfVolume(this.ctx.volumes.pool, name);
    if (all.some((m) => m.mountPoint === staging)) return;
    const staged = this.mounts.list().find((m) => m.source === name);
    if (staged !== undefined) csiFail(status.FAILED_PRECONDITION, `volume '${name}' is already staged at ${staged.dir}`);
    await fsp.mkdir(staging, { recursive: true });
    await this.mounts.mount(name, staging, isReaderOnly(usage.mode));
    this.ctx.log.info({ volume: name, staging }, 'staged (cowfs)');
  }

  async unstage(name: string, staging: string): Promise<void> {
    if (!this.mounts.list().some((m) => m.dir === staging)) return;
    const still = mountsOfVolume(this.ctx.volumes.pool, name).filter((m) => m.mountPoint !== staging);
    if (still.length > 0) csiFail(status.FAILED_PRECONDITION, `volume '${name}' is still published at ${still.map((m) => m.mountPoint).join(', ')}`);
    await this.mounts.unmount(staging);
    this.ctx.log.info({ volume: name, staging }, 'unstaged (cowfs)');
  }

  async publish(name: string, staging: string, target: string, usage: Usage, readOnly: boolean): Promise<void> {
    if (!this.mounts.list().some((m) => m.dir === staging && m.source === name)) csiFail(status.FAILED_PRECONDITION, `volume '${name}' is not staged at ${staging} as cowfs`);
    const all = mountsOfVolume(this.ctx.volumes.pool, name);
    const existing = all.find((m) => m.mountPoint === target);
    if (existing) {
      if (existing.readOnly !== readOnly) csiFail(status.ALREADY_EXISTS, `volume '${name}' is published at ${target} ${existing.readOnly ? 'read-only' : 'read-write'} already`);
      return;
    }
    if (readMountTable().some((m) => m.mountPoint === target)) csiFail(status.ALREADY_EXISTS, `something else is mounted at ${target}`);
    const others = all.filter((m) => m.mountPoint !== staging).map((m) => ({ readOnly: m.readOnly }));
    const refusal = publishRefusal(usage.mode, readOnly, others);
    if (refusal !== null) csiFail(status.FAILED_PRECONDITION, `cannot publish '${name}' at ${target}: ${refusal}`);
    await fsp.mkdir(target, { recursive: true });
    await bindMount(staging, target, readOnly);
    this.ctx.log.info({ volume: name, target, readOnly }, 'published (cowfs)');
  }

  /** True when target was a publish of this volume (now gone); false when nothing of it is there. */
  async unpublish(name: string, target: string): Promise<boolean> {
    if (!mountsOfVolume(this.ctx.volumes.pool, name).some((m) => m.mountPoint === target)) return false;
    await unmount(target, false);
    await fsp.rmdir(target).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw new CsiError(status.INTERNAL, `could not remove ${target}: ${err.message}`);
    });
    this.ctx.log.info({ volume: name, target }, 'unpublished (cowfs)');
    return true;
  }

  async stats(v: VolumeView, where: string): Promise<{ usage: object[]; volumeCondition: VolumeCondition }> {
    const mounted = mountsOfVolume(this.ctx.volumes.pool, v.name).some((m) => m.mountPoint === where);
    const condition = poolCondition(this.ctx, v) ?? (mounted ? { abnormal: false, message: 'healthy' } : { abnormal: true, message: `volume '${v.name}' is not mounted at ${where}` });
    return { usage: mounted ? await filesystemUsage(where) : [], volumeCondition: condition };
  }

  /** Whether the volume is staged here (expansion needs that, and nothing else on the node). */
  staged(name: string): boolean {
    return this.mounts.list().some((m) => m.source === name);
  }
}
