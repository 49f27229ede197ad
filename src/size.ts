/**
 * Sizes on the command line: plain bytes, or a number with K, M, G or T and
 * an optional "iB" (all binary: 1K = 1024). Printed back the same way.
 */
import { fail } from './errors.js';

const UNITS: Record<string, number> = { K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

export function parseSize(text: string, what = 'size'): number {
  const m = /^(\d+)(?:([KMGT])(?:iB)?)?$/.exec(text.trim());
  if (!m || m[1] === undefined) fail('EINVAL', `invalid ${what} '${text}': use bytes or a number with K, M, G or T (e.g. 10G or 512MiB)`);
  const value = Number(m[1]) * (m[2] ? (UNITS[m[2]] ?? 1) : 1);
  if (!Number.isSafeInteger(value)) fail('EINVAL', `${what} '${text}' is too large`);
  return value;
}

export function formatSize(bytes: number): string {
  if (!Number.isFinite(bytes)) return 'unlimited';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  const shown = unit === 0 || Number.isInteger(value) ? String(value) : value.toFixed(1);
  return `${shown} ${units[unit]}`;
}
