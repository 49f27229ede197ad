/**
 * CSI end to end for cowfs (fs_type cowfs) on a real daemon: CreateVolume
 * makes a filesystem volume, NodeStage mounts cowfs at the staging path,
 * NodePublish binds it (read-only when asked; RWX and ROX shared by two
 * pods), files written at the target, a snapshot restored larger and a
 * clone, online expansion seen by NodeGetVolumeStats (bytes and inodes), a
 * daemon restart that serves the stage and its publishes again, a kind
 * that does not fit refused, and teardown leaving nothing mounted.
 */
import fs from 'node:fs';
import path from 'node:path';

import t from 'tap';

import { grpc } from '../src/csi/client.js';
import { MiB, NODE_ID, TOPOLOGY_KEY, blockCap, mountCap, mountsUnder, startCsi, type CsiSetup } from './helpers/csi.js';
import { cli } from './helpers/daemon.js';

const { status } = grpc;

function paths(s: CsiSetup, vol: string, pod: string): { staging: string; target: string } {
  return { staging: path.join(s.kubelet, 'staging', vol), target: path.join(s.kubelet, 'pods', pod, vol) };
}

async function create(s: CsiSetup, name: string, bytes: number, source?: object): Promise<string> {
  const r = await s.client.call<{ volume: { volumeId: string } }>('Controller', 'CreateVolume', {
    name,
    capacityRange: { requiredBytes: bytes },
    volumeCapabilities: [mountCap('cowfs', 'MULTI_NODE_MULTI_WRITER')],
    // RWX across pods: the volume lives on this node, as the driver asks of multi-node modes.
    accessibilityRequirements: { requisite: [{ segments: { [TOPOLOGY_KEY]: NODE_ID } }] },
    ...(source ? { volumeContentSource: source } : {}),
  });
  return r.volume.volumeId;
}

async function stage(s: CsiSetup, vol: string, mode = 'MULTI_NODE_MULTI_WRITER'): Promise<void> {
  await s.client.call('Node', 'NodeStageVolume', { volumeId: vol, stagingTargetPath: paths(s, vol, '').staging, volumeCapability: mountCap('cowfs', mode) });
}

async function publish(s: CsiSetup, vol: string, pod: string, readonly = false, mode = 'MULTI_NODE_MULTI_WRITER'): Promise<string> {
  const p = paths(s, vol, pod);
  fs.mkdirSync(path.dirname(p.target), { recursive: true });
  await s.client.call('Node', 'NodePublishVolume', { volumeId: vol, stagingTargetPath: p.staging, targetPath: p.target, volumeCapability: mountCap('cowfs', mode), readonly });
  return p.target;
}

async function teardown(s: CsiSetup, vol: string, pods: string[]): Promise<void> {
  for (const pod of pods) await s.client.call('Node', 'NodeUnpublishVolume', { volumeId: vol, targetPath: paths(s, vol, pod).target });
  await s.client.call('Node', 'NodeUnstageVolume', { volumeId: vol, stagingTargetPath: paths(s, vol, '').staging });
}

async function stats(s: CsiSetup, vol: string, at: string): Promise<{ bytes: number; inodesUsed: number; abnormal: boolean }> {
  const r = await s.client.call<{ usage: { unit: string; total: string | number; used: string | number }[]; volumeCondition: { abnormal: boolean } }>('Node', 'NodeGetVolumeStats', { volumeId: vol, volumePath: at });
  const bytes = r.usage.find((u) => u.unit === 'BYTES');
  const inodes = r.usage.find((u) => u.unit === 'INODES');
  return { bytes: Number(bytes?.total ?? 0), inodesUsed: Number(inodes?.used ?? -1), abnormal: r.volumeCondition.abnormal };
}

t.test('a cowfs volume through CSI: stage, publish to two pods, snapshot, restore larger, clone, expand, restart, teardown', async (t) => {
  const s = await startCsi(t, 'csi-cowfs');
  const vol = await create(s, 'pvc-cowfs', 64 * MiB);
  t.match(cli(s.pool, 'volume', 'list').stdout, new RegExp(`${vol}\\s+fs\\s+64 MiB`), 'CreateVolume made a filesystem volume');
  await stage(s, vol);
  await stage(s, vol); // idempotent
  const a = await publish(s, vol, 'pod-a');
  const b = await publish(s, vol, 'pod-b', true);
  fs.writeFileSync(path.join(a, 'hello'), 'from pod a');
  fs.mkdirSync(path.join(a, 'dir'));
  t.equal(fs.readFileSync(path.join(b, 'hello'), 'utf8'), 'from pod a', 'two pods share one filesystem on the node');
  t.throws(() => fs.writeFileSync(path.join(b, 'nope'), 'x'), { code: 'EROFS' }, 'a read-only publish is read-only');
  const st = await stats(s, vol, a);
  t.equal(st.bytes, 64 * MiB, 'stats: the volume size');
  t.equal(st.inodesUsed, 3, 'stats: inodes in use (root, a file, a directory)');
  t.notOk(st.abnormal);

  const snap = await s.client.call<{ snapshot: { snapshotId: string } }>('Controller', 'CreateSnapshot', { sourceVolumeId: vol, name: 'snap-1' });
  fs.writeFileSync(path.join(a, 'hello'), 'after the snapshot');
  const restored = await create(s, 'pvc-restored', 128 * MiB, { snapshot: { snapshotId: snap.snapshot.snapshotId } });
  const clone = await create(s, 'pvc-clone', 64 * MiB, { volume: { volumeId: vol } });
  await stage(s, restored);
  await stage(s, clone);
  const r = await publish(s, restored, 'pod-c');
  const c = await publish(s, clone, 'pod-d');
  t.equal(fs.readFileSync(path.join(r, 'hello'), 'utf8'), 'from pod a', 'the restore holds the snapshot');
  t.equal((await stats(s, restored, r)).bytes, 128 * MiB, 'restored larger');
  t.equal(fs.readFileSync(path.join(c, 'hello'), 'utf8'), 'after the snapshot', 'the clone holds the volume as it was');

  await s.client.call('Node', 'NodeExpandVolume', { volumeId: vol, volumePath: a, capacityRange: { requiredBytes: 256 * MiB } });
  t.equal((await stats(s, vol, a)).bytes, 256 * MiB, 'online expansion shows at once');

  // A restart: the stage is served again, and both publishes bound again.
  await s.restart('SIGTERM');
  t.equal(fs.readFileSync(path.join(b, 'hello'), 'utf8'), 'after the snapshot', 'a publish works after the daemon restarted');
  fs.writeFileSync(path.join(a, 'later'), 'ok');
  t.throws(() => fs.writeFileSync(path.join(b, 'nope'), 'x'), { code: 'EROFS' }, 'and keeps its read-only flag');

  await teardown(s, vol, ['pod-a', 'pod-b']);
  await teardown(s, restored, ['pod-c']);
  await teardown(s, clone, ['pod-d']);
  for (const v of [clone, restored, vol]) await s.client.call('Controller', 'DeleteVolume', { volumeId: v });
  await s.client.call('Controller', 'DeleteSnapshot', { snapshotId: snap.snapshot.snapshotId });
  t.same(mountsUnder(s.kubelet), [], 'nothing left mounted');
  t.equal(cli(s.pool, 'volume', 'list').stdout.trim(), 'no volumes');
  const check = cli(s.pool, 'check');
  t.equal(check.status, 0, check.stdout);
});

t.test('cowfs and the other kinds do not mix, and access modes hold', async (t) => {
  const s = await startCsi(t, 'csi-cowfs-refusals');
  const expectCode = async (what: string, code: number, call: () => Promise<unknown>): Promise<void> => {
    await t.rejects(call(), { code }, what);
  };
  await expectCode('cowfs with a mount flag', status.INVALID_ARGUMENT, () =>
    s.client.call('Controller', 'CreateVolume', { name: 'x', volumeCapabilities: [mountCap('cowfs', 'SINGLE_NODE_WRITER', ['noatime'])] }),
  );
  await expectCode('cowfs and block in one request', status.INVALID_ARGUMENT, () =>
    s.client.call('Controller', 'CreateVolume', { name: 'x', volumeCapabilities: [mountCap('cowfs'), blockCap()] }),
  );
  const blk = (await s.client.call<{ volume: { volumeId: string } }>('Controller', 'CreateVolume', { name: 'blk', capacityRange: { requiredBytes: 16 * MiB }, volumeCapabilities: [mountCap('ext4')] })).volume.volumeId;
  await expectCode('a block volume staged as cowfs', status.INVALID_ARGUMENT, () => stage(s, blk));
  const fsv = await create(s, 'fsv', 16 * MiB);
  await expectCode('a cowfs volume staged as ext4', status.INVALID_ARGUMENT, () =>
    s.client.call('Node', 'NodeStageVolume', { volumeId: fsv, stagingTargetPath: paths(s, fsv, '').staging, volumeCapability: mountCap('ext4') }),
  );
  await expectCode('a block snapshot restored as cowfs', status.INVALID_ARGUMENT, async () => {
    const snap = await s.client.call<{ snapshot: { snapshotId: string } }>('Controller', 'CreateSnapshot', { sourceVolumeId: blk, name: 'blk-snap' });
    await create(s, 'wrong', 16 * MiB, { snapshot: { snapshotId: snap.snapshot.snapshotId } });
  });
  await stage(s, fsv, 'SINGLE_NODE_SINGLE_WRITER');
  await publish(s, fsv, 'one', false, 'SINGLE_NODE_SINGLE_WRITER');
  await expectCode('RWOP: a second publish', status.FAILED_PRECONDITION, () => publish(s, fsv, 'two', false, 'SINGLE_NODE_SINGLE_WRITER'));
  await expectCode('unstage while published', status.FAILED_PRECONDITION, () =>
    s.client.call('Node', 'NodeUnstageVolume', { volumeId: fsv, stagingTargetPath: paths(s, fsv, '').staging }),
  );
  await expectCode('delete while staged', status.FAILED_PRECONDITION, () => s.client.call('Controller', 'DeleteVolume', { volumeId: fsv }));
  await teardown(s, fsv, ['one']);
  t.same(mountsUnder(s.kubelet), [], 'nothing left mounted');
});
