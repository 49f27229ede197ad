/**
 * The CSI Node service end to end on a real daemon: loop devices, mkfs,
 * mounts and binds made by the kernel, data written by real processes at
 * the target, snapshots restored and volumes cloned under a mounted
 * filesystem, online expansion, access modes, inline ephemeral volumes,
 * and daemon restarts between the steps. Each test ends by checking that
 * no loop device, mount or chunk is left.
 */
import fs from 'node:fs';
import path from 'node:path';

import t, { type Test } from 'tap';

import { grpc } from '../src/csi/client.js';
import { MiB, NODE_ID, TOPOLOGY_KEY, blockCap, loopsOf, mountCap, mountsUnder, startCsi, type CsiSetup } from './helpers/csi.js';
import { bin, cli, sh } from './helpers/daemon.js';
import { tmpDir } from './helpers/pools.js';

const { status } = grpc;

type Kind = 'block' | 'ext4' | 'xfs';

function capOf(kind: Kind, mode = 'SINGLE_NODE_WRITER'): object {
  return kind === 'block' ? blockCap(mode) : mountCap(kind, mode);
}

async function createVol(s: CsiSetup, name: string, kind: Kind, bytes: number, extra: object = {}): Promise<string> {
  const r = await s.client.call<{ volume: { volumeId: string } }>('Controller', 'CreateVolume', {
    name,
    capacityRange: { requiredBytes: bytes },
    volumeCapabilities: [capOf(kind)],
    ...extra,
  });
  return r.volume.volumeId;
}

function paths(s: CsiSetup, vol: string, pod = 'pod1'): { staging: string; target: string } {
  return { staging: path.join(s.kubelet, 'staging', vol), target: path.join(s.kubelet, 'pods', pod, vol) };
}

async function stageAndPublish(s: CsiSetup, vol: string, kind: Kind, pod = 'pod1', mode = 'SINGLE_NODE_WRITER', readonly = false): Promise<string> {
  const p = paths(s, vol, pod);
  fs.mkdirSync(path.dirname(p.target), { recursive: true });
  await s.client.call('Node', 'NodeStageVolume', { volumeId: vol, stagingTargetPath: p.staging, volumeCapability: capOf(kind, mode) });
  await s.client.call('Node', 'NodePublishVolume', { volumeId: vol, stagingTargetPath: p.staging, targetPath: p.target, volumeCapability: capOf(kind, mode), readonly });
  return p.target;
}

async function unpublishAndUnstage(s: CsiSetup, vol: string, pod = 'pod1'): Promise<void> {
  const p = paths(s, vol, pod);
  await s.client.call('Node', 'NodeUnpublishVolume', { volumeId: vol, targetPath: p.target });
  await s.client.call('Node', 'NodeUnstageVolume', { volumeId: vol, stagingTargetPath: p.staging });
}

/** Writes through the target the way a pod would: a file on the filesystem, or the device itself. */
function writeAt(kind: Kind, target: string, data: Buffer, name = 'data.bin'): void {
  if (kind === 'block') {
    const fd = fs.openSync(target, 'r+');
    fs.writeSync(fd, data, 0, data.length, 0);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
  } else {
    fs.writeFileSync(path.join(target, name), data);
    const fd = fs.openSync(path.join(target, name), 'r');
    fs.fsyncSync(fd);
    fs.closeSync(fd);
  }
}

function readAt(kind: Kind, target: string, length: number, name = 'data.bin'): Buffer {
  if (kind === 'block') {
    const fd = fs.openSync(target, 'r');
    const b = Buffer.alloc(length);
    fs.readSync(fd, b, 0, length, 0);
    fs.closeSync(fd);
    return b;
  }
  return fs.readFileSync(path.join(target, name));
}

/** Size a process sees at the target: the device's bytes, or the filesystem's. */
function sizeAt(kind: Kind, target: string): number {
  if (kind === 'block') return Number(sh('blockdev', ['--getsize64', target]).stdout.trim());
  const st = fs.statfsSync(target);
  return st.blocks * st.bsize;
}

async function assertNothingLeft(t: Test, s: CsiSetup): Promise<void> {
  t.same(loopsOf(s), [], 'no loop device left');
  t.same(mountsUnder(s.kubelet), [], 'no mount left under the kubelet directory');
  const stats = JSON.parse(cli(s.pool, 'pool', 'show', '--json').stdout) as { usedBytes: number; volumes: number; snapshots: number };
  t.equal(stats.volumes + stats.snapshots, 0, 'no volume or snapshot left');
  t.equal(stats.usedBytes, 0, 'no chunk left');
  t.equal(cli(s.pool, 'check').status, 0, 'pool check clean');
}

function hasCapSysResource(): boolean {
  const line = fs.readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith('CapEff:')) ?? '';
  return (BigInt(`0x${line.split(/\s+/)[1] ?? '0'}`) & (1n << 24n)) !== 0n;
}

async function endToEnd(t: Test, kind: Kind): Promise<void> {
  const s = await startCsi(t, `csi-e2e-${kind}`);
  const size = kind === 'xfs' ? 320 * MiB : 64 * MiB;
  const vol = await createVol(s, `pvc-${kind}`, kind, size);
  const target = await stageAndPublish(s, vol, kind);
  // Filesystems keep some of the device for themselves (xfs its log), so "about".
  t.ok(sizeAt(kind, target) <= size && sizeAt(kind, target) > size * 0.7, `the target shows about ${size} bytes (${sizeAt(kind, target)})`);

  const first = Buffer.alloc(MiB, 0x41);
  writeAt(kind, target, first);
  t.ok(readAt(kind, target, MiB).equals(first), 'a process wrote at the target and reads it back');

  const stats = await s.client.call<{ usage: { unit: string; total: number; used: number }[]; volumeCondition: { abnormal: boolean } }>('Node', 'NodeGetVolumeStats', { volumeId: vol, volumePath: target });
  const bytes = stats.usage.find((u) => u.unit === 'BYTES');
  t.ok(bytes !== undefined && bytes.total > 0 && bytes.used >= (kind === 'block' ? MiB : 0), 'stats: bytes');
  if (kind !== 'block') t.ok(stats.usage.some((u) => u.unit === 'INODES' && u.total > 0), 'stats: inodes');
  t.equal(stats.volumeCondition.abnormal, false, 'condition normal');

  // Snapshot, write on, restore the snapshot larger: the restore has the old data and the new size.
  const snap = (await s.client.call<{ snapshot: { snapshotId: string } }>('Controller', 'CreateSnapshot', { sourceVolumeId: vol, name: `snap-${kind}` })).snapshot.snapshotId;
  writeAt(kind, target, Buffer.alloc(MiB, 0x42));
  const restored = await createVol(s, `restored-${kind}`, kind, size * 2, { volumeContentSource: { snapshot: { snapshotId: snap } } });
  const rTarget = await stageAndPublish(s, restored, kind, 'pod2');
  t.ok(readAt(kind, rTarget, MiB).equals(first), 'the restore holds the data as of the snapshot');
  t.ok(sizeAt(kind, rTarget) > size * 1.5, `the restore has the larger size inside (${sizeAt(kind, rTarget)})`);

  // Clone the live, mounted volume.
  const clone = await createVol(s, `clone-${kind}`, kind, size, { volumeContentSource: { volume: { volumeId: vol } } });
  const cTarget = await stageAndPublish(s, clone, kind, 'pod3');
  t.ok(readAt(kind, cTarget, MiB).equals(Buffer.alloc(MiB, 0x42)), 'the clone holds the live data');
  writeAt(kind, cTarget, Buffer.alloc(MiB, 0x43));
  t.ok(readAt(kind, target, MiB).equals(Buffer.alloc(MiB, 0x42)), 'writing the clone leaves the source alone');

  // Expand online while mounted: all of it on the node (the resizer only marks the claim).
  const grown = size + 64 * MiB;
  const before = sizeAt(kind, target);
  const p = paths(s, vol);
  if (kind === 'block') {
    const ne = await s.client.call<{ capacityBytes: number }>('Node', 'NodeExpandVolume', { volumeId: vol, volumePath: target, stagingTargetPath: p.staging, capacityRange: { requiredBytes: grown }, volumeCapability: capOf(kind) });
    t.equal(ne.capacityBytes, grown);
    t.equal(sizeAt(kind, target), grown, 'the device at the target has the new size at once');
  } else if (kind === 'ext4' && !hasCapSysResource()) {
    // This machine's root lacks CAP_SYS_RESOURCE, which the kernel wants for an online ext4 resize.
    const r = await s.client.code('Node', 'NodeExpandVolume', { volumeId: vol, volumePath: target, stagingTargetPath: p.staging, capacityRange: { requiredBytes: grown }, volumeCapability: capOf(kind) });
    t.equal(r.code, status.FAILED_PRECONDITION, 'ext4 online growth without CAP_SYS_RESOURCE: FAILED_PRECONDITION');
    t.match(r.message, /CAP_SYS_RESOURCE/, 'and the message names the capability');
    t.equal(fs.statSync(s.daemon.file(vol)).size, grown, 'the volume itself grew: kubelet\'s retry and the next stage find it so');
    await unpublishAndUnstage(s, vol);
    await stageAndPublish(s, vol, kind);
    t.ok(sizeAt(kind, target) > before + 48 * MiB, `grown offline at the next stage (${before} -> ${sizeAt(kind, target)})`);
  } else {
    const ne = await s.client.call<{ capacityBytes: number }>('Node', 'NodeExpandVolume', { volumeId: vol, volumePath: target, stagingTargetPath: p.staging, capacityRange: { requiredBytes: grown }, volumeCapability: capOf(kind) });
    t.equal(ne.capacityBytes, grown);
    t.ok(sizeAt(kind, target) > before + 48 * MiB, `the filesystem grew online (${before} -> ${sizeAt(kind, target)})`);
    const again = await s.client.call<{ capacityBytes: number }>('Node', 'NodeExpandVolume', { volumeId: vol, volumePath: target, capacityRange: { requiredBytes: grown } });
    t.equal(again.capacityBytes, grown, 'a retry: same size, OK');
  }
  t.ok(readAt(kind, target, MiB).equals(Buffer.alloc(MiB, 0x42)), 'the data survived the expansion');

  // A group snapshot of the volume and its clone.
  const g = await s.client.call<{ groupSnapshot: { snapshots: { snapshotId: string }[] } }>('GroupController', 'CreateVolumeGroupSnapshot', { name: `group-${kind}`, sourceVolumeIds: [vol, clone] });
  t.equal(g.groupSnapshot.snapshots.length, 2, 'group snapshot of two mounted volumes');
  const fromGroup = await createVol(s, `from-group-${kind}`, kind, grown, { volumeContentSource: { snapshot: { snapshotId: `${clone}@group-${kind}` } } });
  const gTarget = await stageAndPublish(s, fromGroup, kind, 'pod4');
  t.ok(readAt(kind, gTarget, MiB).equals(Buffer.alloc(MiB, 0x43)), 'a member restores with its data');

  // Tear everything down: nothing may be left.
  for (const [v, pod] of [[vol, 'pod1'], [restored, 'pod2'], [clone, 'pod3'], [fromGroup, 'pod4']] as const) {
    await unpublishAndUnstage(s, v, pod);
    t.notOk(fs.existsSync(paths(s, v, pod).target), `${v}: the target path is removed`);
  }
  await s.client.call('GroupController', 'DeleteVolumeGroupSnapshot', { groupSnapshotId: `group-${kind}` });
  await s.client.call('Controller', 'DeleteSnapshot', { snapshotId: snap });
  for (const v of [vol, restored, clone, fromGroup]) await s.client.call('Controller', 'DeleteVolume', { volumeId: v });
  await assertNothingLeft(t, s);
}

t.test('end to end, Block volume mode', (t) => endToEnd(t, 'block'));
t.test('end to end, Filesystem volume mode, ext4', (t) => endToEnd(t, 'ext4'));
t.test('end to end, Filesystem volume mode, xfs', (t) => endToEnd(t, 'xfs'));

t.test('access modes are enforced at publish', async (t) => {
  const s = await startCsi(t, 'csi-modes');
  const pinned = { accessibilityRequirements: { requisite: [{ segments: { [TOPOLOGY_KEY]: NODE_ID } }] } };
  const publishCode = async (vol: string, kind: Kind, mode: string, pod: string, readonly: boolean): Promise<number> => {
    const p = paths(s, vol, pod);
    fs.mkdirSync(path.dirname(p.target), { recursive: true });
    return (await s.client.code('Node', 'NodePublishVolume', { volumeId: vol, stagingTargetPath: paths(s, vol).staging, targetPath: p.target, volumeCapability: capOf(kind, mode), readonly })).code;
  };
  const cases: { mode: string; kind: Kind; pubs: [boolean, number][] }[] = [
    { mode: 'SINGLE_NODE_SINGLE_WRITER', kind: 'ext4', pubs: [[false, status.OK], [false, status.FAILED_PRECONDITION], [true, status.FAILED_PRECONDITION]] },
    { mode: 'SINGLE_NODE_READER_ONLY', kind: 'ext4', pubs: [[false, status.FAILED_PRECONDITION], [true, status.OK], [true, status.FAILED_PRECONDITION]] },
    { mode: 'MULTI_NODE_READER_ONLY', kind: 'ext4', pubs: [[false, status.FAILED_PRECONDITION], [true, status.OK], [true, status.OK]] },
    { mode: 'MULTI_NODE_SINGLE_WRITER', kind: 'ext4', pubs: [[false, status.OK], [false, status.FAILED_PRECONDITION], [true, status.OK]] },
    { mode: 'SINGLE_NODE_WRITER', kind: 'ext4', pubs: [[false, status.OK], [false, status.OK], [true, status.OK]] },
    { mode: 'SINGLE_NODE_MULTI_WRITER', kind: 'block', pubs: [[false, status.OK], [false, status.OK], [true, status.OK]] },
    { mode: 'MULTI_NODE_MULTI_WRITER', kind: 'ext4', pubs: [[false, status.OK], [false, status.OK]] },
    { mode: 'MULTI_NODE_READER_ONLY', kind: 'block', pubs: [[false, status.FAILED_PRECONDITION], [true, status.OK], [true, status.OK]] },
  ];
  for (const [i, c] of cases.entries()) {
    const vol = `m${i}`;
    await s.client.call('Controller', 'CreateVolume', { name: vol, capacityRange: { requiredBytes: 32 * MiB }, volumeCapabilities: [capOf(c.kind, c.mode)], ...pinned });
    await s.client.call('Node', 'NodeStageVolume', { volumeId: vol, stagingTargetPath: paths(s, vol).staging, volumeCapability: capOf(c.kind, c.mode) });
    const ok: string[] = [];
    for (const [j, [readonly, want]] of c.pubs.entries()) {
      const code = await publishCode(vol, c.kind, c.mode, `p${j}`, readonly);
      t.equal(code, want, `${c.mode} (${c.kind}) publish #${j + 1} ${readonly ? 'read-only' : 'read-write'}: ${status[want]}`);
      if (code === status.OK) ok.push(`p${j}`);
    }
    const targets = ok.map((pod) => paths(s, vol, pod).target);
    const writable = c.pubs.filter(([ro, want]) => !ro && want === status.OK).length;
    if (c.kind === 'ext4' && writable >= 2 && targets[0] !== undefined && targets[1] !== undefined) {
      fs.writeFileSync(path.join(targets[0], 'shared'), 'one mount');
      t.equal(fs.readFileSync(path.join(targets[1], 'shared'), 'utf8'), 'one mount', `${c.mode}: publishes share one staged filesystem`);
    }
    for (const [j, [readonly]] of c.pubs.entries()) {
      const target = paths(s, vol, `p${j}`).target;
      if (!readonly || !ok.includes(`p${j}`)) continue;
      const r = c.kind === 'block'
        ? sh('dd', ['if=/dev/zero', `of=${target}`, 'bs=4k', 'count=1', 'oflag=direct', 'conv=notrunc', 'status=none'])
        : sh('sh', ['-c', `echo x > '${target}/nope'`]);
      t.not(r.status, 0, `${c.mode} (${c.kind}): a read-only publish refuses writes (${r.stderr.trim()})`);
    }
    for (const pod of ok) await s.client.call('Node', 'NodeUnpublishVolume', { volumeId: vol, targetPath: paths(s, vol, pod).target });
    await s.client.call('Node', 'NodeUnstageVolume', { volumeId: vol, stagingTargetPath: paths(s, vol).staging });
    await s.client.call('Controller', 'DeleteVolume', { volumeId: vol });
  }
  await assertNothingLeft(t, s);
});

t.test('node errors, idempotency and concurrency', async (t) => {
  const s = await startCsi(t, 'csi-node-errors');
  await createVol(s, 'n', 'ext4', 32 * MiB);
  await createVol(s, 'b', 'block', 16 * MiB);
  const p = paths(s, 'n');
  const cap = capOf('ext4');
  const caps = await s.client.call<{ capabilities: { rpc: { type: string } }[] }>('Node', 'NodeGetCapabilities');
  t.same(caps.capabilities.map((c) => c.rpc.type).sort(), ['EXPAND_VOLUME', 'GET_VOLUME_STATS', 'SINGLE_NODE_MULTI_WRITER', 'STAGE_UNSTAGE_VOLUME', 'VOLUME_CONDITION']);
  t.same(await s.client.call('Node', 'NodeGetInfo'), { nodeId: NODE_ID, maxVolumesPerNode: 256, accessibleTopology: { segments: { [TOPOLOGY_KEY]: NODE_ID } } });

  // Paths: only under the kubelet directory, normal, and no symlink leading out.
  fs.mkdirSync(path.join(s.kubelet, 'escape'), { recursive: true });
  fs.symlinkSync('/tmp', path.join(s.kubelet, 'escape', 'link'));
  const stage = (staging: string, extra: object = {}): Promise<{ code: number }> => s.client.code('Node', 'NodeStageVolume', { volumeId: 'n', stagingTargetPath: staging, volumeCapability: cap, ...extra });
  // One at a time: calls on one volume at once would get ABORTED (tested below).
  const bad: [string, () => Promise<{ code: number }>, number][] = [
    ['staging outside kubelet dir', () => stage('/tmp/elsewhere'), status.INVALID_ARGUMENT],
    ['relative staging path', () => stage('staging/n'), status.INVALID_ARGUMENT],
    ['.. in the path', () => stage(`${s.kubelet}/staging/../../etc`), status.INVALID_ARGUMENT],
    ['symlink out of the kubelet dir', () => stage(path.join(s.kubelet, 'escape', 'link', 'x')), status.INVALID_ARGUMENT],
    ['kubelet dir prefix trick', () => stage(`${s.kubelet}-other/x`), status.INVALID_ARGUMENT],
    ['no volume id', () => s.client.code('Node', 'NodeStageVolume', { stagingTargetPath: p.staging, volumeCapability: cap }), status.INVALID_ARGUMENT],
    ['no capability', () => s.client.code('Node', 'NodeStageVolume', { volumeId: 'n', stagingTargetPath: p.staging }), status.INVALID_ARGUMENT],
    ['unknown volume', () => s.client.code('Node', 'NodeStageVolume', { volumeId: 'ghost', stagingTargetPath: p.staging, volumeCapability: cap }), status.NOT_FOUND],
    ['a snapshot id', () => s.client.code('Node', 'NodeStageVolume', { volumeId: 'n@s', stagingTargetPath: p.staging, volumeCapability: cap }), status.NOT_FOUND],
    ['publish before stage', () => s.client.code('Node', 'NodePublishVolume', { volumeId: 'n', stagingTargetPath: p.staging, targetPath: p.target, volumeCapability: cap }), status.FAILED_PRECONDITION],
    ['publish target outside', () => s.client.code('Node', 'NodePublishVolume', { volumeId: 'n', stagingTargetPath: p.staging, targetPath: '/tmp/t', volumeCapability: cap }), status.INVALID_ARGUMENT],
    ['expand, not staged', () => s.client.code('Node', 'NodeExpandVolume', { volumeId: 'n', volumePath: p.target }), status.FAILED_PRECONDITION],
    ['stats, unknown volume', () => s.client.code('Node', 'NodeGetVolumeStats', { volumeId: 'ghost', volumePath: p.target }), status.NOT_FOUND],
    ['stats, no path', () => s.client.code('Node', 'NodeGetVolumeStats', { volumeId: 'n' }), status.INVALID_ARGUMENT],
    ['stats, unknown volume, relative path', () => s.client.code('Node', 'NodeGetVolumeStats', { volumeId: 'ghost', volumePath: 'rel/path' }), status.NOT_FOUND],
    ['expand, unknown volume, relative path', () => s.client.code('Node', 'NodeExpandVolume', { volumeId: 'ghost', volumePath: 'rel/path' }), status.NOT_FOUND],
    ['expand, no path', () => s.client.code('Node', 'NodeExpandVolume', { volumeId: 'n' }), status.INVALID_ARGUMENT],
  ];
  for (const [what, call, code] of bad) t.equal((await call()).code, code, `${what}: ${status[code]}`);
  t.same(loopsOf(s), [], 'rejected calls attached nothing');
  t.same(mountsUnder(s.kubelet), [], 'rejected calls mounted nothing');

  // Two stages of one volume at once: one works, the other is told to come back.
  const flags = { volumeCapability: mountCap('ext4', 'SINGLE_NODE_WRITER', ['noatime', 'nodev']) };
  const [a, b] = await Promise.all([stage(p.staging, flags), stage(p.staging, flags)]);
  t.same([a.code, b.code].sort(), [status.OK, status.ABORTED].sort(), 'concurrent stage: one OK, one ABORTED');
  t.equal((await stage(p.staging)).code, status.OK, 'the retry: OK (already staged)');
  const stagedMount = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === p.staging) ?? '';
  t.match(stagedMount.split(' ')[5] ?? '', /noatime/, 'the mount flags asked for are on the staging mount');
  t.match(stagedMount.split(' ')[5] ?? '', /nodev/, 'all of them');
  t.equal((await stage(p.staging, { volumeCapability: capOf('xfs') })).code, status.ALREADY_EXISTS, 'staged as ext4, asked for xfs: ALREADY_EXISTS');
  t.equal((await stage(path.join(s.kubelet, 'staging', 'other'))).code, status.FAILED_PRECONDITION, 'a second staging path: FAILED_PRECONDITION');
  fs.mkdirSync(path.dirname(p.target), { recursive: true });
  const publish = (extra: object = {}): Promise<{ code: number }> => s.client.code('Node', 'NodePublishVolume', { volumeId: 'n', stagingTargetPath: p.staging, targetPath: p.target, volumeCapability: cap, ...extra });
  t.equal((await publish()).code, status.OK);
  t.equal((await publish()).code, status.OK, 'publish again: OK');
  t.equal((await publish({ readonly: true })).code, status.ALREADY_EXISTS, 'same target, now read-only: ALREADY_EXISTS');
  t.equal((await s.client.code('Node', 'NodeUnstageVolume', { volumeId: 'n', stagingTargetPath: p.staging })).code, status.FAILED_PRECONDITION, 'unstage while published: FAILED_PRECONDITION');
  t.equal((await s.client.code('Controller', 'DeleteVolume', { volumeId: 'n' })).code, status.FAILED_PRECONDITION, 'delete while in use: FAILED_PRECONDITION');
  const byHand = cli(s.pool, 'volume', 'delete', 'n');
  t.equal(byHand.status, 1, 'the CLI (through the daemon) cannot delete a staged volume either');
  t.match(byHand.stderr, /^cowvol: 'n' is in use \(loop device \/dev\/loop\d+\); release it first\n$/, 'and says what holds it');
  const sizeBefore = fs.statSync(s.daemon.file('n')).size;
  t.equal((await s.client.code('Node', 'NodeExpandVolume', { volumeId: 'n', volumePath: p.target, capacityRange: { limitBytes: sizeBefore - MiB } })).code, status.OUT_OF_RANGE, 'node expand below the volume size: OUT_OF_RANGE');
  t.equal((await s.client.code('Node', 'NodeExpandVolume', { volumeId: 'n', volumePath: p.target, capacityRange: { requiredBytes: 2 * sizeBefore, limitBytes: sizeBefore } })).code, status.INVALID_ARGUMENT, 'required above limit: INVALID_ARGUMENT');
  t.equal(fs.statSync(s.daemon.file('n')).size, sizeBefore, 'refused expansions changed nothing');
  const smaller = await s.client.call<{ capacityBytes: number }>('Node', 'NodeExpandVolume', { volumeId: 'n', volumePath: p.target, capacityRange: { requiredBytes: MiB } });
  t.equal(smaller.capacityBytes, sizeBefore, 'a smaller request leaves it as it is');

  // Condition: a path that is not (or no longer) a mount of the volume is abnormal.
  const loose = path.join(s.kubelet, 'not-mounted');
  fs.mkdirSync(loose);
  const cond = await s.client.call<{ volumeCondition: { abnormal: boolean; message: string } }>('Node', 'NodeGetVolumeStats', { volumeId: 'n', volumePath: loose });
  t.equal(cond.volumeCondition.abnormal, true, 'not mounted there: abnormal');
  t.match(cond.volumeCondition.message, /not mounted/);
  t.equal((await s.client.code('Node', 'NodeGetVolumeStats', { volumeId: 'n', volumePath: path.join(s.kubelet, 'missing') })).code, status.NOT_FOUND, 'a path that does not exist: NOT_FOUND');

  // A filesystem of another type on the volume.
  const bp = paths(s, 'b');
  t.equal(cli(s.pool, 'volume', 'grow', 'b', '--size', '320M').status, 0, 'b grown by hand to hold xfs');
  await s.client.call('Node', 'NodeStageVolume', { volumeId: 'b', stagingTargetPath: bp.staging, volumeCapability: capOf('block') });
  t.equal(sh('mkfs.xfs', ['-q', '-f', path.join(bp.staging, 'dev')]).status, 0, 'xfs made on the block volume by hand');
  await s.client.call('Node', 'NodeUnstageVolume', { volumeId: 'b', stagingTargetPath: bp.staging });
  t.equal((await s.client.code('Node', 'NodeStageVolume', { volumeId: 'b', stagingTargetPath: bp.staging, volumeCapability: capOf('ext4') })).code, status.FAILED_PRECONDITION, 'holds xfs, asked for ext4: FAILED_PRECONDITION');
  t.equal(loopsOf(s).length, 1, 'the refused stage left no loop device (one is n\'s)');

  // Unpublish and unstage are idempotent.
  for (let i = 0; i < 2; i++) {
    t.equal((await s.client.code('Node', 'NodeUnpublishVolume', { volumeId: 'n', targetPath: p.target })).code, status.OK, `unpublish #${i + 1}: OK`);
    t.equal((await s.client.code('Node', 'NodeUnstageVolume', { volumeId: 'n', stagingTargetPath: p.staging })).code, status.OK, `unstage #${i + 1}: OK`);
  }
  for (const v of ['n', 'b']) await s.client.call('Controller', 'DeleteVolume', { volumeId: v });
  await assertNothingLeft(t, s);
});

t.test('inline ephemeral volumes: made at publish, gone at unpublish', async (t) => {
  const s = await startCsi(t, 'csi-ephemeral');
  const target = path.join(s.kubelet, 'pods', 'p', 'scratch');
  fs.mkdirSync(path.dirname(target), { recursive: true });
  const id = 'csi-0123456789abcdef';
  const req = { volumeId: id, targetPath: target, volumeCapability: mountCap('ext4'), volumeContext: { 'csi.storage.k8s.io/ephemeral': 'true', 'csi.storage.k8s.io/pod.name': 'p', size: '64Mi' } };
  await s.client.call('Node', 'NodePublishVolume', req);
  await s.client.call('Node', 'NodePublishVolume', req);
  const st = fs.statfsSync(target);
  t.ok(st.blocks * st.bsize > 48 * MiB && st.blocks * st.bsize <= 64 * MiB, 'the size the volume attributes asked for');
  fs.writeFileSync(path.join(target, 'f'), 'scratch');
  t.match(cli(s.pool, 'volume', 'list').stdout, new RegExp(id), 'the volume exists in the pool while published');
  t.equal((await s.client.code('Node', 'NodePublishVolume', { ...req, targetPath: path.join(s.kubelet, 'pods', 'p', 'x'), volumeContext: { 'csi.storage.k8s.io/ephemeral': 'true', colour: 'red' } })).code, status.INVALID_ARGUMENT, 'an unknown attribute: INVALID_ARGUMENT');
  await s.client.call('Node', 'NodeUnpublishVolume', { volumeId: id, targetPath: target });
  t.notOk(fs.existsSync(target), 'the target is removed');
  await assertNothingLeft(t, s);
});

t.test('daemon restarts between stage and publish, and between publish and unpublish', async (t) => {
  const s = await startCsi(t, 'csi-restart');
  await createVol(s, 'fsvol', 'ext4', 64 * MiB);
  await createVol(s, 'blk', 'block', 16 * MiB);
  const fp = paths(s, 'fsvol');
  await s.client.call('Node', 'NodeStageVolume', { volumeId: 'fsvol', stagingTargetPath: fp.staging, volumeCapability: capOf('ext4') });

  // While a stopping daemon drains (a staged volume holds its FUSE connection until the drain's
  // cut, seconds later), Probe says not ready and the other services refuse with UNAVAILABLE.
  s.daemon.child.kill('SIGTERM');
  t.ok(await s.daemon.logged('stopping: draining requests'), 'the daemon says it is stopping');
  const probed = await s.client.call<{ ready: { value: boolean } }>('Identity', 'Probe').catch(() => null);
  t.same(probed, { ready: { value: false } }, 'stopping: Probe says not ready');
  t.equal((await s.client.code('Controller', 'ListVolumes')).code, status.UNAVAILABLE, 'stopping: other calls get UNAVAILABLE');
  await s.restart('SIGTERM');
  t.match(s.daemon.log, /rebuilt a stage left by the previous daemon/, 'the new daemon rebuilt the stage');
  t.same(await s.client.call('Identity', 'Probe'), { ready: { value: true } }, 'started: ready');
  fs.mkdirSync(path.dirname(fp.target), { recursive: true });
  await s.client.call('Node', 'NodePublishVolume', { volumeId: 'fsvol', stagingTargetPath: fp.staging, targetPath: fp.target, volumeCapability: capOf('ext4') });
  const data = Buffer.alloc(MiB, 0x77);
  writeAt('ext4', fp.target, data);
  t.ok(readAt('ext4', fp.target, MiB).equals(data), 'publish after a restart works: written and read back');
  const blkTarget = await stageAndPublish(s, 'blk', 'block');
  writeAt('block', blkTarget, Buffer.alloc(MiB, 0x55));

  await s.restart('SIGKILL');
  t.ok(readAt('ext4', fp.target, MiB).equals(data), 'after kill -9: the flushed file is there at the target');
  t.ok(readAt('block', blkTarget, MiB).equals(Buffer.alloc(MiB, 0x55)), 'after kill -9: the block target reads the flushed data');
  writeAt('ext4', fp.target, Buffer.alloc(MiB, 0x78), 'after.bin');
  t.ok(readAt('ext4', fp.target, MiB, 'after.bin').equals(Buffer.alloc(MiB, 0x78)), 'and takes new writes');
  const stats = await s.client.call<{ volumeCondition: { abnormal: boolean } }>('Node', 'NodeGetVolumeStats', { volumeId: 'fsvol', volumePath: fp.target });
  t.equal(stats.volumeCondition.abnormal, false, 'condition normal after the rebuild');
  t.equal(loopsOf(s).length, 2, 'one loop device per staged volume, the dead ones detached');

  await unpublishAndUnstage(s, 'fsvol');
  await unpublishAndUnstage(s, 'blk');
  for (const v of ['fsvol', 'blk']) await s.client.call('Controller', 'DeleteVolume', { volumeId: v });
  await assertNothingLeft(t, s);
});

t.test('with a keeper, SIGTERM and kill -9 restarts keep every stage as it was: nothing is rebuilt', async (t) => {
  const s = await startCsi(t, 'csi-keeper', [], ['--handover-grace', '60']);
  await createVol(s, 'fsvol', 'ext4', 64 * MiB);
  const fp = paths(s, 'fsvol');
  await s.client.call('Node', 'NodeStageVolume', { volumeId: 'fsvol', stagingTargetPath: fp.staging, volumeCapability: capOf('ext4') });
  fs.mkdirSync(path.dirname(fp.target), { recursive: true });
  await s.client.call('Node', 'NodePublishVolume', { volumeId: 'fsvol', stagingTargetPath: fp.staging, targetPath: fp.target, volumeCapability: capOf('ext4') });
  const data = Buffer.alloc(MiB, 0x31);
  writeAt('ext4', fp.target, data);
  const loops = loopsOf(s);
  t.equal(loops.length, 1, 'one loop device for the stage');
  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    await s.restart(signal);
    t.match(s.daemon.log, /took the mount over/, `${signal}: the new daemon took the connection over`);
    t.notMatch(s.daemon.log, /rebuilt a stage/, `${signal}: nothing rebuilt`);
    t.same(loopsOf(s), loops, `${signal}: the same loop device still backs the stage`);
    t.ok(readAt('ext4', fp.target, MiB).equals(data), `${signal}: the file written before reads back`);
    const more = Buffer.alloc(MiB, signal === 'SIGTERM' ? 0x32 : 0x33);
    writeAt('ext4', fp.target, more, `${signal}.bin`);
    t.ok(readAt('ext4', fp.target, MiB, `${signal}.bin`).equals(more), `${signal}: and takes new writes`);
  }
  await unpublishAndUnstage(s, 'fsvol');
  await s.client.call('Controller', 'DeleteVolume', { volumeId: 'fsvol' });
  await assertNothingLeft(t, s);
});

t.test('serve --csi-endpoint refuses bad settings with one line and gives the pool back', async (t) => {
  const dir = tmpDir('csi-refuse');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const pool = path.join(dir, 'pool');
  const mount = path.join(dir, 'mnt');
  t.equal(cli(pool, 'pool', 'init').status, 0);
  const serve = (...args: string[]): { status: number; stderr: string } => sh(process.execPath, [bin, 'serve', '--pool', pool, '--mount', mount, ...args]);
  const cases: [string[], RegExp][] = [
    [['--csi-endpoint', 'tcp://1.2.3.4:5'], /^cowvol: --csi-endpoint 'tcp:\/\/1\.2\.3\.4:5' must be unix:\/\/\/ABSOLUTE\/PATH\n$/],
    [['--node-id', 'n1'], /^cowvol: --node-id needs --csi-endpoint\n$/],
    [['--csi-endpoint', `unix://${dir}/c.sock`, '--max-volumes', 'many'], /^cowvol: invalid --max-volumes 'many'/],
    [['--csi-endpoint', `unix://${dir}/c.sock`, '--driver-name', '-bad-'], /^cowvol: invalid --driver-name '-bad-'/],
  ];
  for (const [args, message] of cases) {
    const r = serve(...args);
    t.equal(r.status, 1, `${args.join(' ')}: exit 1`);
    t.match(r.stderr, message, `${args.join(' ')}: says what to fix`);
  }
  const r = serve('--csi-endpoint', `unix://${dir}/c.sock`, '--kubelet-dir', path.join(dir, 'no-kubelet'));
  t.equal(r.status, 1, 'a missing kubelet directory: exit 1');
  t.match(r.stderr, /^cowvol: kubelet directory .*no-kubelet does not exist: pass --kubelet-dir$/m, 'says so in one line');
  t.same(mountsUnder(dir), [], 'nothing left mounted');
  t.equal(cli(pool, 'volume', 'list').status, 0, 'the pool was given back');
});

t.test('volume condition: errors the pool reports for a volume make it abnormal', async (t) => {
  const s = await startCsi(t, 'csi-condition');
  await createVol(s, 'sick', 'block', 4 * MiB);
  await createVol(s, 'well', 'block', 4 * MiB);
  const target = await stageAndPublish(s, 'sick', 'block');
  writeAt('block', target, Buffer.alloc(MiB, 0x33));
  // A cold cache, then damage every chunk-map page on disk (only 'sick' has any).
  await s.restart('SIGTERM');
  const metaFile = path.join(s.pool, 'cowvol.meta');
  const fd = fs.openSync(metaFile, 'r+');
  const page = Buffer.alloc(4096);
  let damaged = 0;
  for (let at = 0; fs.readSync(fd, page, 0, 4096, at) === 4096; at += 4096) {
    if (page.readUInt32LE(0) === 0 || page[4] !== 1) continue; // not a MAP page
    page[4000] = (page[4000] ?? 0) ^ 0xff;
    fs.writeSync(fd, page, 0, 4096, at);
    damaged++;
  }
  fs.closeSync(fd);
  t.ok(damaged > 0, `damaged ${damaged} chunk-map pages`);
  const cond = async (): Promise<{ abnormal: boolean; message: string }> =>
    (await s.client.call<{ status: { volumeCondition: { abnormal: boolean; message: string } } }>('Controller', 'ControllerGetVolume', { volumeId: 'sick' })).status.volumeCondition;
  t.equal((await cond()).abnormal, false, 'before anyone reads: normal');
  const read = sh('dd', [`if=${s.daemon.file('sick')}`, 'of=/dev/null', 'bs=64k', 'count=1', 'iflag=direct', 'status=none']);
  t.not(read.status, 0, `reading through the damaged map fails (${read.stderr.trim()})`);
  const c = await cond();
  t.equal(c.abnormal, true, 'ControllerGetVolume: abnormal');
  t.match(c.message, /errors on volume 'sick'/);
  const node = await s.client.call<{ volumeCondition: { abnormal: boolean } }>('Node', 'NodeGetVolumeStats', { volumeId: 'sick', volumePath: target });
  t.equal(node.volumeCondition.abnormal, true, 'NodeGetVolumeStats: abnormal');
  const other = await s.client.call<{ status: { volumeCondition: { abnormal: boolean } } }>('Controller', 'ControllerGetVolume', { volumeId: 'well' });
  t.equal(other.status.volumeCondition.abnormal, false, 'another volume stays normal');
  const listed = await s.client.call<{ entries: { volume: { volumeId: string }; status: { volumeCondition: { abnormal: boolean } } }[] }>('Controller', 'ListVolumes');
  t.same(listed.entries.map((e) => [e.volume.volumeId, e.status.volumeCondition.abnormal]), [['sick', true], ['well', false]], 'ListVolumes says the same');
});
