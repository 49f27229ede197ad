/**
 * CSI operation latencies on a real daemon, each beside what the same step
 * costs without cowvol in the same run: a loop device over a plain sparse
 * file in the same directory for stage and publish, and a full copy of the
 * volume's file for a snapshot (what a driver without copy-on-write does).
 * Prints medians and ratios; results go to bench/results/csi-bench.json.
 *
 *   node dist/bench/csi-bench.js [--dir DIR] [--rounds N]
 *
 * Wall-clock on a shared machine: compare ratios within a run.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { CsiClient } from '../src/csi/client.js';

const MiB = 1 << 20;
const GiB = 1 << 30;
const args = process.argv.slice(2);
const flag = (name: string): string | undefined => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const rounds = Number(flag('--rounds') ?? 7);
const base = flag('--dir') ?? fs.mkdtempSync(path.join(os.tmpdir(), 'cowvol-csi-bench-'));
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = path.join(root, 'bin', 'cowvol.js');

const sh = (cmd: string, ...a: string[]): string => execFileSync(cmd, a, { encoding: 'utf8' });
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
async function timed(fn: () => Promise<unknown> | unknown): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

interface Row {
  step: string;
  cowvolMs: number;
  plainMs: number | null;
  plain: string;
}

async function main(): Promise<void> {
  const pool = path.join(base, 'pool');
  const mount = path.join(base, 'mnt');
  const kubelet = path.join(base, 'kubelet');
  const plainDir = path.join(base, 'plain');
  fs.mkdirSync(kubelet, { recursive: true });
  fs.mkdirSync(plainDir, { recursive: true });
  sh(process.execPath, bin, 'pool', 'init', '--pool', pool);
  const socket = path.join(base, 'csi.sock');
  const daemon: ChildProcess = spawn(process.execPath, [bin, 'serve', '--pool', pool, '--mount', mount, '--csi-endpoint', `unix://${socket}`, '--kubelet-dir', kubelet, '--log-level', 'warn', '--handover-grace', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve) => daemon.stdout?.once('data', () => resolve()));
  const c = new CsiClient(socket);
  const cap = (fsType: string): object => ({ mount: { fsType }, accessMode: { mode: 'SINGLE_NODE_WRITER' } });
  const rows: Row[] = [];
  const samples = new Map<string, number[]>();
  const add = (k: string, v: number): void => void samples.set(k, [...(samples.get(k) ?? []), v]);

  try {
    for (let r = 0; r < rounds; r++) {
      for (const fsType of ['ext4', 'xfs']) {
        const vol = `b-${fsType}-${r}`;
        const staging = path.join(kubelet, 's', vol);
        const target = path.join(kubelet, 't', vol);
        add(`create ${fsType}`, await timed(() => c.call('Controller', 'CreateVolume', { name: vol, capacityRange: { requiredBytes: GiB }, volumeCapabilities: [cap(fsType)] })));
        add(`stage ${fsType}`, await timed(() => c.call('Node', 'NodeStageVolume', { volumeId: vol, stagingTargetPath: staging, volumeCapability: cap(fsType) })));
        add(`publish ${fsType}`, await timed(() => c.call('Node', 'NodePublishVolume', { volumeId: vol, stagingTargetPath: staging, targetPath: target, volumeCapability: cap(fsType) })));
        // The same steps on a plain sparse file: losetup + mkfs + mount, and a bind mount.
        const file = path.join(plainDir, `${vol}.img`);
        const pStage = path.join(plainDir, 's', vol);
        const pTarget = path.join(plainDir, 't', vol);
        fs.mkdirSync(pStage, { recursive: true });
        fs.mkdirSync(pTarget, { recursive: true });
        let loop = '';
        add(`plain stage ${fsType}`, await timed(() => {
          fs.writeFileSync(file, '');
          fs.truncateSync(file, GiB);
          loop = sh('losetup', '--find', '--show', '--direct-io=on', file).trim();
          if (fsType === 'ext4') sh('mkfs.ext4', '-q', '-F', '-E', 'nodiscard,lazy_itable_init=1,lazy_journal_init=1', loop);
          else sh('mkfs.xfs', '-q', '-f', '-K', loop);
          sh('mount', '-t', fsType, loop, pStage);
        }));
        add(`plain publish ${fsType}`, await timed(() => sh('mount', '--bind', pStage, pTarget)));
        // A volume with 256 MiB written: snapshot it, and copy the plain file.
        sh('dd', 'if=/dev/urandom', `of=${path.join(target, 'f')}`, 'bs=1M', 'count=256', 'conv=fsync', 'status=none');
        sh('dd', 'if=/dev/urandom', `of=${path.join(pTarget, 'f')}`, 'bs=1M', 'count=256', 'conv=fsync', 'status=none');
        add(`snapshot ${fsType}`, await timed(() => c.call('Controller', 'CreateSnapshot', { sourceVolumeId: vol, name: `snap-${vol}` })));
        add(`plain copy ${fsType}`, await timed(() => sh('cp', '--sparse=always', file, `${file}.copy`)));
        add(`restore ${fsType}`, await timed(() => c.call('Controller', 'CreateVolume', { name: `r-${vol}`, capacityRange: { requiredBytes: 2 * GiB }, volumeCapabilities: [cap(fsType)], volumeContentSource: { snapshot: { snapshotId: `${vol}@snap-${vol}` } } })));
        add(`expand ${fsType} (on the node)`, await timed(async () => {
          // Without CAP_SYS_RESOURCE ext4 cannot grow online: the volume still grows, the filesystem at the next stage.
          await c.call('Node', 'NodeExpandVolume', { volumeId: vol, volumePath: target, capacityRange: { requiredBytes: GiB + 256 * MiB } }).catch(() => undefined);
        }));
        add(`teardown ${fsType}`, await timed(async () => {
          await c.call('Node', 'NodeUnpublishVolume', { volumeId: vol, targetPath: target });
          await c.call('Node', 'NodeUnstageVolume', { volumeId: vol, stagingTargetPath: staging });
          await c.call('Controller', 'DeleteSnapshot', { snapshotId: `${vol}@snap-${vol}` });
          await c.call('Controller', 'DeleteVolume', { volumeId: `r-${vol}` });
          await c.call('Controller', 'DeleteVolume', { volumeId: vol });
        }));
        sh('umount', pTarget);
        sh('umount', pStage);
        sh('losetup', '-d', loop);
        fs.rmSync(file);
        fs.rmSync(`${file}.copy`);
      }
    }
  } finally {
    c.close();
    daemon.kill('SIGTERM');
    await new Promise((r) => daemon.once('exit', r));
  }

  for (const fsType of ['ext4', 'xfs']) {
    const m = (k: string): number => median(samples.get(k) ?? []);
    rows.push({ step: `CreateVolume 1 GiB (${fsType})`, cowvolMs: m(`create ${fsType}`), plainMs: null, plain: '' });
    rows.push({ step: `NodeStageVolume: loop + mkfs + mount (${fsType})`, cowvolMs: m(`stage ${fsType}`), plainMs: m(`plain stage ${fsType}`), plain: 'same on a sparse file' });
    rows.push({ step: `NodePublishVolume: bind (${fsType})`, cowvolMs: m(`publish ${fsType}`), plainMs: m(`plain publish ${fsType}`), plain: 'mount --bind' });
    rows.push({ step: `CreateSnapshot, 256 MiB written (${fsType})`, cowvolMs: m(`snapshot ${fsType}`), plainMs: m(`plain copy ${fsType}`), plain: 'cp of the file' });
    rows.push({ step: `CreateVolume from snapshot, 2 GiB (${fsType})`, cowvolMs: m(`restore ${fsType}`), plainMs: null, plain: '' });
    rows.push({ step: `Expand online +256 MiB (${fsType})`, cowvolMs: m(`expand ${fsType} (controller + node)`), plainMs: null, plain: '' });
    rows.push({ step: `Unpublish + unstage + delete (${fsType})`, cowvolMs: m(`teardown ${fsType}`), plainMs: null, plain: '' });
  }
  console.log(`CSI steps, median of ${rounds} rounds (ms); ratio = cowvol / plain`);
  for (const r of rows) {
    const ratio = r.plainMs === null ? '' : `  ratio ${(r.cowvolMs / r.plainMs).toFixed(2)} vs ${r.plain} ${r.plainMs.toFixed(1)}`;
    console.log(`${r.step.padEnd(52)} ${r.cowvolMs.toFixed(1).padStart(8)}${ratio}`);
  }
  const out = path.join(root, 'bench', 'results');
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'csi-bench.json'), `${JSON.stringify({ rounds, rows, at: new Date().toISOString() }, null, 2)}\n`);
  if (flag('--dir') === undefined) fs.rmSync(base, { recursive: true, force: true });
}

await main();
