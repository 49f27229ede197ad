/**
 * Loads the N-API addon built from native/ by `npm install`. Only the file
 * operations Node's fs module lacks come from here.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export interface NativeFileOps {
  punchHole(fd: number, offset: number, length: number): void;
  tryLock(fd: number): boolean;
}

const here = path.dirname(fileURLToPath(import.meta.url));
// dist/src/blockstore -> repository root
const root = path.resolve(here, '..', '..', '..');
const require = createRequire(import.meta.url);

export const native: NativeFileOps = require(
  path.join(root, 'native', 'build', 'Release', 'cowvol_native.node'),
) as NativeFileOps;
