/**
 * The CSI Identity, Controller and GroupController services of a real
 * daemon, over gRPC on its unix socket: each RPC's success, its idempotent
 * retry, and every error code it can return, with the pool unchanged after
 * each rejected call.
 */
import fs from 'node:fs';

import t from 'tap';

import { grpc } from '../src/csi/client.js';
import { MiB, NODE_ID, TOPOLOGY_KEY, blockCap, mountCap, startCsi, type CsiSetup } from './helpers/csi.js';
import { cli, sh } from './helpers/daemon.js';

const { status } = grpc;

interface Vol {
  volumeId: string;
  capacityBytes: number;
  contentSource: { snapshot?: { snapshotId: string } | null; volume?: { volumeId: string } | null } | null;
  accessibleTopology: { segments: Record<string, string> }[];
}
interface Snap {
  snapshotId: string;
  sourceVolumeId: string;
  sizeBytes: number;
  readyToUse: boolean;
  groupSnapshotId: string;
  creationTime: { seconds: number };
}

async function create(s: CsiSetup, name: string, req: object = {}): Promise<Vol> {
  const r = await s.client.call<{ volume: Vol }>('Controller', 'CreateVolume', { name, volumeCapabilities: [mountCap()], ...req });
  return r.volume;
}

/** What the pool holds, as the CLI prints it: compared around rejected calls. */
function poolState(s: CsiSetup): string {
  const r = cli(s.pool, 'volume', 'list', '--json');
  return r.stdout;
}

t.test('Identity: plugin info, capabilities, probe', async (t) => {
  const s = await startCsi(t, 'csi-identity');
  const info = await s.client.call('Identity', 'GetPluginInfo');
  t.equal(info.name, 'cowvol.csi.dev');
  t.match(info.vendorVersion, /^\d+\.\d+\.\d+/);
  const caps = await s.client.call<{ capabilities: { service?: { type: string } | null; volumeExpansion?: { type: string } | null }[] }>('Identity', 'GetPluginCapabilities');
  const names = caps.capabilities.map((c) => c.service?.type ?? `expansion:${c.volumeExpansion?.type}`);
  t.same(names.sort(), ['CONTROLLER_SERVICE', 'GROUP_CONTROLLER_SERVICE', 'VOLUME_ACCESSIBILITY_CONSTRAINTS', 'expansion:ONLINE'].sort());
  t.same(await s.client.call('Identity', 'Probe'), { ready: { value: true } });
  t.equal(fs.statSync(s.socket).mode & 0o777, 0o600, 'the socket is mode 0600');
  const gc = await s.client.call<{ capabilities: { rpc: { type: string } }[] }>('GroupController', 'GroupControllerGetCapabilities');
  t.same(gc.capabilities.map((c) => c.rpc.type), ['CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT']);
  const cc = await s.client.call<{ capabilities: { rpc: { type: string } }[] }>('Controller', 'ControllerGetCapabilities');
  const rpcs = cc.capabilities.map((c) => c.rpc.type);
  for (const want of ['CREATE_DELETE_VOLUME', 'LIST_VOLUMES', 'GET_CAPACITY', 'CREATE_DELETE_SNAPSHOT', 'LIST_SNAPSHOTS', 'CLONE_VOLUME', 'GET_VOLUME', 'VOLUME_CONDITION']) {
    t.ok(rpcs.includes(want), `controller capability ${want}`);
  }
  t.notOk(rpcs.includes('PUBLISH_UNPUBLISH_VOLUME'), 'no controller publish: attachRequired is false');
  t.notOk(rpcs.includes('EXPAND_VOLUME'), 'no controller expansion: volumes grow on their node (NodeExpandVolume)');
  t.equal((await s.client.code('Controller', 'ControllerPublishVolume', { volumeId: 'x', nodeId: NODE_ID })).code, status.UNIMPLEMENTED);
  t.equal((await s.client.code('Controller', 'ControllerUnpublishVolume', { volumeId: 'x' })).code, status.UNIMPLEMENTED);
  t.equal((await s.client.code('Controller', 'ControllerModifyVolume', { volumeId: 'x', mutableParameters: { a: 'b' } })).code, status.UNIMPLEMENTED, 'no mutable parameters');
});

t.test('CreateVolume and DeleteVolume: sizes, topology, idempotency, every error code', async (t) => {
  const s = await startCsi(t, 'csi-create');
  const v = await create(s, 'pvc-a', { capacityRange: { requiredBytes: 10 * MiB + 1 } });
  t.equal(v.volumeId, 'pvc-a', 'a valid CSI name is the volume id');
  t.equal(v.capacityBytes, 11 * MiB, 'rounded up to a MiB');
  t.same(v.accessibleTopology, [{ segments: { [TOPOLOGY_KEY]: NODE_ID } }], 'pinned to this node');
  t.equal((await create(s, 'pvc-b')).capacityBytes, 1 << 30, 'no range: 1 GiB (thin)');
  t.equal((await create(s, 'pvc-c', { capacityRange: { limitBytes: 5 * MiB + 4096 } })).capacityBytes, 5 * MiB + 4096, 'only a limit: the limit');
  t.equal((await create(s, 'pvc-x', { volumeCapabilities: [mountCap('xfs')], capacityRange: { requiredBytes: MiB } })).capacityBytes, 300 * MiB, 'xfs: raised to its 300 MiB minimum');
  const odd = await create(s, 'Weird Name/1');
  t.match(odd.volumeId, /^csi-[0-9a-f]{40}$/, 'a name the pool cannot hold is hashed');
  t.equal((await create(s, 'Weird Name/1')).volumeId, odd.volumeId, 'and found again by its name');

  // Idempotency: the same request gives the same volume.
  t.same(await create(s, 'pvc-a', { capacityRange: { requiredBytes: 10 * MiB + 1 } }), v, 'retry: same volume');
  t.same(await create(s, 'pvc-a', { capacityRange: { requiredBytes: 11 * MiB, limitBytes: 20 * MiB } }), v, 'a range the volume satisfies: same volume');

  // Multi-node modes only when topology pins the volume here.
  const pinned = { accessibilityRequirements: { requisite: [{ segments: { [TOPOLOGY_KEY]: NODE_ID } }] } };
  t.equal((await create(s, 'pvc-rwx', { volumeCapabilities: [mountCap('ext4', 'MULTI_NODE_MULTI_WRITER')], ...pinned })).volumeId, 'pvc-rwx');
  t.equal((await create(s, 'pvc-pref', { accessibilityRequirements: { preferred: [{ segments: { [TOPOLOGY_KEY]: 'other' } }] } })).volumeId, 'pvc-pref', 'preferred elsewhere but not required: here');

  const before = poolState(s);
  const bad: [string, object, number][] = [
    ['no name', { name: '', volumeCapabilities: [mountCap()] }, status.INVALID_ARGUMENT],
    ['name too long', { name: 'x'.repeat(129), volumeCapabilities: [mountCap()] }, status.INVALID_ARGUMENT],
    ['control characters', { name: 'a\u0001b', volumeCapabilities: [mountCap()] }, status.INVALID_ARGUMENT],
    ['no capabilities', { name: 'n1' }, status.INVALID_ARGUMENT],
    ['no access mode', { name: 'n1', volumeCapabilities: [{ mount: { fsType: 'ext4' } }] }, status.INVALID_ARGUMENT],
    ['no access type', { name: 'n1', volumeCapabilities: [{ accessMode: { mode: 'SINGLE_NODE_WRITER' } }] }, status.INVALID_ARGUMENT],
    ['unsupported fs', { name: 'n1', volumeCapabilities: [mountCap('btrfs')] }, status.INVALID_ARGUMENT],
    ['bad mount flag', { name: 'n1', volumeCapabilities: [mountCap('ext4', 'SINGLE_NODE_WRITER', ['ro,exec'])] }, status.INVALID_ARGUMENT],
    ['unknown parameter', { name: 'n1', volumeCapabilities: [mountCap()], parameters: { type: 'io1' } }, status.INVALID_ARGUMENT],
    ['mutable parameters', { name: 'n1', volumeCapabilities: [mountCap()], mutableParameters: { iops: '5' } }, status.INVALID_ARGUMENT],
    ['required above limit', { name: 'n1', volumeCapabilities: [mountCap()], capacityRange: { requiredBytes: 8 * MiB, limitBytes: 4 * MiB } }, status.INVALID_ARGUMENT],
    ['xfs limit below its minimum', { name: 'n1', volumeCapabilities: [mountCap('xfs')], capacityRange: { limitBytes: 100 * MiB } }, status.OUT_OF_RANGE],
    ['limit not a 4 KiB multiple and too small', { name: 'n1', volumeCapabilities: [mountCap()], capacityRange: { requiredBytes: 1, limitBytes: 100 } }, status.OUT_OF_RANGE],
    ['requisite topology elsewhere', { name: 'n1', volumeCapabilities: [mountCap()], accessibilityRequirements: { requisite: [{ segments: { [TOPOLOGY_KEY]: 'other' } }] } }, status.RESOURCE_EXHAUSTED],
    ['multi-node mode unpinned', { name: 'n1', volumeCapabilities: [mountCap('ext4', 'MULTI_NODE_READER_ONLY')] }, status.INVALID_ARGUMENT],
    ['multi-node mode, requisite not only here', { name: 'n1', volumeCapabilities: [blockCap('MULTI_NODE_MULTI_WRITER')], accessibilityRequirements: { requisite: [{ segments: { [TOPOLOGY_KEY]: NODE_ID } }, { segments: { [TOPOLOGY_KEY]: 'b' } }] } }, status.INVALID_ARGUMENT],
    ['same name, larger size', { name: 'pvc-a', volumeCapabilities: [mountCap()], capacityRange: { requiredBytes: 64 * MiB } }, status.ALREADY_EXISTS],
    ['same name, smaller limit', { name: 'pvc-a', volumeCapabilities: [mountCap()], capacityRange: { limitBytes: 5 * MiB } }, status.ALREADY_EXISTS],
    ['same name, other source', { name: 'pvc-a', volumeCapabilities: [mountCap()], capacityRange: { requiredBytes: 11 * MiB }, volumeContentSource: { volume: { volumeId: 'pvc-b' } } }, status.ALREADY_EXISTS],
    ['snapshot source missing', { name: 'n1', volumeCapabilities: [mountCap()], volumeContentSource: { snapshot: { snapshotId: 'pvc-a@nope' } } }, status.NOT_FOUND],
    ['volume source missing', { name: 'n1', volumeCapabilities: [mountCap()], volumeContentSource: { volume: { volumeId: 'nope' } } }, status.NOT_FOUND],
    ['source smaller than the limit allows', { name: 'n1', volumeCapabilities: [mountCap()], volumeContentSource: { volume: { volumeId: 'pvc-b' } }, capacityRange: { limitBytes: 64 * MiB } }, status.OUT_OF_RANGE],
  ];
  for (const [what, req, code] of bad) {
    const r = await s.client.code('Controller', 'CreateVolume', req);
    t.equal(r.code, code, `${what}: ${status[code]} (${r.message})`);
    t.not(r.message, '', `${what}: the message says why`);
  }
  t.equal(poolState(s), before, 'rejected calls changed nothing');

  // Delete: idempotent; a missing id is the caller's mistake.
  t.equal((await s.client.code('Controller', 'DeleteVolume', { volumeId: 'pvc-c' })).code, status.OK);
  t.equal((await s.client.code('Controller', 'DeleteVolume', { volumeId: 'pvc-c' })).code, status.OK, 'deleting again is OK');
  t.equal((await s.client.code('Controller', 'DeleteVolume', { volumeId: 'never-was' })).code, status.OK, 'deleting a volume that never was is OK');
  t.equal((await s.client.code('Controller', 'DeleteVolume', { volumeId: '' })).code, status.INVALID_ARGUMENT);
  t.notMatch(poolState(s), /"pvc-c"/, 'pvc-c is gone from the pool');
});

t.test('content sources: restore a snapshot to a larger size, clone a volume, both O(1) and with the data', async (t) => {
  const s = await startCsi(t, 'csi-source');
  await create(s, 'src', { capacityRange: { requiredBytes: 8 * MiB }, volumeCapabilities: [blockCap()] });
  const file = s.daemon.file('src');
  fs.writeFileSync(file, Buffer.alloc(MiB, 0x5a), { flag: 'r+' });
  const snap = (await s.client.call<{ snapshot: Snap }>('Controller', 'CreateSnapshot', { sourceVolumeId: 'src', name: 'snap-1' })).snapshot;
  fs.writeFileSync(file, Buffer.alloc(MiB, 0x11), { flag: 'r+' });
  const restored = await create(s, 'restored', { capacityRange: { requiredBytes: 32 * MiB }, volumeCapabilities: [blockCap()], volumeContentSource: { snapshot: { snapshotId: snap.snapshotId } } });
  t.equal(restored.capacityBytes, 32 * MiB, 'restored to the larger size');
  t.same(restored.contentSource?.snapshot, { snapshotId: snap.snapshotId }, 'content source echoed');
  const head = Buffer.alloc(MiB);
  const fd = fs.openSync(s.daemon.file('restored'), 'r');
  fs.readSync(fd, head, 0, MiB, 0);
  fs.closeSync(fd);
  t.ok(head.equals(Buffer.alloc(MiB, 0x5a)), 'the restore holds the data as of the snapshot');
  const clone = await create(s, 'clone', { volumeCapabilities: [blockCap()], volumeContentSource: { volume: { volumeId: 'src' } } });
  t.equal(clone.capacityBytes, 8 * MiB, 'a clone without a range has the source size');
  t.same(clone.contentSource?.volume, { volumeId: 'src' });
  const show = JSON.parse(cli(s.pool, 'volume', 'show', 'clone', '--json').stdout) as { allocatedBytes: number; exclusiveBytes: number };
  t.equal(show.exclusiveBytes, 0, 'the clone shares every chunk (O(1), no copy)');
  t.ok(fs.readFileSync(s.daemon.file('clone')).subarray(0, MiB).equals(Buffer.alloc(MiB, 0x11)), 'the clone holds the live data');
});

t.test('ValidateVolumeCapabilities, ListVolumes paging, GetCapacity, ControllerGetVolume', async (t) => {
  const s = await startCsi(t, 'csi-list', ['--capacity', '256M']);
  for (const n of ['v1', 'v2', 'v3', 'v4', 'v5']) await create(s, n, { capacityRange: { requiredBytes: 16 * MiB }, volumeCapabilities: [blockCap()] });

  const ok = await s.client.call<{ confirmed: { volumeCapabilities: object[] } | null; message: string }>('Controller', 'ValidateVolumeCapabilities', { volumeId: 'v1', volumeCapabilities: [blockCap(), mountCap('xfs')] });
  t.equal(ok.confirmed?.volumeCapabilities.length, 2, 'supported capabilities are confirmed');
  const no = await s.client.call<{ confirmed: object | null; message: string }>('Controller', 'ValidateVolumeCapabilities', { volumeId: 'v1', volumeCapabilities: [mountCap('zfs')] });
  t.equal(no.confirmed, null, 'unsupported: not confirmed');
  t.match(no.message, /zfs/);
  t.equal((await s.client.code('Controller', 'ValidateVolumeCapabilities', { volumeId: 'nope', volumeCapabilities: [blockCap()] })).code, status.NOT_FOUND);
  t.equal((await s.client.code('Controller', 'ValidateVolumeCapabilities', { volumeId: 'v1' })).code, status.INVALID_ARGUMENT);
  t.equal((await s.client.code('Controller', 'ValidateVolumeCapabilities', { volumeCapabilities: [blockCap()] })).code, status.INVALID_ARGUMENT);

  type Page = { entries: { volume: Vol; status: { volumeCondition: { abnormal: boolean } } }[]; nextToken: string };
  const seen: string[] = [];
  let token = '';
  for (let i = 0; i < 10; i++) {
    const page = await s.client.call<Page>('Controller', 'ListVolumes', { maxEntries: 2, startingToken: token });
    t.ok(page.entries.length <= 2, 'never more than max_entries');
    for (const e of page.entries) {
      seen.push(e.volume.volumeId);
      t.equal(e.status.volumeCondition.abnormal, false);
    }
    token = page.nextToken;
    if (token === '') break;
  }
  t.same(seen, ['v1', 'v2', 'v3', 'v4', 'v5'], 'paging returns each volume once, in order');
  t.equal((await s.client.call<Page>('Controller', 'ListVolumes', {})).entries.length, 5, 'no max: all');
  t.equal((await s.client.code('Controller', 'ListVolumes', { startingToken: 'bogus' })).code, status.ABORTED, 'a bad token: ABORTED');
  t.equal((await s.client.code('Controller', 'ListVolumes', { maxEntries: -1 })).code, status.INVALID_ARGUMENT);

  const cap0 = (await s.client.call<{ availableCapacity: number }>('Controller', 'GetCapacity', {})).availableCapacity;
  t.equal(cap0, 256 * MiB, 'an empty pool with a 256M capacity has 256M free');
  sh('dd', ['if=/dev/urandom', `of=${s.daemon.file('v1')}`, 'bs=1M', 'count=16', 'conv=notrunc,fsync', 'status=none']);
  const cap1 = (await s.client.call<{ availableCapacity: number }>('Controller', 'GetCapacity', { volumeCapabilities: [blockCap()] })).availableCapacity;
  t.equal(cap1, 240 * MiB, 'writing 16 MiB takes 16 MiB of real free space');
  t.equal((await s.client.call<{ availableCapacity: number }>('Controller', 'GetCapacity', { accessibleTopology: { segments: { [TOPOLOGY_KEY]: 'other' } } })).availableCapacity, 0, 'another node: nothing here');
  t.equal((await s.client.code('Controller', 'GetCapacity', { volumeCapabilities: [mountCap('ntfs')] })).code, status.INVALID_ARGUMENT);

  const got = await s.client.call<{ volume: Vol; status: { volumeCondition: { abnormal: boolean; message: string } } }>('Controller', 'ControllerGetVolume', { volumeId: 'v2' });
  t.equal(got.volume.capacityBytes, 16 * MiB);
  t.same(got.status.volumeCondition, { abnormal: false, message: 'healthy' });
  t.equal((await s.client.code('Controller', 'ControllerGetVolume', { volumeId: 'nope' })).code, status.NOT_FOUND);
  t.equal((await s.client.code('Controller', 'ControllerGetVolume', {})).code, status.INVALID_ARGUMENT);
});

t.test('snapshots: create, idempotency, list with filters and paging, get, delete', async (t) => {
  const s = await startCsi(t, 'csi-snap');
  await create(s, 'a', { capacityRange: { requiredBytes: 4 * MiB }, volumeCapabilities: [blockCap()] });
  await create(s, 'b', { capacityRange: { requiredBytes: 4 * MiB }, volumeCapabilities: [blockCap()] });
  const t0 = Math.floor(Date.now() / 1000);
  const s1 = (await s.client.call<{ snapshot: Snap }>('Controller', 'CreateSnapshot', { sourceVolumeId: 'a', name: 'snap-1' })).snapshot;
  t.equal(s1.snapshotId, 'a@snap-1');
  t.equal(s1.sourceVolumeId, 'a');
  t.equal(s1.sizeBytes, 4 * MiB);
  t.equal(s1.readyToUse, true);
  t.ok(Math.abs(s1.creationTime.seconds - t0) <= 2, 'creation time is now');
  t.same((await s.client.call<{ snapshot: Snap }>('Controller', 'CreateSnapshot', { sourceVolumeId: 'a', name: 'snap-1' })).snapshot, s1, 'retry: same snapshot');
  await s.client.call('Controller', 'CreateSnapshot', { sourceVolumeId: 'a', name: 'snap-2' });
  await s.client.call('Controller', 'CreateSnapshot', { sourceVolumeId: 'b', name: 'snap-3' });

  const before = poolState(s);
  const bad: [string, object, number][] = [
    ['same name, other volume', { sourceVolumeId: 'b', name: 'snap-1' }, status.ALREADY_EXISTS],
    ['no source', { name: 'x' }, status.INVALID_ARGUMENT],
    ['no name', { sourceVolumeId: 'a' }, status.INVALID_ARGUMENT],
    ['source missing', { sourceVolumeId: 'zz', name: 'x' }, status.NOT_FOUND],
    ['source is a snapshot', { sourceVolumeId: 'a@snap-1', name: 'x' }, status.NOT_FOUND],
    ['unknown parameter', { sourceVolumeId: 'a', name: 'x', parameters: { retain: 'yes' } }, status.INVALID_ARGUMENT],
  ];
  for (const [what, req, code] of bad) t.equal((await s.client.code('Controller', 'CreateSnapshot', req)).code, code, `${what}: ${status[code]}`);
  t.equal(poolState(s), before, 'rejected calls changed nothing');

  type List = { entries: { snapshot: Snap }[]; nextToken: string };
  const ids = async (req: object): Promise<string[]> => (await s.client.call<List>('Controller', 'ListSnapshots', req)).entries.map((e) => e.snapshot.snapshotId);
  t.same(await ids({}), ['a@snap-1', 'a@snap-2', 'b@snap-3']);
  t.same(await ids({ sourceVolumeId: 'a' }), ['a@snap-1', 'a@snap-2'], 'by source volume');
  t.same(await ids({ snapshotId: 'b@snap-3' }), ['b@snap-3'], 'by id');
  t.same(await ids({ snapshotId: 'b@nope' }), [], 'an unknown id: empty');
  const p1 = await s.client.call<List>('Controller', 'ListSnapshots', { maxEntries: 2 });
  t.equal(p1.entries.length, 2);
  const p2 = await s.client.call<List>('Controller', 'ListSnapshots', { maxEntries: 2, startingToken: p1.nextToken });
  t.same(p2.entries.map((e) => e.snapshot.snapshotId), ['b@snap-3']);
  t.equal(p2.nextToken, '');
  t.equal((await s.client.code('Controller', 'ListSnapshots', { startingToken: '99' })).code, status.ABORTED);

  t.same((await s.client.call<{ snapshot: Snap }>('Controller', 'GetSnapshot', { snapshotId: 'a@snap-1' })).snapshot, s1);
  t.equal((await s.client.code('Controller', 'GetSnapshot', { snapshotId: 'a@gone' })).code, status.NOT_FOUND);
  t.equal((await s.client.code('Controller', 'GetSnapshot', {})).code, status.INVALID_ARGUMENT);

  t.equal((await s.client.code('Controller', 'DeleteSnapshot', { snapshotId: 'a@snap-1' })).code, status.OK);
  t.equal((await s.client.code('Controller', 'DeleteSnapshot', { snapshotId: 'a@snap-1' })).code, status.OK, 'again: OK');
  t.equal((await s.client.code('Controller', 'DeleteSnapshot', { snapshotId: 'not-a-snapshot' })).code, status.OK, 'an id that never was: OK');
  t.equal((await s.client.code('Controller', 'DeleteSnapshot', {})).code, status.INVALID_ARGUMENT);
  t.same(await ids({}), ['a@snap-2', 'b@snap-3']);
  // A volume with snapshots can be deleted; the snapshot stays restorable.
  t.equal((await s.client.code('Controller', 'DeleteVolume', { volumeId: 'b' })).code, status.OK);
  const r = await create(s, 'from-orphan', { volumeCapabilities: [blockCap()], volumeContentSource: { snapshot: { snapshotId: 'b@snap-3' } } });
  t.equal(r.capacityBytes, 4 * MiB, 'restored from a snapshot whose volume is gone');
});

t.test('ControllerExpandVolume is not offered: the resizer only marks the claim, the node grows the volume', async (t) => {
  const s = await startCsi(t, 'csi-expand');
  await create(s, 'e', { capacityRange: { requiredBytes: 8 * MiB } });
  const before = poolState(s);
  const r = await s.client.code('Controller', 'ControllerExpandVolume', { volumeId: 'e', capacityRange: { requiredBytes: 20 * MiB }, volumeCapability: mountCap() });
  t.equal(r.code, status.UNIMPLEMENTED);
  t.match(r.message, /NodeExpandVolume/, 'and says where growth happens');
  t.equal(poolState(s), before, 'nothing changed');
  t.equal(fs.statSync(s.daemon.file('e')).size, 8 * MiB);
});

t.test('group snapshots: one instant across volumes, idempotent, deleted as a whole, durable at once', async (t) => {
  const s = await startCsi(t, 'csi-group');
  for (const n of ['db', 'wal', 'other']) await create(s, n, { capacityRange: { requiredBytes: 4 * MiB }, volumeCapabilities: [blockCap()] });
  fs.writeFileSync(s.daemon.file('db'), Buffer.alloc(MiB, 1), { flag: 'r+' });
  fs.writeFileSync(s.daemon.file('wal'), Buffer.alloc(MiB, 2), { flag: 'r+' });
  type G = { groupSnapshot: { groupSnapshotId: string; snapshots: Snap[]; readyToUse: boolean; creationTime: { seconds: number } } };
  const g = (await s.client.call<G>('GroupController', 'CreateVolumeGroupSnapshot', { name: 'group-1', sourceVolumeIds: ['db', 'wal'] })).groupSnapshot;
  fs.writeFileSync(s.daemon.file('db'), Buffer.alloc(MiB, 9), { flag: 'r+' });
  t.equal(g.groupSnapshotId, 'group-1');
  t.equal(g.readyToUse, true);
  t.same(g.snapshots.map((x) => x.snapshotId).sort(), ['db@group-1', 'wal@group-1']);
  t.ok(g.snapshots.every((x) => x.groupSnapshotId === 'group-1' && x.readyToUse), 'members name their group');
  t.ok(fs.readFileSync(s.daemon.file('db@group-1')).subarray(0, MiB).equals(Buffer.alloc(MiB, 1)), 'db member: data as of the group snapshot');
  t.ok(fs.readFileSync(s.daemon.file('wal@group-1')).subarray(0, MiB).equals(Buffer.alloc(MiB, 2)), 'wal member: data as of the group snapshot');
  t.same((await s.client.call<G>('GroupController', 'CreateVolumeGroupSnapshot', { name: 'group-1', sourceVolumeIds: ['wal', 'db'] })).groupSnapshot, g, 'retry: same group');

  const before = poolState(s);
  const bad: [string, string, object, number][] = [
    ['other volumes', 'CreateVolumeGroupSnapshot', { name: 'group-1', sourceVolumeIds: ['db', 'other'] }, status.ALREADY_EXISTS],
    ['no name', 'CreateVolumeGroupSnapshot', { sourceVolumeIds: ['db'] }, status.INVALID_ARGUMENT],
    ['no volumes', 'CreateVolumeGroupSnapshot', { name: 'g2' }, status.INVALID_ARGUMENT],
    ['a volume twice', 'CreateVolumeGroupSnapshot', { name: 'g2', sourceVolumeIds: ['db', 'db'] }, status.INVALID_ARGUMENT],
    ['a missing volume (none made)', 'CreateVolumeGroupSnapshot', { name: 'g2', sourceVolumeIds: ['db', 'missing'] }, status.NOT_FOUND],
    ['get: unknown group', 'GetVolumeGroupSnapshot', { groupSnapshotId: 'g9' }, status.NOT_FOUND],
    ['get: wrong member list', 'GetVolumeGroupSnapshot', { groupSnapshotId: 'group-1', snapshotIds: ['db@group-1'] }, status.INVALID_ARGUMENT],
    ['get: no id', 'GetVolumeGroupSnapshot', {}, status.INVALID_ARGUMENT],
    ['delete: wrong member list', 'DeleteVolumeGroupSnapshot', { groupSnapshotId: 'group-1', snapshotIds: ['x@y'] }, status.INVALID_ARGUMENT],
    ['delete: no id', 'DeleteVolumeGroupSnapshot', {}, status.INVALID_ARGUMENT],
  ];
  for (const [what, method, req, code] of bad) t.equal((await s.client.code('GroupController', method, req)).code, code, `${what}: ${status[code]}`);
  t.equal((await s.client.code('Controller', 'DeleteSnapshot', { snapshotId: 'db@group-1' })).code, status.FAILED_PRECONDITION, 'a member is not deleted alone');
  t.equal(poolState(s), before, 'rejected calls changed nothing');
  const got = (await s.client.call<G>('GroupController', 'GetVolumeGroupSnapshot', { groupSnapshotId: 'group-1', snapshotIds: ['wal@group-1', 'db@group-1'] })).groupSnapshot;
  t.same(got, g, 'get: the same group');

  // Durable the moment it returns: kill -9 and look again.
  await s.restart('SIGKILL');
  t.same((await s.client.call<G>('GroupController', 'GetVolumeGroupSnapshot', { groupSnapshotId: 'group-1' })).groupSnapshot, g, 'after kill -9: the group is whole');
  t.equal((await s.client.code('GroupController', 'DeleteVolumeGroupSnapshot', { groupSnapshotId: 'group-1', snapshotIds: ['db@group-1', 'wal@group-1'] })).code, status.OK);
  t.equal((await s.client.code('GroupController', 'DeleteVolumeGroupSnapshot', { groupSnapshotId: 'group-1' })).code, status.OK, 'again: OK');
  t.equal((await s.client.code('GroupController', 'GetVolumeGroupSnapshot', { groupSnapshotId: 'group-1' })).code, status.NOT_FOUND);
  t.notMatch(cli(s.pool, 'snapshot', 'list').stdout, /group-1/, 'no member left');
  t.equal(cli(s.pool, 'check').status, 0, 'pool check clean');
});
