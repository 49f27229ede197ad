/**
 * What every bench reads from its command line: `--quick`, `--NAME VALUE`
 * flags, and where the repository is (benches run from dist/bench/).
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const args = process.argv.slice(2);
export const quick = args.includes('--quick');

/** The value after `--NAME`, or undefined. */
export function flag(name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}
