/**
 * POOL/cowvol.run: where the daemon serving this pool mounted its block
 * files. The next daemon reads it to recognise the loop devices the previous
 * one left (their backing files vanished with its mount), even if it was
 * started with another --mount.
 */
import fs from 'node:fs';
import path from 'node:path';

export interface RunFile {
  mount: string;
  pid: number;
  /** The keeper holding the FUSE connection for the next daemon (keeper.ts), if any. */
  keeperPid?: number;
}

function runFilePath(poolDir: string): string {
  return path.join(poolDir, 'cowvol.run');
}

export function readRunFile(poolDir: string): RunFile | null {
  try {
    const j = JSON.parse(fs.readFileSync(runFilePath(poolDir), 'utf8')) as Partial<RunFile>;
    if (typeof j.mount !== 'string' || typeof j.pid !== 'number') return null;
    return { mount: j.mount, pid: j.pid, keeperPid: typeof j.keeperPid === 'number' ? j.keeperPid : undefined };
  } catch {
    return null;
  }
}

export function writeRunFile(poolDir: string, run: RunFile): void {
  const tmp = `${runFilePath(poolDir)}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify(run)}\n`);
  fs.renameSync(tmp, runFilePath(poolDir));
}
