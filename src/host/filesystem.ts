/**
 * Filesystems on volumes: detect, make, mount, grow. ext4 and xfs only.
 * xfs is always mounted with nouuid: a clone or restored snapshot carries its
 * source's UUID, and xfs refuses a second mount with the same one.
 */
import fs from 'node:fs';

import { CowvolError } from '../errors.js';
import { run } from './run.js';

export const FILESYSTEMS = ['ext4', 'xfs'] as const;
export type FsType = (typeof FILESYSTEMS)[number];

export function isFsType(s: string): s is FsType {
  return (FILESYSTEMS as readonly string[]).includes(s);
}

/** The filesystem on a device, or '' for none (blkid exits 2 when it finds nothing). */
export async function detectFs(device: string): Promise<string> {
  try {
    return (await run('blkid', ['--probe', '--match-tag', 'TYPE', '--output', 'value', device])).trim();
  } catch (err) {
    if (err instanceof CowvolError && err.toolExit === 2) return '';
    throw err;
  }
}

export async function makeFs(device: string, fsType: FsType): Promise<void> {
  // No discard pass: a new volume is already all holes.
  if (fsType === 'ext4') await run('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard,lazy_itable_init=1,lazy_journal_init=1', device]);
  else await run('mkfs.xfs', ['-q', '-f', '-K', device]);
}

export async function mountFs(device: string, target: string, fsType: FsType, flags: string[], readOnly: boolean): Promise<void> {
  const options = [...flags];
  if (readOnly) options.push('ro');
  if (fsType === 'xfs' && !options.includes('nouuid')) options.push('nouuid');
  const args = ['-t', fsType];
  if (options.length > 0) args.push('-o', options.join(','));
  await run('mount', [...args, device, target]);
}

/** A bind mount; read-only takes a second step, as the kernel ignores ro on the first. */
export async function bindMount(source: string, target: string, readOnly: boolean): Promise<void> {
  await run('mount', ['--bind', source, target]);
  if (readOnly) {
    try {
      await run('mount', ['-o', 'remount,bind,ro', target]);
    } catch (err) {
      await unmount(target, false);
      throw err;
    }
  }
}

export async function unmount(target: string, lazy: boolean): Promise<void> {
  await run('umount', lazy ? ['--lazy', target] : [target]);
}

/**
 * Grows a mounted filesystem to its device. Online ext4 growth needs
 * CAP_SYS_RESOURCE (the kernel checks it in the resize ioctl); without it the
 * error says so, and growExt4Offline at the next stage does the job.
 */
export async function growFs(fsType: FsType, device: string, mountPoint: string): Promise<void> {
  if (fsType === 'xfs') {
    await run('xfs_growfs', [mountPoint]);
    return;
  }
  try {
    await run('resize2fs', [device]);
  } catch (err) {
    if (err instanceof Error && /Permission denied/.test(err.message)) {
      throw new CowvolError('EPERM', `growing ext4 online needs CAP_SYS_RESOURCE, which the daemon lacks (${err.message}); it grows at the next stage`);
    }
    throw err;
  }
}

/**
 * Bytes an ext4 filesystem spans and its block size, from its superblock
 * (1024 bytes in): read here rather than by dumpe2fs, since a stage pays
 * for every tool it starts. Null when the device holds no ext4.
 */
export async function ext4Extent(device: string): Promise<{ bytes: number; blockSize: number } | null> {
  const sb = Buffer.alloc(1024);
  const fh = await fs.promises.open(device, 'r');
  try {
    await fh.read(sb, 0, sb.length, 1024);
  } finally {
    await fh.close();
  }
  if (sb.readUInt16LE(0x38) !== 0xef53) return null;
  const blockSize = 1024 * 2 ** sb.readUInt32LE(0x18);
  // The high half of the block count counts only with the 64bit feature (INCOMPAT_64BIT).
  const high = (sb.readUInt32LE(0x60) & 0x80) !== 0 ? sb.readUInt32LE(0x150) : 0;
  return { bytes: (high * 2 ** 32 + sb.readUInt32LE(0x04)) * blockSize, blockSize };
}

/** Before mounting: grows an ext4 filesystem smaller than its device of `deviceBytes` (a restore or clone to a larger size). */
export async function growExt4Offline(device: string, deviceBytes: number): Promise<void> {
  const extent = await ext4Extent(device);
  if (extent === null || !(extent.bytes < deviceBytes - extent.blockSize)) return;
  try {
    await run('e2fsck', ['-f', '-p', device]);
  } catch (err) {
    // 1: errors were corrected, which is fine to go on from.
    if (!(err instanceof CowvolError && err.toolExit === 1)) throw err;
  }
  await run('resize2fs', [device]);
}
