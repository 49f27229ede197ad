/**
 * The CSI Node service: stage (loop device, filesystem), publish (bind
 * mounts), stats, online expansion, inline ephemeral volumes.
 *
 * Caveats: mount flags given at stage are not recorded anywhere but the
 * kernel; a restart that has to rebuild a stage (see repair.ts) mounts with
 * the defaults. Block publishes that are read-only get their own read-only
 * loop device.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

import { isValidName } from '../volumes/names.js';
import type { VolumeView } from '../volumes/volumes.js';
import { parseSize } from '../size.js';
import { COWFS, isReaderOnly, publishRefusal, usageOf, type Usage } from './capabilities.js';
import { CowfsNode } from './cowfs-node.js';
import { type DriverContext, InFlight, LABEL, blockFile, filesystemUsage, nodeTopology, poolCondition } from './driver.js';
import { type FsType, bindMount, detectFs, growExt4Offline, growFs, isFsType, makeFs, mountFs, unmount } from '../host/filesystem.js';
import { attachLoop, detachLoop, refreshLoop } from '../host/loop.js';
import { type VolumeState, blockStagingFile, isMountedAt, otherMounts, readNode, stagedAt, volumeState } from './node-state.js';
import type { CapacityRange, NodePublishVolumeRequest, NodeStageVolumeRequest, VolumeCapability, VolumeCondition } from './proto.js';
import { pickSize } from './controller.js';
import { CsiError, csiFail, status } from './status.js';

const EPHEMERAL_KEY = 'csi.storage.k8s.io/ephemeral';
const DEFAULT_EPHEMERAL_SIZE = 1 << 30;

export class NodeService {
  private readonly cowfs: CowfsNode;

  constructor(
    private readonly ctx: DriverContext,
    private readonly inflight: InFlight,
  ) {
    this.cowfs = new CowfsNode(ctx);
  }

  // ---- stage ------------------------------------------------------------------

  async stage(req: NodeStageVolumeRequest): Promise<void> {
    const name = this.requireId(req.volumeId);
    const staging = await this.ctx.kubelet.check(req.stagingTargetPath, 'staging_target_path');
    const usage = usageOf(req.volumeCapability);
    await this.inflight.run([name], async () => {
      if (this.isCowfs(this.volume(name), usage)) return this.cowfs.stage(name, staging, usage);
      const state = volumeState(readNode(), blockFile(this.ctx, name));
      const here = stagedAt(state, staging, usage.block);
      if (here) {
        if (!usage.block && here.entry.fsType !== usage.fsType) {
          csiFail(status.ALREADY_EXISTS, `volume '${name}' is staged at ${staging} as ${here.entry.fsType}, not ${usage.fsType}`);
        }
        return;
      }
      const elsewhere = state.mounts.find((m) => (usage.block ? m.entry.mountPoint.endsWith('/dev') && m.entry.fsType === 'devtmpfs' : m.entry.fsType !== 'devtmpfs' && m.entry.root === '/'));
      if (elsewhere) csiFail(status.FAILED_PRECONDITION, `volume '${name}' is already staged at ${elsewhere.entry.mountPoint}`);
      fs.mkdirSync(staging, { recursive: true });
      const readOnly = isReaderOnly(usage.mode);
      const device = await attachLoop(state.file, usage.block && readOnly);
      try {
        if (usage.block) {
          const file = blockStagingFile(staging);
          fs.writeFileSync(file, '');
          await bindMount(device, file, false);
        } else {
          await this.mountFilesystem(name, device, staging, usage, readOnly);
        }
      } catch (err) {
        await detachLoop(device).catch(() => undefined);
        throw err;
      }
      this.ctx.log.info({ volume: name, staging, device }, 'staged');
    });
  }

  async unstage(volumeId: string, stagingTargetPath: string): Promise<void> {
    const name = this.requireId(volumeId);
    const staging = await this.ctx.kubelet.check(stagingTargetPath, 'staging_target_path');
    await this.inflight.run([name], async () => {
      if (this.ctx.volumes.find(name)?.kind === 'fs') return this.cowfs.unstage(name, staging);
      const state = volumeState(readNode(), blockFile(this.ctx, name));
      const here = stagedAt(state, staging, false) ?? stagedAt(state, staging, true);
      if (here) {
        const still = otherMounts(state, here.entry.mountPoint);
        if (still.length > 0) csiFail(status.FAILED_PRECONDITION, `volume '${name}' is still published at ${still.map((m) => m.entry.mountPoint).join(', ')}`);
        await unmount(here.entry.mountPoint, false);
        if (here.entry.fsType === 'devtmpfs') fs.rmSync(here.entry.mountPoint, { force: true });
        await detachLoop(here.loop.name);
        this.ctx.log.info({ volume: name, staging }, 'unstaged');
      }
      await this.detachUnused(name);
    });
  }

  // ---- publish ----------------------------------------------------------------

  async publish(req: NodePublishVolumeRequest): Promise<void> {
    const name = this.requireId(req.volumeId);
    const target = await this.ctx.kubelet.check(req.targetPath, 'target_path');
    const usage = usageOf(req.volumeCapability);
    if (req.volumeContext[EPHEMERAL_KEY] === 'true') {
      await this.inflight.run([name], () => this.publishEphemeral(name, target, usage, req));
      return;
    }
    const staging = await this.ctx.kubelet.check(req.stagingTargetPath, 'staging_target_path');
    if (staging === target) csiFail(status.INVALID_ARGUMENT, 'target_path and staging_target_path are the same');
    await this.inflight.run([name], async () => {
      if (this.isCowfs(this.volume(name), usage)) return this.cowfs.publish(name, staging, target, usage, req.readonly);
      const node = readNode();
      const state = volumeState(node, blockFile(this.ctx, name));
      const staged = stagedAt(state, staging, usage.block);
      if (!staged) csiFail(status.FAILED_PRECONDITION, `volume '${name}' is not staged at ${staging} as a ${usage.block ? 'block device' : 'filesystem'}`);
      const existing = state.mounts.find((m) => m.entry.mountPoint === target);
      if (existing) {
        if (existing.entry.readOnly !== req.readonly && !(usage.block && existing.loop.readOnly === req.readonly)) {
          csiFail(status.ALREADY_EXISTS, `volume '${name}' is published at ${target} ${existing.entry.readOnly ? 'read-only' : 'read-write'} already`);
        }
        return;
      }
      if (isMountedAt(node, target)) csiFail(status.ALREADY_EXISTS, `something else is mounted at ${target}`);
      const others = otherMounts(state, staged.entry.mountPoint, target).map((m) => ({ readOnly: m.entry.readOnly || m.loop.readOnly }));
      const refusal = publishRefusal(usage.mode, req.readonly, others);
      if (refusal !== null) csiFail(status.FAILED_PRECONDITION, `cannot publish '${name}' at ${target}: ${refusal}`);
      if (usage.block) await this.publishBlock(state, staged.loop.name, target, req.readonly);
      else {
        fs.mkdirSync(target, { recursive: true });
        await bindMount(staged.entry.mountPoint, target, req.readonly);
      }
      this.ctx.log.info({ volume: name, target, readOnly: req.readonly }, 'published');
    });
  }

  async unpublish(volumeId: string, targetPath: string): Promise<void> {
    const name = this.requireId(volumeId);
    const target = await this.ctx.kubelet.check(targetPath, 'target_path');
    await this.inflight.run([name], async () => {
      if (this.ctx.volumes.find(name)?.kind === 'fs' && (await this.cowfs.unpublish(name, target))) return;
      const node = readNode();
      const state = volumeState(node, blockFile(this.ctx, name));
      const here = state.mounts.find((m) => m.entry.mountPoint === target);
      if (!here) {
        if (isMountedAt(node, target)) csiFail(status.NOT_FOUND, `${target} is not a publish of volume '${name}'`);
        removeTarget(target);
        return;
      }
      await unmount(target, false);
      removeTarget(target);
      const v = this.ctx.volumes.find(name);
      if (v?.labels[LABEL.ephemeral] === 'true') {
        await detachLoop(here.loop.name);
        this.ctx.volumes.delete(name);
        this.ctx.log.info({ volume: name, target }, 'ephemeral volume deleted');
        return;
      }
      await this.detachUnused(name);
      this.ctx.log.info({ volume: name, target }, 'unpublished');
    });
  }

  // ---- stats and expansion ----------------------------------------------------

  async stats(volumeId: string, volumePath: string): Promise<{ usage: object[]; volumeCondition: VolumeCondition }> {
    const name = this.requireId(volumeId);
    // The spec's order: a volume that does not exist is NOT_FOUND whatever the path says.
    if (volumePath === '') csiFail(status.INVALID_ARGUMENT, 'volume_path is required');
    const v = this.volume(name);
    const where = await this.ctx.kubelet.check(volumePath, 'volume_path');
    // Asynchronous, like every look into a volume's filesystem: its I/O may need this thread (the FUSE slow path).
    if ((await fsp.lstat(where).catch(() => null)) === null) csiFail(status.NOT_FOUND, `volume_path ${where} does not exist`);
    if (v.kind === 'fs') return this.cowfs.stats(v, where);
    const state = volumeState(readNode(), blockFile(this.ctx, name));
    const here = state.mounts.find((m) => m.entry.mountPoint === where);
    const condition = this.condition(v, state, here !== undefined, where);
    if (here && here.entry.fsType === 'devtmpfs') {
      return { usage: [{ unit: 'BYTES', total: v.size, used: v.allocatedBytes, available: Math.max(0, v.size - v.allocatedBytes) }], volumeCondition: condition };
    }
    return { usage: here ? await filesystemUsage(where) : [], volumeCondition: condition };
  }

  /**
   * Grows the volume in the pool to the capacity asked for (never shrinks
   * it), lets its loop devices see the new size, and grows the filesystem
   * online. The whole expansion happens here, on the node that holds the
   * volume: the controller does not advertise EXPAND_VOLUME, so the resizer
   * sidecars only mark the claim (docs/csi.md, "More than one node").
   */
  async expand(volumeId: string, volumePath: string, range: CapacityRange | null, cap: VolumeCapability | null): Promise<number> {
    const name = this.requireId(volumeId);
    if (volumePath === '') csiFail(status.INVALID_ARGUMENT, 'volume_path is required');
    this.volume(name);
    const where = await this.ctx.kubelet.check(volumePath, 'volume_path');
    return this.inflight.run([name], async () => {
      let v = this.volume(name);
      if (range !== null && range.limitBytes > 0 && range.limitBytes < v.size) {
        csiFail(status.OUT_OF_RANGE, `volume '${name}' is ${v.size} bytes, above limit_bytes ${range.limitBytes}; volumes do not shrink`);
      }
      const state = volumeState(readNode(), blockFile(this.ctx, name));
      const cowfs = v.kind === 'fs';
      if (cowfs ? !this.cowfs.staged(name) : state.loops.length === 0) csiFail(status.FAILED_PRECONDITION, `volume '${name}' is not staged on this node`);
      const size = range !== null && range.requiredBytes > v.size ? pickSize(range, v.size, v.size) : v.size;
      if (size > v.size) {
        v = this.ctx.volumes.grow(name, size);
        this.ctx.log.info({ volume: name, size }, 'volume grown');
      }
      // cowfs: statfs answers the new size from the pool at once; nothing to grow on the node.
      if (cowfs) return v.size;
      for (const loop of state.loops) await refreshLoop(loop.name);
      const here = state.mounts.find((m) => m.entry.mountPoint === where);
      if (!here) csiFail(status.NOT_FOUND, `volume '${name}' is not mounted at ${where}`);
      const block = cap?.accessType === 'block' || here.entry.fsType === 'devtmpfs';
      if (!block) {
        const fsType = here.entry.fsType;
        if (!isFsType(fsType)) csiFail(status.FAILED_PRECONDITION, `volume '${name}' carries ${fsType}, which cowvol does not grow`);
        // Grow through the writable mount: a read-only publish cannot grow the filesystem.
        const rw = state.mounts.find((m) => m.loop.name === here.loop.name && m.entry.fsType === fsType && !m.entry.readOnly);
        if (!rw) csiFail(status.FAILED_PRECONDITION, `volume '${name}' has no writable mount to grow the filesystem through`);
        await growFs(fsType, here.loop.name, rw.entry.mountPoint);
      }
      this.ctx.log.info({ volume: name, size: v.size }, 'expanded on the node');
      return v.size;
    });
  }

  capabilities(): object[] {
    return ['STAGE_UNSTAGE_VOLUME', 'GET_VOLUME_STATS', 'EXPAND_VOLUME', 'VOLUME_CONDITION', 'SINGLE_NODE_MULTI_WRITER'].map((type) => ({ rpc: { type } }));
  }

  info(): object {
    return { nodeId: this.ctx.nodeId, maxVolumesPerNode: this.ctx.maxVolumesPerNode, accessibleTopology: nodeTopology(this.ctx) };
  }

  // ---- internals ----------------------------------------------------------------

  /** Whether the request is for cowfs; a capability that does not fit the volume's kind is refused. */
  private isCowfs(v: VolumeView, usage: Usage): boolean {
    const cowfs = v.kind === 'fs';
    if (cowfs !== (usage.fsType === COWFS)) {
      csiFail(status.INVALID_ARGUMENT, cowfs ? `volume '${v.name}' is a cowfs volume: stage and publish it with fs_type cowfs` : `volume '${v.name}' is a block volume: fs_type cowfs needs a cowfs volume`);
    }
    return cowfs;
  }

  private requireId(volumeId: string): string {
    if (volumeId === '') csiFail(status.INVALID_ARGUMENT, 'volume_id is required');
    return volumeId;
  }

  private volume(name: string): VolumeView {
    return this.ctx.volumes.volume(name);
  }

  private condition(v: VolumeView, state: VolumeState, mounted: boolean, where: string): VolumeCondition {
    const pool = poolCondition(this.ctx, v);
    if (pool) return pool;
    if (!mounted) return { abnormal: true, message: `volume '${v.name}' is not mounted at ${where}` };
    if (state.loops.length === 0) return { abnormal: true, message: `volume '${v.name}' has no loop device` };
    return { abnormal: false, message: 'healthy' };
  }

  private async mountFilesystem(name: string, device: string, at: string, usage: Usage, readOnly: boolean): Promise<void> {
    const fsType = usage.fsType as FsType;
    const v = this.volume(name);
    // Nothing allocated reads as zeros: no filesystem to look for (blkid costs a process on every stage).
    const found = v.allocatedBytes === 0 ? '' : await detectFs(device);
    if (found === '') await makeFs(device, fsType);
    else if (found !== fsType) csiFail(status.FAILED_PRECONDITION, `volume '${name}' holds ${found}, not ${fsType}`);
    if (fsType === 'ext4' && !readOnly && found !== '') await growExt4Offline(device, v.size);
    await mountFs(device, at, fsType, usage.mountFlags, readOnly);
    if (fsType === 'xfs' && !readOnly) {
      // A volume restored or cloned to a larger size carries the source's smaller filesystem.
      try {
        await growFs(fsType, device, at);
      } catch (err) {
        await unmount(at, false).catch(() => undefined);
        throw err;
      }
    }
  }

  private async publishBlock(state: VolumeState, stagedDevice: string, target: string, readOnly: boolean): Promise<void> {
    if (!fs.existsSync(path.dirname(target))) csiFail(status.FAILED_PRECONDITION, `the directory of target_path ${target} does not exist`);
    if (!fs.existsSync(target)) fs.writeFileSync(target, '');
    const device = readOnly ? await attachLoop(state.file, true) : stagedDevice;
    try {
      await bindMount(device, target, false);
    } catch (err) {
      if (device !== stagedDevice) await detachLoop(device).catch(() => undefined);
      throw err;
    }
  }

  private async publishEphemeral(name: string, target: string, usage: Usage, req: NodePublishVolumeRequest): Promise<void> {
    if (!isValidName(name)) csiFail(status.INVALID_ARGUMENT, `ephemeral volume id '${name}' is not a valid volume name`);
    if (usage.block) csiFail(status.INVALID_ARGUMENT, 'ephemeral inline volumes are filesystems, not block devices');
    let size = DEFAULT_EPHEMERAL_SIZE;
    for (const [k, value] of Object.entries(req.volumeContext)) {
      if (k === 'size') size = ephemeralSize(value);
      else if (!k.startsWith('csi.storage.k8s.io/')) csiFail(status.INVALID_ARGUMENT, `unknown volume attribute '${k}' (cowvol takes 'size')`);
    }
    const node = readNode();
    const file = blockFile(this.ctx, name);
    if (volumeState(node, file).mounts.some((m) => m.entry.mountPoint === target)) return;
    if (isMountedAt(node, target)) csiFail(status.ALREADY_EXISTS, `something else is mounted at ${target}`);
    const existing = this.ctx.volumes.find(name);
    if (existing) {
      if (existing.labels[LABEL.ephemeral] !== 'true') csiFail(status.ALREADY_EXISTS, `volume '${name}' exists and is not an ephemeral volume`);
    } else {
      this.ctx.volumes.create(name, { size, labels: { [LABEL.ephemeral]: 'true' } });
    }
    fs.mkdirSync(target, { recursive: true });
    let device = '';
    try {
      device = await attachLoop(file, false);
      await this.mountFilesystem(name, device, target, usage, req.readonly);
    } catch (err) {
      if (device !== '') await detachLoop(device).catch(() => undefined);
      this.ctx.volumes.delete(name);
      throw err;
    }
    this.ctx.log.info({ volume: name, target, size }, 'ephemeral volume published');
  }

  /** Loop devices of the volume that nothing shows any more (after unstage or a failed call). */
  private async detachUnused(name: string): Promise<void> {
    const state = volumeState(readNode(), blockFile(this.ctx, name));
    for (const loop of state.loops) {
      if (!state.mounts.some((m) => m.loop.name === loop.name)) await detachLoop(loop.name);
    }
  }
}

function removeTarget(target: string): void {
  try {
    const st = fs.lstatSync(target);
    if (st.isDirectory()) fs.rmdirSync(target);
    else fs.unlinkSync(target);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new CsiError(status.INTERNAL, `could not remove ${target}: ${(err as Error).message}`);
  }
}

/** Kubernetes writes sizes as quantities ("1Gi"); cowvol's parser reads "1GiB". */
function ephemeralSize(text: string): number {
  try {
    const size = parseSize(text.replace(/^(\d+)([KMGT])i$/, '$1$2iB'), 'size');
    return Math.ceil(size / 4096) * 4096;
  } catch (err) {
    throw new CsiError(status.INVALID_ARGUMENT, (err as Error).message);
  }
}

