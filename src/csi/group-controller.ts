/**
 * The CSI GroupController service: snapshots of several volumes taken at
 * one instant, made and deleted by the volume service's group operations
 * (one pool transaction each: after a crash the group exists whole or not at
 * all). What stays here is CSI's own: idempotent retries, the member list a
 * caller may send, and the answer's shape.
 */
import type { VolumeView, Volumes } from '../volumes/volumes.js';
import type { ControllerService } from './controller.js';
import { type DriverContext, InFlight, LABEL } from './driver.js';
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
  private readonly volumes: Volumes;

  constructor(
    ctx: DriverContext,
    private readonly inflight: InFlight,
    private readonly controller: ControllerService,
  ) {
    this.volumes = ctx.volumes;
  }

  capabilities(): object[] {
    return [{ rpc: { type: 'CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT' } }];
  }

  create(name: string, sourceVolumeIds: string[], parameters: Record<string, string>): Promise<GroupSnapshot> {
    const problem = nameProblem(name);
    if (problem !== null) csiFail(status.INVALID_ARGUMENT, problem);
    if (sourceVolumeIds.length === 0) csiFail(status.INVALID_ARGUMENT, 'source_volume_ids is required');
    for (const k of Object.keys(parameters)) {
      if (!k.startsWith('csi.storage.k8s.io/')) csiFail(status.INVALID_ARGUMENT, `parameters: unknown key '${k}'`);
    }
    const id = poolNameFor(name);
    return this.inflight.run([`group:${id}`, ...sourceVolumeIds], async () => {
      const members = this.volumes.groupMembers(id);
      if (members.length > 0) {
        const had = members.map((m) => m.origin).sort();
        const asked = [...sourceVolumeIds].sort();
        if (had.join('\n') !== asked.join('\n')) csiFail(status.ALREADY_EXISTS, `group snapshot '${name}' exists with other volumes (${had.join(', ')})`);
        return this.describe(id, members);
      }
      return this.describe(id, await this.volumes.createGroupLive(id, sourceVolumeIds, { [LABEL.groupName]: name }));
    });
  }

  delete(groupSnapshotId: string, snapshotIds: string[]): Promise<void> {
    if (groupSnapshotId === '') csiFail(status.INVALID_ARGUMENT, 'group_snapshot_id is required');
    return this.inflight.run([`group:${groupSnapshotId}`], () => {
      const members = this.volumes.groupMembers(groupSnapshotId);
      if (members.length === 0) return;
      this.checkList(groupSnapshotId, members, snapshotIds);
      this.volumes.deleteGroup(groupSnapshotId);
    });
  }

  get(groupSnapshotId: string, snapshotIds: string[]): GroupSnapshot {
    if (groupSnapshotId === '') csiFail(status.INVALID_ARGUMENT, 'group_snapshot_id is required');
    const members = this.volumes.groupMembers(groupSnapshotId);
    if (members.length === 0) csiFail(status.NOT_FOUND, `no group snapshot '${groupSnapshotId}'`);
    this.checkList(groupSnapshotId, members, snapshotIds);
    return this.describe(groupSnapshotId, members);
  }

  /** The caller's list of member ids, when given, must be exactly the group. */
  private checkList(id: string, members: VolumeView[], snapshotIds: string[]): void {
    if (snapshotIds.length === 0) return;
    const have = members.map((m) => m.name).sort();
    const given = [...snapshotIds].sort();
    if (have.join('\n') !== given.join('\n')) csiFail(status.INVALID_ARGUMENT, `snapshot_ids do not match group snapshot '${id}' (${have.join(', ')})`);
  }

  private describe(id: string, members: VolumeView[]): GroupSnapshot {
    return {
      groupSnapshotId: id,
      snapshots: members.map((m) => this.controller.csiSnapshot(m)),
      creationTime: timestamp(Math.min(...members.map((m) => m.createdAt))),
      readyToUse: true,
    };
  }
}
