/**
 * The CSI GroupController service: snapshots of several volumes taken at
 * one instant. All members are forked in one pool transaction (Pool.forkAll),
 * so after a crash the group exists whole or not at all, and no write lands
 * in one member but not another.
 */
import type { Pool, VolumeInfo } from '../blockstore/pool.js';
import type { ControllerService } from './controller.js';
import { type DriverContext, InFlight, LABEL, volumeById } from './driver.js';
import { nameProblem, poolNameFor } from './ids.js';
import { timestamp } from './proto.js';
import { csiFail, status } from './status.js';

interface GroupSnapshot {
  groupSnapshotId: string;
  snapshots: object[];
  creationTime: { seconds: number; nanos: number };
  readyToUse: boolean;
}

export class GroupControllerService {
  private readonly pool: Pool;

  constructor(
    ctx: DriverContext,
    private readonly inflight: InFlight,
    private readonly controller: ControllerService,
  ) {
    this.pool = ctx.pool;
  }

  capabilities(): object[] {
    return [{ rpc: { type: 'CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT' } }];
  }

  create(name: string, sourceVolumeIds: string[], parameters: Record<string, string>): Promise<GroupSnapshot> {
    const problem = nameProblem(name);
    if (problem !== null) csiFail(status.INVALID_ARGUMENT, problem);
    if (sourceVolumeIds.length === 0) csiFail(status.INVALID_ARGUMENT, 'source_volume_ids is required');
    if (new Set(sourceVolumeIds).size !== sourceVolumeIds.length) csiFail(status.INVALID_ARGUMENT, 'source_volume_ids names a volume twice');
    for (const k of Object.keys(parameters)) {
      if (!k.startsWith('csi.storage.k8s.io/')) csiFail(status.INVALID_ARGUMENT, `parameters: unknown key '${k}'`);
    }
    const id = poolNameFor(name);
    return this.inflight.run([`group:${id}`, ...sourceVolumeIds], () => {
      const members = this.members(id);
      if (members.length > 0) {
        const had = members.map((m) => m.origin).sort();
        const asked = [...sourceVolumeIds].sort();
        if (had.join('\n') !== asked.join('\n')) csiFail(status.ALREADY_EXISTS, `group snapshot '${name}' exists with other volumes (${had.join(', ')})`);
        return this.describe(id, members);
      }
      const sources = sourceVolumeIds.map((v) => volumeById(this.pool, v));
      const made = this.pool.forkAll(
        sources.map((s) => ({
          source: s.name,
          name: `${s.name}@${id}`,
          options: { readOnly: true, parentId: s.id, origin: s.name, labels: { [LABEL.group]: id, [LABEL.groupName]: name } },
        })),
      );
      return this.describe(id, made);
    });
  }

  delete(groupSnapshotId: string, snapshotIds: string[]): Promise<void> {
    if (groupSnapshotId === '') csiFail(status.INVALID_ARGUMENT, 'group_snapshot_id is required');
    return this.inflight.run([`group:${groupSnapshotId}`], () => {
      const members = this.members(groupSnapshotId);
      if (members.length === 0) return;
      this.checkList(groupSnapshotId, members, snapshotIds);
      this.pool.removeAll(members.map((m) => m.name));
    });
  }

  get(groupSnapshotId: string, snapshotIds: string[]): GroupSnapshot {
    if (groupSnapshotId === '') csiFail(status.INVALID_ARGUMENT, 'group_snapshot_id is required');
    const members = this.members(groupSnapshotId);
    if (members.length === 0) csiFail(status.NOT_FOUND, `no group snapshot '${groupSnapshotId}'`);
    this.checkList(groupSnapshotId, members, snapshotIds);
    return this.describe(groupSnapshotId, members);
  }

  private members(id: string): VolumeInfo[] {
    return this.pool.list().filter((v) => v.readOnly && v.labels[LABEL.group] === id);
  }

  /** The caller's list of member ids, when given, must be exactly the group. */
  private checkList(id: string, members: VolumeInfo[], snapshotIds: string[]): void {
    if (snapshotIds.length === 0) return;
    const have = members.map((m) => m.name).sort();
    const given = [...snapshotIds].sort();
    if (have.join('\n') !== given.join('\n')) csiFail(status.INVALID_ARGUMENT, `snapshot_ids do not match group snapshot '${id}' (${have.join(', ')})`);
  }

  private describe(id: string, members: VolumeInfo[]): GroupSnapshot {
    return {
      groupSnapshotId: id,
      snapshots: members.map((m) => this.controller.csiSnapshot(m)),
      creationTime: timestamp(Math.min(...members.map((m) => m.createdAt))),
      readyToUse: true,
    };
  }
}
