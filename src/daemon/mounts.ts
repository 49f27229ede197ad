/**
 * The mount table, read from /proc/self/mountinfo, and clean-up of a mount
 * a killed daemon left behind ("Transport endpoint is not connected").
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';

/** Decodes the octal escapes mountinfo uses for spaces and the like. */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export function isMountPoint(dir: string): boolean {
  const table = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  return table.split('\n').some((line) => unescape(line.split(' ')[4] ?? '') === dir);
}

/** Detaches whatever is mounted at dir (lazily, so busy users do not block it). */
export function detach(dir: string): void {
  const r = spawnSync('umount', ['-l', dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`umount -l ${dir} failed: ${r.stderr.trim()}`);
}
