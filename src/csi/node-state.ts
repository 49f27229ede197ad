/**
 * What is staged and published on this node, read from the loop device list
 * and the mount table each time it is needed. Nothing is kept in memory
 * between calls, so a restarted daemon knows exactly what its predecessor
 * left: the kernel is the record.
 *
 * A filesystem volume is staged when its loop device is mounted at the
 * staging path; its publishes are bind mounts of that filesystem. A block
 * volume is staged when its loop device node is bind-mounted on the file
 * STAGING/dev; its publishes are binds of a device node of one of its loop
 * devices (a read-only publish gets a read-only loop device of its own).
 */
import path from 'node:path';

import { type LoopDevice, listLoops } from '../host/loop.js';
import { type MountEntry, mountAt, mountsOfLoop, readMountTable } from '../host/mount-table.js';

export interface VolumeState {
  file: string;
  loops: LoopDevice[];
  /** Every mount that shows one of the loops, in mount order. */
  mounts: { entry: MountEntry; loop: LoopDevice }[];
}

export interface NodeSnapshot {
  loops: LoopDevice[];
  table: MountEntry[];
}

export function readNode(): NodeSnapshot {
  return { loops: listLoops(), table: readMountTable() };
}

export function volumeState(node: NodeSnapshot, file: string): VolumeState {
  const loops = node.loops.filter((l) => l.backFile === file);
  const mounts: VolumeState['mounts'] = [];
  for (const loop of loops) for (const entry of mountsOfLoop(node.table, loop)) mounts.push({ entry, loop });
  mounts.sort((a, b) => a.entry.id - b.entry.id);
  return { file, loops, mounts };
}

export function blockStagingFile(stagingPath: string): string {
  return path.join(stagingPath, 'dev');
}

/** The mount that stages the volume at this staging path, if any. */
export function stagedAt(state: VolumeState, stagingPath: string, block: boolean): { entry: MountEntry; loop: LoopDevice } | undefined {
  const where = block ? blockStagingFile(stagingPath) : stagingPath;
  return state.mounts.find((m) => m.entry.mountPoint === where && (block ? m.entry.fsType === 'devtmpfs' : m.entry.fsType !== 'devtmpfs'));
}

/** Mounts of this volume that are not the one at `except` (staging mounts included). */
export function otherMounts(state: VolumeState, ...except: string[]): { entry: MountEntry; loop: LoopDevice }[] {
  return state.mounts.filter((m) => !except.includes(m.entry.mountPoint));
}

export function isMountedAt(node: NodeSnapshot, p: string): MountEntry | undefined {
  return mountAt(node.table, p);
}
