/**
 * The volume service: the one place that knows what a volume, a snapshot, a
 * clone and a group snapshot are. The CLI (through the admin API) and the
 * CSI controllers call it and re-implement none of its rules, so the same
 * request gets the same answer (the same code and message) from both.
 *
 * - A volume has a kind (kind.ts) and a size; it grows, never shrinks.
 * - A snapshot `VOL@SNAP` is read-only and remembers its volume's id. A new
 *   volume is refused while `VOL@*` of an earlier `VOL` exist (the orphan
 *   rule): the new volume would look like their owner.
 * - A clone is a writable volume forked from a volume or a snapshot,
 *   optionally larger; it has its source's kind.
 * - A group snapshot `GROUP` of volumes a, b is `a@GROUP`, `b@GROUP`, made
 *   in one transaction and deleted as one: a member alone is not deleted.
 * - Delete in any order: refcounts keep shared chunks for whoever holds them.
 * - A fork of a volume being served (`snapshotLive`, `cloneLive`,
 *   `createGroupLive`, what the admin API and CSI call) first has the
 *   frontends flush what they hold of it: a cowfs mount keeps acknowledged
 *   writes in the kernel's page cache, and a snapshot must contain them.
 *
 * Every change is one pool transaction that commits before it returns.
 * Bad input is refused with a code from src/errors.ts before anything changes.
 */
import { fail } from '../errors.js';
import type { Pool, VolumeInfo } from '../blockstore/pool.js';
import { Filesystem } from '../cowfs/filesystem.js';
import { type VolumeKind, kindOf, parseKind } from './kind.js';
import { isSnapshotName, parseSnapshotName, validateVolumeName } from './names.js';

/** Labels the service itself keeps. The group key predates src/volumes; it stays so older pools read the same. */
/** A new filesystem's root directory belongs to root, as mkfs.ext4 makes it. */
const ROOT_OWNER = { uid: 0, gid: 0 };

export const GROUP_LABEL = 'csi.group';

export interface VolumeView extends VolumeInfo {
  kind: VolumeKind;
  /** Snapshots taken of this volume (0 for a snapshot). */
  snapshotCount: number;
  /** The group snapshot this snapshot belongs to, or null. */
  group: string | null;
}

export interface CreateRequest {
  size: number;
  kind?: string;
  labels?: Record<string, string>;
}

export interface CloneRequest {
  size?: number;
  labels?: Record<string, string>;
}

/** Writes frontends acknowledged but still hold outside the pool (a cowfs mount's page cache). */
export interface HeldWrites {
  /** Resolves once what is held for these volumes (names of writable volumes) is in the pool. */
  flush(volumes: string[]): Promise<void>;
}

export class Volumes {
  constructor(
    readonly pool: Pool,
    private readonly held: HeldWrites | null = null,
  ) {}

  // ---- reading -----------------------------------------------------------------

  /** A volume or snapshot; ENOENT if there is none by that name. */
  get(name: string): VolumeView {
    return this.view(this.pool.stat(name));
  }

  /** The volume or snapshot, or undefined: for callers whose protocol treats "absent" as an answer (CSI's idempotent deletes). */
  find(name: string): VolumeView | undefined {
    return this.pool.has(name) ? this.get(name) : undefined;
  }

  /** A writable volume by name: ENOENT for none, and for a snapshot's name. */
  volume(name: string): VolumeView {
    const v = this.get(name);
    if (v.readOnly) fail('ENOENT', `'${name}' is a snapshot, not a volume`);
    return v;
  }

  /** A snapshot by name: ENOENT for none, and for a volume's name. */
  snapshot(name: string): VolumeView {
    parseSnapshotName(name);
    const s = this.get(name);
    if (!s.readOnly) fail('ENOENT', `'${name}' is a volume, not a snapshot`);
    return s;
  }

  /** Volumes (not snapshots), in name order. */
  list(): VolumeView[] {
    return this.views().filter((v) => !v.readOnly);
  }

  /** Snapshots, all or of one volume name (including those whose volume was deleted). */
  listSnapshots(volume?: string): VolumeView[] {
    const all = this.views();
    if (volume !== undefined) {
      validateVolumeName(volume);
      if (!all.some((v) => v.name === volume || v.name.startsWith(`${volume}@`))) fail('ENOENT', `no volume named '${volume}'`);
    }
    return all.filter((v) => v.readOnly && (volume === undefined || v.name.startsWith(`${volume}@`)));
  }

  /** The members of a group snapshot, in name order; empty if there is no such group. */
  groupMembers(group: string): VolumeView[] {
    return this.views().filter((v) => v.readOnly && v.group === group);
  }

  /** Bytes of chunks only this volume holds (walks its map). */
  exclusiveBytes(name: string): number {
    return this.pool.exclusiveBytes(name);
  }

  // ---- changing ----------------------------------------------------------------

  create(name: string, req: CreateRequest): VolumeView {
    validateVolumeName(name);
    const kind = parseKind(req.kind ?? 'block');
    this.refuseOrphans(name);
    // A filesystem volume is made with its root directory, in one commit.
    const fs = kind === 'fs' ? { filesystem: true, items: Filesystem.emptyItems(ROOT_OWNER) } : {};
    return this.view(this.pool.createVolume(name, req.size, { labels: req.labels, kind, ...fs }));
  }

  delete(name: string): void {
    validateVolumeName(name);
    this.volume(name);
    this.pool.remove(name);
  }

  grow(name: string, size: number): VolumeView {
    this.volume(name);
    return this.view(this.pool.grow(name, size));
  }

  createSnapshot(full: string, labels: Record<string, string> = {}): VolumeView {
    const { volume } = parseSnapshotName(full);
    const source = this.volume(volume);
    return this.view(this.pool.fork(volume, full, { readOnly: true, parentId: source.id, origin: volume, labels }));
  }

  /** createSnapshot once the frontends flushed the volume. */
  async snapshotLive(full: string, labels: Record<string, string> = {}): Promise<VolumeView> {
    await this.flushHeld([parseSnapshotName(full).volume]);
    return this.createSnapshot(full, labels);
  }

  deleteSnapshot(full: string): void {
    const snap = this.snapshot(full);
    if (snap.group !== null) fail('EPERM', `snapshot '${full}' belongs to group snapshot '${snap.group}'; delete the whole group`);
    this.pool.remove(full);
  }

  clone(source: string, name: string, req: CloneRequest = {}): VolumeView {
    validateVolumeName(name);
    if (isSnapshotName(source)) this.snapshot(source);
    else this.volume(source);
    this.refuseOrphans(name);
    return this.view(this.pool.fork(source, name, { readOnly: false, size: req.size, origin: source, labels: req.labels }));
  }

  /** clone once the frontends flushed the source. */
  async cloneLive(source: string, name: string, req: CloneRequest = {}): Promise<VolumeView> {
    if (!isSnapshotName(source)) await this.flushHeld([source]);
    return this.clone(source, name, req);
  }

  /** createGroup once the frontends flushed every member (each flushed, then all forked in one transaction). */
  async createGroupLive(group: string, volumes: string[], labels: Record<string, string> = {}): Promise<VolumeView[]> {
    await this.flushHeld(volumes);
    return this.createGroup(group, volumes, labels);
  }

  /** Snapshots `VOL@GROUP` of every volume named, at one instant, in one transaction. */
  createGroup(group: string, volumes: string[], labels: Record<string, string> = {}): VolumeView[] {
    validateVolumeName(group);
    if (volumes.length === 0) fail('EINVAL', `group snapshot '${group}' needs at least one volume`);
    if (new Set(volumes).size !== volumes.length) fail('EINVAL', `group snapshot '${group}' names a volume twice`);
    if (this.groupMembers(group).length > 0) fail('EEXIST', `group snapshot '${group}' already exists`);
    const sources = volumes.map((v) => this.volume(v));
    const made = this.pool.forkAll(
      sources.map((s) => ({
        source: s.name,
        name: `${s.name}@${group}`,
        options: { readOnly: true, parentId: s.id, origin: s.name, labels: { ...labels, [GROUP_LABEL]: group } },
      })),
    );
    return made.map((m) => this.view(m));
  }

  /** Deletes every member of the group in one transaction. */
  deleteGroup(group: string): string[] {
    validateVolumeName(group);
    const members = this.groupMembers(group).map((m) => m.name);
    if (members.length === 0) fail('ENOENT', `no group snapshot named '${group}'`);
    this.pool.removeAll(members);
    return members;
  }

  // ---- internals -----------------------------------------------------------------

  private async flushHeld(volumes: string[]): Promise<void> {
    if (this.held !== null) await this.held.flush(volumes);
  }

  private refuseOrphans(name: string): void {
    const orphan = this.pool.list().find((v) => v.name.startsWith(`${name}@`));
    if (orphan && !this.pool.has(name)) {
      fail('EEXIST', `snapshot '${orphan.name}' of an earlier volume '${name}' still exists: delete it or pick another name`);
    }
  }

  private views(): VolumeView[] {
    const all = this.pool.list();
    const counts = new Map<number, number>();
    for (const v of all) if (v.readOnly) counts.set(v.parentId, (counts.get(v.parentId) ?? 0) + 1);
    return all.map((v) => this.view(v, counts.get(v.id) ?? 0));
  }

  private view(v: VolumeInfo, snapshots?: number): VolumeView {
    const count = v.readOnly ? 0 : (snapshots ?? this.pool.list().filter((s) => s.readOnly && s.parentId === v.id).length);
    return { ...v, kind: kindOf(v.kind), snapshotCount: count, group: v.readOnly ? (v.labels[GROUP_LABEL] ?? null) : null };
  }
}
