/**
 * The CLI and CSI refuse the same volume operation with the same answer:
 * one code from src/errors.ts, shown by the CLI as its message (exit 1) and
 * by CSI as the gRPC status that code maps to, with the same message. Both
 * talk to one real daemon over its sockets; the pool is unchanged after.
 */
import t from 'tap';

import { MEANING, type ErrorCode } from '../src/errors.js';
import { grpc } from '../src/csi/client.js';
import { MiB, blockCap, startCsi } from './helpers/csi.js';
import { cli } from './helpers/daemon.js';

const { status } = grpc;

interface Case {
  what: string;
  cli: string[];
  csi: [service: 'Controller' | 'GroupController' | 'Node', method: string, req: object];
  code: ErrorCode;
  message: RegExp;
}

const CASES: Case[] = [
  {
    what: 'delete one member of a group snapshot',
    cli: ['snapshot', 'delete', 'a@g'],
    csi: ['Controller', 'DeleteSnapshot', { snapshotId: 'a@g' }],
    code: 'EPERM',
    message: /belongs to group snapshot 'g'/,
  },
  {
    what: 'snapshot a volume that does not exist',
    cli: ['snapshot', 'create', 'nope@x'],
    csi: ['Controller', 'CreateSnapshot', { sourceVolumeId: 'nope', name: 'x' }],
    code: 'ENOENT',
    message: /no volume or snapshot named 'nope'/,
  },
  {
    what: 'clone from a snapshot that does not exist',
    cli: ['clone', 'a@nope', 'c1'],
    csi: ['Controller', 'CreateVolume', { name: 'c1', volumeCapabilities: [blockCap()], volumeContentSource: { snapshot: { snapshotId: 'a@nope' } } }],
    code: 'ENOENT',
    message: /no volume or snapshot named 'a@nope'/,
  },
  {
    what: 'clone from a volume that does not exist',
    cli: ['clone', 'nope', 'c2'],
    csi: ['Controller', 'CreateVolume', { name: 'c2', volumeCapabilities: [blockCap()], volumeContentSource: { volume: { volumeId: 'nope' } } }],
    code: 'ENOENT',
    message: /no volume or snapshot named 'nope'/,
  },
  {
    what: 'grow a snapshot',
    cli: ['volume', 'grow', 'a@s', '--size', '64M'],
    csi: ['Node', 'NodeExpandVolume', { volumeId: 'a@s', volumePath: '/var/lib/kubelet/pods/p/volumes/x/mount', capacityRange: { requiredBytes: 64 * MiB } }],
    code: 'ENOENT',
    message: /'a@s' is a snapshot, not a volume/,
  },
  {
    what: 'delete a snapshot as if it were a volume',
    cli: ['volume', 'delete', 'a@s'],
    csi: ['Controller', 'DeleteVolume', { volumeId: 'a@s' }],
    code: 'EINVAL',
    message: /invalid volume name 'a@s'/,
  },
  {
    what: 'group snapshot of a volume that does not exist',
    cli: ['group', 'create', 'h', 'a', 'nope'],
    csi: ['GroupController', 'CreateVolumeGroupSnapshot', { name: 'h', sourceVolumeIds: ['a', 'nope'] }],
    code: 'ENOENT',
    message: /no volume or snapshot named 'nope'/,
  },
];

t.test('each refused volume operation: same code, same message from the CLI and from CSI', async (t) => {
  const s = await startCsi(t, 'same-answer');
  for (const args of [
    ['volume', 'create', 'a', '--size', '16M'],
    ['volume', 'create', 'b', '--size', '16M'],
    ['snapshot', 'create', 'a@s'],
    ['group', 'create', 'g', 'a', 'b'],
  ]) {
    const r = cli(s.pool, ...args);
    t.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
  }
  const before = cli(s.pool, 'snapshot', 'list', '--json').stdout + cli(s.pool, 'volume', 'list', '--json').stdout;
  for (const c of CASES) {
    const fromCli = cli(s.pool, ...c.cli);
    const fromCsi = await s.client.code(...c.csi);
    t.equal(fromCli.status, 1, `${c.what}: the CLI exits 1`);
    t.match(fromCli.stderr, c.message, `${c.what}: the CLI says why`);
    t.equal(fromCsi.code, MEANING[c.code].grpc, `${c.what}: CSI answers ${status[MEANING[c.code].grpc]}`);
    t.equal(`cowvol: ${fromCsi.message}\n`, fromCli.stderr, `${c.what}: the same message`);
  }
  const after = cli(s.pool, 'snapshot', 'list', '--json').stdout + cli(s.pool, 'volume', 'list', '--json').stdout;
  t.equal(after, before, 'no refused request changed the pool');
  // What the group rule allows: the group goes as one, from either side.
  t.equal(cli(s.pool, 'group', 'delete', 'g').status, 0, 'the CLI deletes the whole group');
  t.equal(cli(s.pool, 'snapshot', 'list', 'a', '--json').stdout.includes('a@g'), false, 'its members are gone');
});
